/// One thing wrong with a catalog, with the entry it concerns
/// (`scopes[3] "read:foo"`, `routes[12] GET /v3/x`).
public struct CatalogProblem: Hashable, Sendable, CustomStringConvertible {
    /// Where in the file the problem is (`routes[12] GET /v3/x`); empty for the catalog as a whole.
    public var entry: String
    /// What is wrong, as a sentence an author can act on.
    public var message: String

    /// Creates a problem; servers that validate catalogs further report theirs the same way.
    /// - Parameters:
    ///   - entry: Where in the file the problem is, or empty for the catalog as a whole.
    ///   - message: What is wrong.
    public init(entry: String, message: String) {
        self.entry = entry
        self.message = message
    }

    /// `entry: message`, one line of a ``CatalogError``'s report.
    public var description: String { entry.isEmpty ? message : "\(entry): \(message)" }
}

/// A catalog that did not compile; lists every problem found, not just the first.
public struct CatalogError: Error, Sendable, CustomStringConvertible {
    /// The catalog's surface, as its file gives it.
    public var surface: String
    /// Every problem found, in file order, so that an author can fix them in one pass.
    public var problems: [CatalogProblem]

    /// Creates the error for a catalog.
    /// - Parameters:
    ///   - surface: The catalog's surface.
    ///   - problems: What is wrong with it.
    public init(surface: String, problems: [CatalogProblem]) {
        self.surface = surface
        self.problems = problems
    }

    /// A report naming the catalog and listing each problem on its own line.
    public var description: String {
        "catalog \"\(surface)\" has \(problems.count) problem\(problems.count == 1 ? "" : "s"):\n"
            + problems.map { "  - \($0)" }.joined(separator: "\n")
    }
}

/// Why a requested scope cannot be granted. `scope` names the offending scope as written.
public struct ScopeResolutionError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Why the scope cannot be granted.
    ///
    /// A struct rather than an enum, so that a new reason is not a source-breaking change
    /// for a server that switches over reasons: compare with `==`, or match the static
    /// members in `case` patterns (`case .unknown:`) and keep a `default`.
    public struct Reason: Hashable, Sendable {
        enum Base: Hashable, Sendable {
            case syntax(ScopeError)
            case unknown
            case readOnlyResource(String)
            case unknownResourceType(String)
            case globalCombined(global: String)
            case credentialType(CredentialType, allowed: [CredentialType])
        }

        let base: Base
        init(_ base: Base) { self.base = base }

        /// The text is not a scope at all.
        /// - Parameter error: The grammar's own error, which names the offending text and why.
        /// - Returns: The reason, whose message is the grammar error's.
        public static func syntax(_ error: ScopeError) -> Reason { Reason(.syntax(error)) }
        /// A well-formed scope that this catalog does not have.
        public static let unknown = Reason(.unknown)
        /// A write scope on reference data, which only has `.read`.
        /// - Parameter resource: The read-only resource type.
        /// - Returns: The reason, carrying the resource type for the message.
        public static func readOnlyResource(_ resource: String) -> Reason { Reason(.readOnlyResource(resource)) }
        /// A resource scope naming a type that this catalog does not know.
        /// - Parameter type: The resource type as written.
        /// - Returns: The reason, carrying the type for the message.
        public static func unknownResourceType(_ type: String) -> Reason { Reason(.unknownResourceType(type)) }
        /// A scope requested together with the global scope, which must stand alone.
        /// - Parameter global: The catalog's global scope.
        /// - Returns: The reason, carrying the global scope for the message.
        public static func globalCombined(global: String) -> Reason { Reason(.globalCombined(global: global)) }
        /// A scope that a credential of this type may not carry.
        /// - Parameters:
        ///   - type: The credential type that asked for the scope.
        ///   - allowed: The credential types that may carry it.
        /// - Returns: The reason, carrying both for the message.
        public static func credentialType(_ type: CredentialType, allowed: [CredentialType]) -> Reason {
            Reason(.credentialType(type, allowed: allowed))
        }
    }

    /// The offending scope, escaped so that it is safe to log or return to a client.
    public var scope: String
    /// Why it cannot be granted.
    public var reason: Reason

    /// Creates the error, escaping `scope`.
    /// - Parameters:
    ///   - scope: The offending scope as requested.
    ///   - reason: Why it cannot be granted.
    public init(scope: String, reason: Reason) {
        self.scope = ScopeError.escape(scope)
        self.reason = reason
    }

    /// A sentence naming the scope and the reason, fit for an `invalid_scope` answer.
    public var description: String {
        switch reason.base {
        case .syntax(let error): error.description
        case .unknown: "unknown scope \"\(scope)\""
        case .readOnlyResource(let resource):
            "scope \"\(scope)\" does not exist: \(resource) is read-only reference data (only .read)"
        case .unknownResourceType(let type): "scope \"\(scope)\": unknown resource type \"\(ScopeError.escape(type))\""
        case .globalCombined(let global):
            "scope \"\(scope)\" cannot be combined with the global scope \"\(global)\": request either \(global) or specific scopes"
        case .credentialType(let type, let allowed):
            "scope \"\(scope)\" cannot be carried by a credential of type \(type.displayName) (allowed: \(allowed.map(\.displayName).joined(separator: ", ")))"
        }
    }
}
