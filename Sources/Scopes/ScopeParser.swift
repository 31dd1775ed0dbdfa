/// The scope grammar (see ``Scope``), byte by byte over the UTF-8 text.
enum ScopeParser {
    typealias Bytes = UnsafeBufferPointer<UInt8>

    static func parse(_ text: String) throws(ScopeError) -> Scope {
        var utf8 = text
        let result: Result<Scope.Form, ScopeError> = utf8.withUTF8 { bytes in
            do throws(ScopeError) {
                return .success(try parseForm(bytes, text: text))
            } catch {
                return .failure(error)
            }
        }
        switch result {
        case .success(let form): return Scope(form: form, text: text)
        case .failure(let error): throw error
        }
    }

    private static func parseForm(_ b: Bytes, text: String) throws(ScopeError) -> Scope.Form {
        func fail(_ reason: ScopeError.Reason) -> ScopeError { ScopeError(text: text, reason: reason) }

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
            let context = string(b, 0, slash)
            if context == "launch" {
                // launch/patient, launch/encounter
                try checkWord(b, slash + 1, b.count, first: isLower, rest: isAlnum, text: text, what: "launch context")
                return .bare(text)
            }
            guard let ctx = ScopeContext(rawValue: context) else {
                if context.isEmpty { throw fail(.malformed("a context is required before \"/\"")) }
                throw fail(.unknownContext(context))
            }
            return .resource(try parseResource(b, context: ctx, slash: slash, text: text))
        }
        if question >= 0 { throw fail(.invalidCharacter("?")) }
        if colon >= 0 {
            // action:resource
            try checkWord(b, 0, colon, first: isLower, rest: isSnake, text: text, what: "action")
            try checkWord(b, colon + 1, b.count, first: isLower, rest: isSnake, text: text, what: "resource")
            return .actionResource(action: string(b, 0, colon), resource: string(b, colon + 1, b.count))
        }
        if dot >= 0 {
            // dotted product scope: lower-case segments
            var segments: [String] = []
            var start = 0
            for i in 0...b.count where i == b.count || b[i] == UInt8(ascii: ".") {
                try checkWord(b, start, i, first: isLower, rest: isSnake, text: text, what: "dotted segment")
                segments.append(string(b, start, i))
                start = i + 1
            }
            return .dotted(segments: segments)
        }
        try checkWord(b, 0, b.count, first: isAlpha, rest: isBareChar, text: text, what: "scope")
        return .bare(text)
    }

    private static func parseResource(
        _ b: Bytes, context: ScopeContext, slash: Int, text: String
    ) throws(ScopeError) -> ResourceScope {
        func fail(_ reason: ScopeError.Reason) -> ScopeError { ScopeError(text: text, reason: reason) }
        var end = b.count
        var constraints: [QueryConstraint] = []
        if let q = (slash..<b.count).first(where: { b[$0] == UInt8(ascii: "?") }) {
            end = q
            constraints = try parseConstraints(b, from: q + 1, text: text)
        }
        guard let dot = (slash + 1..<end).first(where: { b[$0] == UInt8(ascii: ".") }) else {
            throw fail(.malformed("expected \"<context>/<resource>.<permission>\""))
        }
        let resource: String?
        if dot == slash + 2 && b[slash + 1] == UInt8(ascii: "*") {
            resource = nil
        } else {
            try checkWord(b, slash + 1, dot, first: isAlpha, rest: isResourceChar, text: text, what: "resource type")
            resource = string(b, slash + 1, dot)
        }
        if dot + 1 == end { throw fail(.emptyPermissions) }
        let word = string(b, dot + 1, end)
        let permissions: Permissions
        let syntax: ResourceScope.Syntax
        switch word {
        case "read": (permissions, syntax) = (.v1Read, .v1)
        case "write": (permissions, syntax) = (.v1Write, .v1)
        case "*": (permissions, syntax) = (.all, .v1)
        default:
            var set = Permissions()
            var lastIndex = -1
            for byte in word.utf8 {
                guard let index = Permissions.letters.firstIndex(where: { $0.letter.asciiValue == byte }) else {
                    throw fail(.malformed("unknown permission \"\(ScopeError.escape(word))\" (expected read, write, * or letters of cruds)"))
                }
                if index <= lastIndex { throw fail(.permissionsOutOfOrder) }
                lastIndex = index
                set.insert(Permissions.letters[index].permission)
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

    private static func parseConstraints(_ b: Bytes, from start: Int, text: String) throws(ScopeError) -> [QueryConstraint] {
        func fail(_ why: String) -> ScopeError { ScopeError(text: text, reason: .invalidConstraint(why)) }
        if start >= b.count { throw fail("nothing after \"?\"") }
        var result: [QueryConstraint] = []
        var pairStart = start
        for i in start...b.count where i == b.count || b[i] == UInt8(ascii: "&") {
            guard let eq = (pairStart..<i).first(where: { b[$0] == UInt8(ascii: "=") }) else {
                throw fail("expected name=value")
            }
            if eq == pairStart { throw fail("empty parameter name") }
            if eq + 1 == i { throw fail("empty value for \(string(b, pairStart, eq))") }
            for j in pairStart..<eq where !isParamNameChar(b[j]) {
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

    private static func checkWord(
        _ b: Bytes, _ start: Int, _ end: Int,
        first: (UInt8) -> Bool, rest: (UInt8) -> Bool, text: String, what: String
    ) throws(ScopeError) {
        if start >= end { throw ScopeError(text: text, reason: .malformed("empty \(what)")) }
        if !first(b[start]) {
            let kind = first(UInt8(ascii: "A")) ? "a letter" : "a lower-case letter"
            throw ScopeError(text: text, reason: .malformed("\(what) must start with \(kind)"))
        }
        for i in (start + 1)..<end where !rest(b[i]) {
            throw ScopeError(text: text, reason: .invalidCharacter(Character(Unicode.Scalar(b[i]))))
        }
    }

    private static func string(_ b: Bytes, _ start: Int, _ end: Int) -> String {
        String(decoding: UnsafeBufferPointer(rebasing: b[start..<end]), as: UTF8.self)
    }

    private static func isLower(_ c: UInt8) -> Bool { c >= 0x61 && c <= 0x7A }
    private static func isAlpha(_ c: UInt8) -> Bool { isLower(c) || (c >= 0x41 && c <= 0x5A) }
    private static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
    private static func isAlnum(_ c: UInt8) -> Bool { isAlpha(c) || isDigit(c) }
    private static func isSnake(_ c: UInt8) -> Bool { isLower(c) || isDigit(c) || c == UInt8(ascii: "_") }
    private static func isBareChar(_ c: UInt8) -> Bool {
        isAlnum(c) || c == UInt8(ascii: "_") || c == UInt8(ascii: "-")
    }
    private static func isResourceChar(_ c: UInt8) -> Bool {
        isAlnum(c) || c == UInt8(ascii: "_") || c == UInt8(ascii: "-")
    }
    private static func isParamNameChar(_ c: UInt8) -> Bool {
        isAlnum(c) || c == UInt8(ascii: "_") || c == UInt8(ascii: "-") || c == UInt8(ascii: ".")
            || c == UInt8(ascii: ":")
    }
}

/// Space-separated scope lists (OAuth `scope` parameters, CLI arguments).
public enum ScopeList {
    /// Parses a list separated by single spaces, keeping the first of any duplicates.
    public static func parse(_ text: String) throws(ScopeError) -> [Scope] {
        let bytes = text.utf8.count
        if bytes > ScopeLimits.maxListBytes {
            throw ScopeError(text: text, reason: .listTooLong(bytes: bytes))
        }
        if text.isEmpty { return [] }
        let parts = text.split(separator: " ", omittingEmptySubsequences: false)
        return try parse(parts, whole: text)
    }

    /// Parses scopes given one by one (JSON arrays), with the same limits.
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
        var result: [Scope] = []
        result.reserveCapacity(parts.count)
        var seen = Set<String>()
        for part in parts {
            if part.isEmpty { throw ScopeError(text: whole, reason: .emptyEntry) }
            let scope = try Scope(parsing: part)
            if seen.insert(scope.description).inserted { result.append(scope) }
        }
        return result
    }
}
