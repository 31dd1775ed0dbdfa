/// Why a scope string or scope list was refused. The message always names the
/// offending text (escaped, so that it is safe to log or return to a client).
public struct ScopeError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What was wrong with the scope or list.
    ///
    /// A struct rather than an enum, so that a new reason is not a source-breaking change
    /// for a server that switches over reasons: compare with `==`, or match the static
    /// members in `case` patterns (`case .empty:`) and keep a `default`.
    public struct Reason: Hashable, Sendable {
        enum Base: Hashable, Sendable {
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
            case emptyEntry
            case listTooLong(bytes: Int)
            case tooManyScopes(count: Int)
        }

        let base: Base
        init(_ base: Base) { self.base = base }

        /// The scope is the empty string.
        public static let empty = Reason(.empty)
        /// The scope is longer than ``ScopeLimits/maxScopeBytes``.
        /// - Parameter bytes: The scope's length in UTF-8 bytes.
        /// - Returns: The reason, carrying the length for the message.
        public static func tooLong(bytes: Int) -> Reason { Reason(.tooLong(bytes: bytes)) }
        /// The scope contains whitespace: a list was passed where one scope was expected.
        public static let whitespace = Reason(.whitespace)
        /// The scope contains a control character.
        public static let controlCharacter = Reason(.controlCharacter)
        /// The scope contains non-ASCII text, which could hide a look-alike of a real scope.
        public static let nonASCII = Reason(.nonASCII)
        /// A character that the grammar does not allow at its position.
        /// - Parameter character: The offending character.
        /// - Returns: The reason, carrying the character for the message.
        public static func invalidCharacter(_ character: Character) -> Reason { Reason(.invalidCharacter(character)) }
        /// A `context/…` scope whose context is not `patient`, `user`, `system` or `launch`.
        /// - Parameter context: The context as written.
        /// - Returns: The reason, carrying the context for the message.
        public static func unknownContext(_ context: String) -> Reason { Reason(.unknownContext(context)) }
        /// The scope does not follow the grammar.
        /// - Parameter why: A sentence naming the part that is wrong.
        /// - Returns: The reason, carrying the sentence as its message.
        public static func malformed(_ why: String) -> Reason { Reason(.malformed(why)) }
        /// Permission letters not in `cruds` order, or repeated: only one spelling of each set is accepted.
        public static let permissionsOutOfOrder = Reason(.permissionsOutOfOrder)
        /// Nothing after the `.` of a `context/resource.` scope.
        public static let emptyPermissions = Reason(.emptyPermissions)
        /// A SMART v2 query constraint (`?name=value`) that cannot be read.
        /// - Parameter why: A sentence naming what is wrong with the constraint.
        /// - Returns: The reason, carrying the sentence for the message.
        public static func invalidConstraint(_ why: String) -> Reason { Reason(.invalidConstraint(why)) }
        /// An empty entry in a list (a leading, trailing or doubled space).
        public static let emptyEntry = Reason(.emptyEntry)
        /// The list is longer than ``ScopeLimits/maxListBytes``.
        /// - Parameter bytes: The list's length in UTF-8 bytes.
        /// - Returns: The reason, carrying the length for the message.
        public static func listTooLong(bytes: Int) -> Reason { Reason(.listTooLong(bytes: bytes)) }
        /// The list has more than ``ScopeLimits/maxListEntries`` scopes.
        /// - Parameter count: The number of scopes in the list.
        /// - Returns: The reason, carrying the count for the message.
        public static func tooManyScopes(count: Int) -> Reason { Reason(.tooManyScopes(count: count)) }
    }

    /// The offending scope (or list), escaped for display.
    public let text: String
    /// What was wrong with it.
    public let reason: Reason

    /// Creates the error, escaping `text` and cutting it to 80 characters.
    /// - Parameters:
    ///   - text: The offending scope or list as given.
    ///   - reason: What was wrong with it.
    public init(text: some StringProtocol, reason: Reason) {
        self.text = ScopeError.escape(text)
        self.reason = reason
    }

    /// `invalid scope "<text>": <explanation>`, fit to return to a client.
    public var description: String {
        "invalid scope \"\(text)\": \(explanation)"
    }

    /// The reason as a sentence, without the scope: for messages that name the scope themselves.
    public var explanation: String {
        switch reason.base {
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

/// The size limits of scope strings and lists. They bound the parser's work on input that
/// comes straight from clients, before any catalog is consulted.
public enum ScopeLimits {
    /// The longest scope, in UTF-8 bytes.
    public static let maxScopeBytes = 256
    /// The longest list (an OAuth `scope` parameter), in UTF-8 bytes.
    public static let maxListBytes = 8 * 1024
    /// Room for every scope of the largest shipped catalog (practice-api: 152) in one list.
    public static let maxListEntries = 256
}
