/// Reads raw query strings (`a=1&b=2`) for query gates and SMART query constraints.
/// Names and values are decoded once (`%XX`, `+` as space); a malformed `%` is kept as
/// it is, as common query parsers do.
enum QueryString {
    /// Calls `body` with the decoded name and value of each non-empty pair, in order, until
    /// it returns `false`; a pair without `=` has an empty value. Every reader of a query goes
    /// through here, so that gates, constraints and handlers cannot split or decode it
    /// differently. Decodes into one stack buffer: gated routes (`/v3/notes`) are on the hot path.
    @inline(__always)
    static func forEachPair(
        in query: String, _ body: (_ name: UnsafeBufferPointer<UInt8>, _ value: UnsafeBufferPointer<UInt8>) -> Bool
    ) {
        var query = query
        query.withUTF8 { bytes in
            // Decoding never grows text, so one pair's name and value fit side by side.
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: bytes.count + 1) { scratch in
                var start = 0
                while start < bytes.count {
                    var end = start
                    while end < bytes.count && bytes[end] != UInt8(ascii: "&") { end += 1 }
                    if end > start {
                        var eq = start
                        while eq < end && bytes[eq] != UInt8(ascii: "=") { eq += 1 }
                        let n = decode(UnsafeBufferPointer(rebasing: bytes[start..<eq]), into: scratch)
                        let v = decode(
                            UnsafeBufferPointer(rebasing: bytes[min(eq + 1, end)..<end]),
                            into: UnsafeMutableBufferPointer(rebasing: scratch[n...]))
                        let name = UnsafeBufferPointer(rebasing: scratch[0..<n])
                        if !body(name, UnsafeBufferPointer(rebasing: scratch[n..<(n + v)])) { return }
                    }
                    start = end + 1
                }
            }
        }
    }

    /// Every decoded value of parameter `name`.
    static func values(_ name: [UInt8], in query: String) -> [String] {
        var result: [String] = []
        name.withUnsafeBufferPointer { name in
            forEachPair(in: query) { n, value in
                if RouteTrie.compare(n, name) == 0 { result.append(String(decoding: value, as: UTF8.self)) }
                return true
            }
        }
        return result
    }

    /// Whether a gate on `name` fires: the parameter appears with a value other than `false`.
    static func fires(_ name: [UInt8], in query: String) -> Bool {
        var fired = false
        name.withUnsafeBufferPointer { name in
            forEachPair(in: query) { n, value in
                fired = RouteTrie.compare(n, name) == 0 && RouteTrie.compare(value, falseBytes) != 0
                return !fired
            }
        }
        return fired
    }

    private static var falseBytes: UnsafeBufferPointer<UInt8> {
        let word: StaticString = "false"
        return UnsafeBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount)
    }

    /// Decodes `%XX` and `+` from `raw` into `out` (at least `raw.count` bytes); returns the decoded length.
    @inline(__always)
    static func decode(_ raw: UnsafeBufferPointer<UInt8>, into out: UnsafeMutableBufferPointer<UInt8>) -> Int {
        var n = 0
        var i = 0
        while i < raw.count {
            let byte = raw[i]
            if byte == UInt8(ascii: "+") {
                out[n] = 0x20
            } else if byte == UInt8(ascii: "%"), i + 2 < raw.count, let hi = RequestPath.hex(raw[i + 1]), let lo = RequestPath.hex(raw[i + 2]) {
                out[n] = hi << 4 | lo
                i += 2
            } else {
                out[n] = byte
            }
            n += 1
            i += 1
        }
        return n
    }

    /// Whether the query carries every `name=value` of a constrained grant.
    static func carries(_ constraints: Set<QueryConstraint>, in query: String) -> Bool {
        constraints.allSatisfy { values(Array($0.name.utf8), in: query).contains($0.value) }
    }
}

/// A raw query string's parameters, each name and value decoded once (`%XX`, `+` as space),
/// exactly as query gates read them — so that a handler never sees a value the
/// enforcement layer read differently.
public enum QueryItems {
    /// Splits and decodes a raw query string.
    /// - Parameter query: The query without `?`, as it arrived; `nil` or empty for none.
    /// - Returns: Every non-empty `name=value` pair in order, repeats included; a pair
    ///   without `=` has an empty value.
    public static func parse(_ query: String?) -> [(name: String, value: String)] {
        guard let query, !query.isEmpty else { return [] }
        var items: [(name: String, value: String)] = []
        QueryString.forEachPair(in: query) { name, value in
            items.append((String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self)))
            return true
        }
        return items
    }
}
