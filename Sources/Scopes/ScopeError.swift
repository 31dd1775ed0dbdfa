/// Why a scope string or scope list was refused. The message always names the
/// offending text (escaped, so that it is safe to log or return to a client).
public struct ScopeError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Reason: Hashable, Sendable {
        case empty
        case tooLong(bytes: Int)
        case whitespace
        case controlCharacter
        case nonASCII
        case invalidCharacter(Character)
        case unknownContext(String)
        case malformed(String)
        case permissionsOutOfOrder
        case emptyPermissions
        case invalidConstraint(String)
        // Lists
        case emptyEntry
        case listTooLong(bytes: Int)
        case tooManyScopes(count: Int)
    }

    /// The offending scope (or list), escaped for display.
    public let text: String
    public let reason: Reason

    public init(text: some StringProtocol, reason: Reason) {
        self.text = ScopeError.escape(text)
        self.reason = reason
    }

    public var description: String {
        "invalid scope \"\(text)\": \(explanation)"
    }

    public var explanation: String {
        switch reason {
        case .empty: "a scope may not be empty"
        case .tooLong(let bytes): "\(bytes) bytes; a scope may have at most \(ScopeLimits.maxScopeBytes)"
        case .whitespace: "scopes may not contain whitespace (scopes are separated by single spaces)"
        case .controlCharacter: "scopes may not contain control characters"
        case .nonASCII: "scopes are printable ASCII; non-ASCII characters (look-alikes) are refused"
        case .invalidCharacter(let c): "character \"\(ScopeError.escape(String(c)))\" is not allowed here"
        case .unknownContext(let ctx): "unknown context \"\(ScopeError.escape(ctx))\" (expected patient, user, system or launch)"
        case .malformed(let why): why
        case .permissionsOutOfOrder: "permission letters must be a subset of \"cruds\" in that order, each at most once"
        case .emptyPermissions: "a permission is required after the \".\" (read, write, * or letters of cruds)"
        case .invalidConstraint(let why): "invalid query constraint: \(why)"
        case .emptyEntry: "empty scope in the list (leading, trailing or repeated space)"
        case .listTooLong(let bytes): "\(bytes) bytes; a scope list may have at most \(ScopeLimits.maxListBytes)"
        case .tooManyScopes(let count): "\(count) scopes; a list may have at most \(ScopeLimits.maxListEntries)"
        }
    }

    /// Printable ASCII stays as it is; everything else becomes `\u{XX}`. Long text is cut.
    static func escape(_ text: some StringProtocol) -> String {
        var out = ""
        var count = 0
        for scalar in text.unicodeScalars {
            count += 1
            if count > 80 {
                out += "…"
                break
            }
            if scalar.value >= 0x20 && scalar.value < 0x7F && scalar != "\\" && scalar != "\"" {
                out.unicodeScalars.append(scalar)
            } else {
                out += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            }
        }
        return out
    }
}

/// The size limits of scope strings and lists.
public enum ScopeLimits {
    public static let maxScopeBytes = 256
    public static let maxListBytes = 8 * 1024
    /// Room for every scope of the largest shipped catalog (practice-api: 152) in one list.
    public static let maxListEntries = 256
}
