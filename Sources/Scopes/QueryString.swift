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
    static func fires(_ name: [UInt8], in query: String) -> Bool {
        values(name, in: query).contains { $0 != "false" }
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
