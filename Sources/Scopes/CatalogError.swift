/// One thing wrong with a catalog, with the entry it concerns
/// (`scopes[3] "read:foo"`, `routes[12] GET /v3/x`).
public struct CatalogProblem: Hashable, Sendable, CustomStringConvertible {
    public var entry: String
    public var message: String

    public init(entry: String, message: String) {
        self.entry = entry
        self.message = message
    }

    public var description: String { entry.isEmpty ? message : "\(entry): \(message)" }
}

/// A catalog that did not compile; lists every problem found, not just the first.
public struct CatalogError: Error, Sendable, CustomStringConvertible {
    public var surface: String
    public var problems: [CatalogProblem]

    public init(surface: String, problems: [CatalogProblem]) {
        self.surface = surface
        self.problems = problems
    }

    public var description: String {
        "catalog \"\(surface)\" has \(problems.count) problem\(problems.count == 1 ? "" : "s"):\n"
            + problems.map { "  - \($0)" }.joined(separator: "\n")
    }
}

/// Why a requested scope cannot be granted. `scope` names the offending scope as written.
public struct ScopeResolutionError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Reason: Hashable, Sendable {
        case syntax(ScopeError)
        case unknown
        case readOnlyResource(String)
        case unknownResourceType(String)
        case globalCombined(global: String)
        case credentialType(CredentialType, allowed: [CredentialType])
    }

    public var scope: String
    public var reason: Reason

    public init(scope: String, reason: Reason) {
        self.scope = ScopeError.escape(scope)
        self.reason = reason
    }

    public var description: String {
        switch reason {
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
