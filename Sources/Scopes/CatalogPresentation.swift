/// What a compiled catalog shows people rather than what enforcement needs: its scopes
/// and routes as listed on a reference page, counts, and decisions explained in words.
extension CompiledCatalog {
    /// The catalog's counts, for its reference page and the CLI's summary.
    public var stats: CatalogStats {
        CatalogStats(
            scopes: scopes.count,
            categories: Set(scopes.map(\.category)).count,
            smart: scopes.filter(\.isSMART).count,
            selfService: scopes.filter(\.selfService).count)
    }

    /// A decision with the human reason behind it (for `caregate check` and audit views).
    /// Slower than ``decide(_:method:target:)``: it decides again per held scope to say which
    /// ones grant the route. Not for the request path.
    /// - Parameters:
    ///   - set: The effective set to decide with.
    ///   - method: The method's name (`GET`).
    ///   - target: The raw request target: path, then optionally `?` and the query.
    /// - Returns: The decision, the matched route and a sentence saying why.
    public func explain(_ set: ScopeSet, method: String, target: String) -> Explanation {
        let decision = decide(set, method: method, target: target)
        let route = decision.route.map { routes[$0.index] }
        let reason: String
        switch decision {
        case .allowed(let id):
            let info = routes[id.index]
            if info.isPublic {
                reason = "\(info.template) is public (no scope required)"
            } else {
                let holders = scopeNames(in: set).filter { name in
                    let only = ScopeSet(bits: scopes[entryIndex[name]!].mask)
                    return decide(applyingDependencies(only.union(requiredCompanions(of: name))), method: method, target: target).isAllowed
                }
                let by = holders.isEmpty ? "" : "; granted by \(holders.joined(separator: ", "))"
                reason = "\(info.template) requires \(info.requirement)\(by)"
            }
        case .insufficientScope(let id, let required):
            let info = routes[id.index]
            let held = scopeNames(in: set)
            reason = "\(info.template) requires \(info.requirement); missing \(required); held: \(held.isEmpty ? "(none)" : held.joined(separator: " "))"
        case .methodNotAllowed:
            reason = "no route has this path with method \(method)"
        case .notFound:
            reason = "no route matches this path"
        case .invalidPath(let error):
            reason = "path refused: \(error)"
        }
        return Explanation(decision: decision, route: route, reason: reason)
    }

    private func requiredCompanions(of name: String) -> ScopeSet {
        guard let i = entryIndex[name] else { return .empty }
        var bits = ScopeSet.Bits.zero
        for r in scopes[i].requires { if let j = entryIndex[r] { bits |= scopes[j].mask } }
        return ScopeSet(bits: bits)
    }
}


/// A decision with its reason in words.
public struct Explanation: Sendable {
    /// What ``CompiledCatalog/decide(_:method:target:)`` answers for the same request.
    public let decision: Decision
    /// The matched route, when there is one.
    public let route: RouteInfo?
    /// Why, in a sentence: what the route requires, which held scopes grant it or which is missing.
    public let reason: String
}

/// Counts shown on a catalog's reference page.
public struct CatalogStats: Hashable, Sendable, Codable {
    /// Scopes, listed and generated.
    public let scopes: Int
    /// Categories that have at least one scope.
    public let categories: Int
    /// Scopes that SMART on FHIR credentials may carry.
    public let smart: Int
    /// Scopes a partner may assign without clinic approval.
    public let selfService: Int

    /// Creates counts, for comparing with a catalog's ``CompiledCatalog/stats``.
    /// - Parameters:
    ///   - scopes: Scopes, listed and generated.
    ///   - categories: Categories in use.
    ///   - smart: SMART on FHIR scopes.
    ///   - selfService: Self-service scopes.
    public init(scopes: Int, categories: Int, smart: Int, selfService: Int) {
        self.scopes = scopes
        self.categories = categories
        self.smart = smart
        self.selfService = selfService
    }
}

/// A scope of a compiled catalog, with everything the reference page shows.
public struct CatalogScope: Hashable, Sendable {
    /// The scope string as clients request it.
    public let name: String
    /// The scope, parsed.
    public let scope: Scope
    /// The category it is listed under.
    public let category: String
    /// What it lets a credential do.
    public let description: String
    /// Who may carry it (the catalog's default already applied).
    public let credentialTypes: [CredentialType]
    /// The products it belongs to.
    public let products: [String]
    /// Whether a partner may assign it without clinic approval.
    public let selfService: Bool
    /// Documented endpoints (`METHOD /path`), as listed or derived from the routes.
    public let endpoints: [String]
    /// The scope this one is another name for.
    public let aliasOf: String?
    /// Scopes without which this one has no effect.
    public let requires: [String]
    /// Generated from the catalog's `resources` rules rather than listed.
    public let generated: Bool
    let mask: ScopeSet.Bits

    /// A SMART on FHIR scope (carried by SMART credentials).
    public var isSMART: Bool { credentialTypes.contains(.smartOnFHIR) }
}

/// A route of a compiled catalog, for listings and audit.
public struct RouteInfo: Hashable, Sendable {
    /// The route's method.
    public let method: HTTPMethod
    /// The path template as written (`/v3/patients/{id}`).
    public let path: String
    /// Whether the route needs no scope.
    public let isPublic: Bool
    /// What opens it, in words: `read:notes` (+ `read:soap_notes` when `includeSoapNote` is set).
    public let requirement: String
    /// What the route does, as the catalog says.
    public let description: String?
    /// Method and path (`GET /v3/patients/{id}`): the route's name in audit logs and listings.
    public let template: String

    init(method: HTTPMethod, path: String, isPublic: Bool, requirement: String, description: String?) {
        self.method = method
        self.path = path
        self.isPublic = isPublic
        self.requirement = requirement
        self.description = description
        self.template = "\(method) \(path)"
    }
}
