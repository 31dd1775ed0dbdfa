/// What a compiled catalog shows people rather than what enforcement needs: its scopes
/// and routes as listed on a reference page, counts, and decisions explained in words.
extension CompiledCatalog {
    public var stats: CatalogStats {
        CatalogStats(
            scopes: scopes.count,
            categories: Set(scopes.map(\.category)).count,
            smart: scopes.filter(\.isSMART).count,
            selfService: scopes.filter(\.selfService).count)
    }

    /// A decision with the human reason behind it (for `caregate check` and audit views).
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
    public let decision: Decision
    public let route: RouteInfo?
    public let reason: String
}

/// Counts shown on a catalog's reference page.
public struct CatalogStats: Hashable, Sendable, Codable {
    public let scopes: Int
    public let categories: Int
    public let smart: Int
    public let selfService: Int

    public init(scopes: Int, categories: Int, smart: Int, selfService: Int) {
        self.scopes = scopes
        self.categories = categories
        self.smart = smart
        self.selfService = selfService
    }
}

/// A scope of a compiled catalog, with everything the reference page shows.
public struct CatalogScope: Hashable, Sendable {
    public let name: String
    public let scope: Scope
    public let category: String
    public let description: String
    public let credentialTypes: [CredentialType]
    public let products: [String]
    public let selfService: Bool
    /// Documented endpoints (`METHOD /path`), as listed or derived from the routes.
    public let endpoints: [String]
    public let aliasOf: String?
    public let requires: [String]
    /// Generated from the catalog's `resources` rules rather than listed.
    public let generated: Bool
    let mask: ScopeSet.Bits

    /// A SMART on FHIR scope (carried by SMART credentials).
    public var isSMART: Bool { credentialTypes.contains(.smartOnFHIR) }
}

/// A route of a compiled catalog, for listings and audit.
public struct RouteInfo: Hashable, Sendable {
    public let method: HTTPMethod
    /// The path template as written (`/v3/patients/{id}`).
    public let path: String
    public let isPublic: Bool
    /// What opens it, in words: `read:notes` (+ `read:soap_notes` when `includeSoapNote` is set).
    public let requirement: String
    public let description: String?
    /// `GET /v3/patients/{id}`
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
