/// Reads raw query strings (`a=1&b=2`) for query gates and SMART query constraints.
/// Names and values are decoded once (`%XX`, `+` as space); a malformed `%` is kept as
/// it is, as common query parsers do.
enum QueryString {
    /// Every decoded value of parameter `name`.
    static func values(_ name: [UInt8], in query: String) -> [String] {
        var result: [String] = []
        for pair in query.utf8.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
            let eq = pair.firstIndex(of: UInt8(ascii: "="))
            let rawName = eq.map { pair[..<$0] } ?? pair[...]
            guard decode(rawName) == name else { continue }
            let rawValue = eq.map { pair[pair.index(after: $0)...] } ?? pair[pair.endIndex...]
            result.append(String(decoding: decode(rawValue), as: UTF8.self))
        }
        return result
    }

    /// Whether a gate on `name` fires: the parameter appears with a value other than `false`.
    /// Decodes into a stack buffer: gated routes (`/v3/notes`) are on the hot path.
    static func fires(_ name: [UInt8], in query: String) -> Bool {
        var query = query
        return query.withUTF8 { bytes in
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: bytes.count + 1) { buffer in
                name.withUnsafeBufferPointer { name in
                    var start = 0
                    while start <= bytes.count {
                        var end = start
                        while end < bytes.count && bytes[end] != UInt8(ascii: "&") { end += 1 }
                        if end > start {
                            var eq = start
                            while eq < end && bytes[eq] != UInt8(ascii: "=") { eq += 1 }
                            let n = decode(UnsafeBufferPointer(rebasing: bytes[start..<eq]), into: buffer)
                            if RouteTrie.compare(UnsafeBufferPointer(rebasing: buffer[0..<n]), name) == 0 {
                                let valueStart = min(eq + 1, end)
                                let v = decode(UnsafeBufferPointer(rebasing: bytes[valueStart..<end]), into: buffer)
                                if RouteTrie.compare(UnsafeBufferPointer(rebasing: buffer[0..<v]), falseBytes) != 0 { return true }
                            }
                        }
                        start = end + 1
                    }
                    return false
                }
            }
        }
    }

    private static var falseBytes: UnsafeBufferPointer<UInt8> {
        let word: StaticString = "false"
        return UnsafeBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount)
    }

    /// Decodes `%XX` and `+` from `raw` into `out`; returns the decoded length.
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

    static func decode(_ raw: Substring.UTF8View.SubSequence) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(raw.count)
        var i = raw.startIndex
        while i < raw.endIndex {
            let byte = raw[i]
            if byte == UInt8(ascii: "+") {
                out.append(0x20)
            } else if byte == UInt8(ascii: "%"),
                let h = raw.index(i, offsetBy: 1, limitedBy: raw.endIndex), h < raw.endIndex,
                let l = raw.index(h, offsetBy: 1, limitedBy: raw.endIndex), l < raw.endIndex,
                let hi = RequestPath.hex(raw[h]), let lo = RequestPath.hex(raw[l])
            {
                out.append(hi << 4 | lo)
                i = l
            } else {
                out.append(byte)
            }
            i = raw.index(after: i)
        }
        return out
    }
}

/// A raw query string's parameters, each name and value decoded once (`%XX`, `+` as space),
/// exactly as query gates read them — so that a handler never sees a value the
/// enforcement layer read differently.
public enum QueryItems {
    public static func parse(_ query: String?) -> [(name: String, value: String)] {
        guard let query, !query.isEmpty else { return [] }
        return query.utf8.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true).map { pair in
            let eq = pair.firstIndex(of: UInt8(ascii: "="))
            let name = QueryString.decode(eq.map { pair[..<$0] } ?? pair[...])
            let value = eq.map { QueryString.decode(pair[pair.index(after: $0)...]) } ?? []
            return (String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self))
        }
    }
}
