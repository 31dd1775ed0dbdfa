/// The scope grammar (see ``Scope``), byte by byte over the UTF-8 text.
enum ScopeParser {
    typealias Bytes = UnsafeBufferPointer<UInt8>

    static func parse(_ text: String) throws(ScopeError) -> Scope {
        try withBytes(text) { bytes throws(ScopeError) in try parse(bytes, text: text) }
    }

    /// `String.withUTF8` with a typed error.
    @inline(__always)
    static func withBytes<T>(_ text: String, _ body: (Bytes) throws(ScopeError) -> T) throws(ScopeError) -> T {
        var utf8 = text
        let result: Result<T, ScopeError> = utf8.withUTF8 { bytes in
            do throws(ScopeError) { return .success(try body(bytes)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    /// Parses the scope in `bytes`; `text` is the same scope as a String when the caller has one.
    static func parse(_ bytes: Bytes, text: String?) throws(ScopeError) -> Scope {
        let form = try parseForm(bytes, text: text)
        return Scope(form: form, text: text ?? String(decoding: bytes, as: UTF8.self))
    }

    private static func parseForm(_ b: Bytes, text: String?) throws(ScopeError) -> Scope.Form {
        func fail(_ reason: ScopeError.Reason) -> ScopeError {
            ScopeError(text: text ?? String(decoding: b, as: UTF8.self), reason: reason)
        }

        if b.isEmpty { throw fail(.empty) }
        if b.count > ScopeLimits.maxScopeBytes { throw fail(.tooLong(bytes: b.count)) }
        var slash = -1, colon = -1, question = -1, dot = -1
        for (i, byte) in b.enumerated() {
            switch byte {
            case 0x20, 0x09, 0x0A, 0x0B, 0x0C, 0x0D: throw fail(.whitespace)
            case 0..<0x20, 0x7F: throw fail(.controlCharacter)
            case 0x80...: throw fail(.nonASCII)
            case UInt8(ascii: "/") where slash < 0 && question < 0: slash = i
            case UInt8(ascii: ":") where colon < 0 && question < 0: colon = i
            case UInt8(ascii: "?") where question < 0: question = i
            case UInt8(ascii: ".") where dot < 0 && question < 0: dot = i
            default: break
            }
        }

        if slash >= 0 {
            if equals(b, 0, slash, "launch") {
                // launch/patient, launch/encounter
                try checkWord(b, slash + 1, b.count, first: lower, rest: lower | upper | digit, text: text, what: "launch context")
                return .bare(text ?? String(decoding: b, as: UTF8.self))
            }
            let ctx: ScopeContext
            if equals(b, 0, slash, "patient") {
                ctx = .patient
            } else if equals(b, 0, slash, "user") {
                ctx = .user
            } else if equals(b, 0, slash, "system") {
                ctx = .system
            } else if slash == 0 {
                throw fail(.malformed("a context is required before \"/\""))
            } else {
                throw fail(.unknownContext(string(b, 0, slash)))
            }
            return .resource(try parseResource(b, context: ctx, slash: slash, text: text))
        }
        if question >= 0 { throw fail(.invalidCharacter("?")) }
        if colon >= 0 {
            // action:resource
            try checkWord(b, 0, colon, first: lower, rest: snake, text: text, what: "action")
            try checkWord(b, colon + 1, b.count, first: lower, rest: snake, text: text, what: "resource")
            return .actionResource(action: string(b, 0, colon), resource: string(b, colon + 1, b.count))
        }
        if dot >= 0 {
            // dotted product scope: lower-case segments
            var segments: [String] = []
            var start = 0
            var i = 0
            while i <= b.count {
                if i == b.count || b[i] == UInt8(ascii: ".") {
                    try checkWord(b, start, i, first: lower, rest: snake, text: text, what: "dotted segment")
                    segments.append(string(b, start, i))
                    start = i + 1
                }
                i += 1
            }
            return .dotted(segments: segments)
        }
        try checkWord(b, 0, b.count, first: lower | upper, rest: lower | upper | digit | underscore | hyphen, text: text, what: "scope")
        return .bare(text ?? String(decoding: b, as: UTF8.self))
    }

    private static func parseResource(
        _ b: Bytes, context: ScopeContext, slash: Int, text: String?
    ) throws(ScopeError) -> ResourceScope {
        func fail(_ reason: ScopeError.Reason) -> ScopeError {
            ScopeError(text: text ?? String(decoding: b, as: UTF8.self), reason: reason)
        }
        var end = slash
        while end < b.count && b[end] != UInt8(ascii: "?") { end += 1 }
        var constraints: [QueryConstraint] = []
        if end < b.count { constraints = try parseConstraints(b, from: end + 1, text: text) }
        var dot = slash + 1
        while dot < end && b[dot] != UInt8(ascii: ".") { dot += 1 }
        if dot == end { throw fail(.malformed("expected \"<context>/<resource>.<permission>\"")) }
        let resource: String?
        if dot == slash + 2 && b[slash + 1] == UInt8(ascii: "*") {
            resource = nil
        } else {
            try checkWord(b, slash + 1, dot, first: lower | upper, rest: lower | upper | digit | underscore | hyphen, text: text, what: "resource type")
            resource = string(b, slash + 1, dot)
        }
        if dot + 1 == end { throw fail(.emptyPermissions) }
        let permissions: Permissions
        let syntax: ResourceScope.Syntax
        if equals(b, dot + 1, end, "read") {
            (permissions, syntax) = (.v1Read, .v1)
        } else if equals(b, dot + 1, end, "write") {
            (permissions, syntax) = (.v1Write, .v1)
        } else if equals(b, dot + 1, end, "*") {
            (permissions, syntax) = (.all, .v1)
        } else {
            var set = Permissions()
            var lastIndex = -1
            for i in (dot + 1)..<end {
                let index: Int
                switch b[i] {
                case UInt8(ascii: "c"): index = 0
                case UInt8(ascii: "r"): index = 1
                case UInt8(ascii: "u"): index = 2
                case UInt8(ascii: "d"): index = 3
                case UInt8(ascii: "s"): index = 4
                default:
                    let word = ScopeError.escape(string(b, dot + 1, end))
                    throw fail(.malformed("unknown permission \"\(word)\" (expected read, write, * or letters of cruds)"))
                }
                if index <= lastIndex { throw fail(.permissionsOutOfOrder) }
                lastIndex = index
                set.insert(Permissions(rawValue: 1 << UInt8(index)))
            }
            (permissions, syntax) = (set, .v2)
        }
        if !constraints.isEmpty && syntax == .v1 {
            throw fail(.invalidConstraint("query constraints need v2 permission letters (e.g. .rs)"))
        }
        return ResourceScope(
            context: context, resource: resource, permissions: permissions, syntax: syntax,
            constraints: constraints)
    }

    private static func parseConstraints(_ b: Bytes, from start: Int, text: String?) throws(ScopeError) -> [QueryConstraint] {
        func fail(_ why: String) -> ScopeError {
            ScopeError(text: text ?? String(decoding: b, as: UTF8.self), reason: .invalidConstraint(why))
        }
        if start >= b.count { throw fail("nothing after \"?\"") }
        var result: [QueryConstraint] = []
        var pairStart = start
        for i in start...b.count where i == b.count || b[i] == UInt8(ascii: "&") {
            guard let eq = (pairStart..<i).first(where: { b[$0] == UInt8(ascii: "=") }) else {
                throw fail("expected name=value")
            }
            if eq == pairStart { throw fail("empty parameter name") }
            if eq + 1 == i { throw fail("empty value for \(string(b, pairStart, eq))") }
            for j in pairStart..<eq where charClass(b[j]) & (lower | upper | digit | underscore | hyphen | punctuation) == 0 {
                throw fail("character \"\(Character(Unicode.Scalar(b[j])))\" in a parameter name")
            }
            for j in (eq + 1)..<i where b[j] == UInt8(ascii: "=") || b[j] == UInt8(ascii: "?") {
                throw fail("character \"\(Character(Unicode.Scalar(b[j])))\" in a value")
            }
            result.append(QueryConstraint(name: string(b, pairStart, eq), value: string(b, eq + 1, i)))
            pairStart = i + 1
        }
        return result
    }

    @inline(__always)
    private static func checkWord(
        _ b: Bytes, _ start: Int, _ end: Int, first: UInt8, rest: UInt8, text: String?, what: String
    ) throws(ScopeError) {
        func fail(_ reason: ScopeError.Reason) -> ScopeError {
            ScopeError(text: text ?? String(decoding: b, as: UTF8.self), reason: reason)
        }
        if start >= end { throw fail(.malformed("empty \(what)")) }
        if charClass(b[start]) & first == 0 {
            throw fail(.malformed("\(what) must start with \(first & upper != 0 ? "a letter" : "a lower-case letter")"))
        }
        var i = start + 1
        while i < end {
            if charClass(b[i]) & rest == 0 { throw fail(.invalidCharacter(Character(Unicode.Scalar(b[i])))) }
            i += 1
        }
    }

    @inline(__always)
    private static func equals(_ b: Bytes, _ start: Int, _ end: Int, _ word: StaticString) -> Bool {
        guard end - start == word.utf8CodeUnitCount else { return false }
        let w = word.utf8Start
        var i = 0
        while i < end - start {
            if b[start + i] != w[i] { return false }
            i += 1
        }
        return true
    }

    private static func string(_ b: Bytes, _ start: Int, _ end: Int) -> String {
        String(decoding: UnsafeBufferPointer(rebasing: b[start..<end]), as: UTF8.self)
    }

    // Character classes, as bits.
    private static let lower: UInt8 = 1, upper: UInt8 = 2, digit: UInt8 = 4, underscore: UInt8 = 8
    private static let hyphen: UInt8 = 16, punctuation: UInt8 = 32  // . and : (query parameter names)
    private static let snake: UInt8 = lower | digit | underscore

    @inline(__always) private static func charClass(_ c: UInt8) -> UInt8 {
        switch c {
        case 0x61...0x7A: lower
        case 0x41...0x5A: upper
        case 0x30...0x39: digit
        case UInt8(ascii: "_"): underscore
        case UInt8(ascii: "-"): hyphen
        case UInt8(ascii: "."), UInt8(ascii: ":"): punctuation
        default: 0
        }
    }
}

/// Space-separated scope lists (OAuth `scope` parameters, CLI arguments).
public enum ScopeList {
    /// Parses a list separated by single spaces, keeping the first of any duplicates.
    /// Strict on separators (no tabs, no runs of spaces) so that a list has one reading.
    /// - Parameter text: The list as received; the empty string is the empty list.
    /// - Returns: The scopes in order, duplicates dropped.
    /// - Throws: ``ScopeError`` for the first invalid scope, an empty entry, or a list over
    ///   ``ScopeLimits/maxListBytes`` or ``ScopeLimits/maxListEntries``.
    public static func parse(_ text: String) throws(ScopeError) -> [Scope] {
        try ScopeParser.withBytes(text) { bytes throws(ScopeError) -> [Scope] in
            if bytes.count > ScopeLimits.maxListBytes {
                throw ScopeError(text: text, reason: .listTooLong(bytes: bytes.count))
            }
            if bytes.isEmpty { return [] }
            var spaces = 0
            for byte in bytes where byte == 0x20 { spaces += 1 }
            var result = UniqueScopes(capacity: min(spaces + 1, ScopeLimits.maxListEntries))
            var entries = 0
            var start = 0
            var i = 0
            while i <= bytes.count {
                if i == bytes.count || bytes[i] == 0x20 {
                    if i == start { throw ScopeError(text: text, reason: .emptyEntry) }
                    entries += 1
                    if entries > ScopeLimits.maxListEntries {
                        let count = bytes.split(separator: 0x20, omittingEmptySubsequences: false).count
                        throw ScopeError(text: text, reason: .tooManyScopes(count: count))
                    }
                    result.insert(try ScopeParser.parse(UnsafeBufferPointer(rebasing: bytes[start..<i]), text: nil))
                    start = i + 1
                }
                i += 1
            }
            return result.scopes
        }
    }

    /// Parses scopes given one by one (JSON arrays), with the same limits as a list, so that
    /// the two ways of asking cannot grant different things.
    /// - Parameter items: One scope per element.
    /// - Returns: The scopes in order, duplicates dropped.
    /// - Throws: ``ScopeError`` for the first invalid or empty scope, or too many or too long.
    public static func parse(_ items: [String]) throws(ScopeError) -> [Scope] {
        let bytes = items.reduce(0) { $0 + $1.utf8.count + 1 }
        if bytes > ScopeLimits.maxListBytes + 1 {
            throw ScopeError(text: items.prefix(3).joined(separator: " "), reason: .listTooLong(bytes: bytes - 1))
        }
        return try parse(items.map { Substring($0) }, whole: items.joined(separator: " "))
    }

    private static func parse(_ parts: [Substring], whole: String) throws(ScopeError) -> [Scope] {
        if parts.count > ScopeLimits.maxListEntries {
            throw ScopeError(text: whole, reason: .tooManyScopes(count: parts.count))
        }
        var result = UniqueScopes(capacity: parts.count)
        for part in parts {
            if part.isEmpty { throw ScopeError(text: whole, reason: .emptyEntry) }
            result.insert(try Scope(parsing: part))
        }
        return result.scopes
    }
}

/// A list's scopes with the first of any duplicates kept. Compares FNV-1a hashes of the
/// text before the text itself: at the 256-scope limit, with names sharing long prefixes,
/// a scan of string comparisons costs about 140 µs and this about 20 µs (measured with
/// `swiftc -O`; the two are equal at 20 scopes).
private struct UniqueScopes {
    private(set) var scopes: [Scope] = []
    private var hashes: [UInt64] = []

    init(capacity: Int) {
        scopes.reserveCapacity(capacity)
        hashes.reserveCapacity(capacity)
    }

    mutating func insert(_ scope: Scope) {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in scope.description.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        for (k, h) in hashes.enumerated() where h == hash && scopes[k].description == scope.description { return }
        scopes.append(scope)
        hashes.append(hash)
    }
}
