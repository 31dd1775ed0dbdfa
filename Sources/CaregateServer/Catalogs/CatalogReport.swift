public import Scopes

/// A catalog as JSON-friendly data: what `caregate scopes --json` prints and the
/// scope reference page shows.
public struct CatalogReport: Encodable, Sendable {
    public struct ScopeRow: Encodable, Sendable {
        public var name: String
        public var category: String
        public var description: String
        public var credentialTypes: [String]
        public var products: [String]
        public var selfService: Bool
        public var smart: Bool
        public var endpoints: [String]
        public var aliasOf: String?
        public var requires: [String]
    }

    public struct RouteRow: Encodable, Sendable {
        public var method: String
        public var path: String
        public var requirement: String
        public var `public`: Bool
        public var description: String?
    }

    public var surface: String
    public var title: String
    public var sources: [String]
    public var stats: CatalogStats
    public var categories: [String]
    public var globalScope: String?
    public var scopes: [ScopeRow]
    public var routes: [RouteRow]

    public init(_ catalog: CompiledCatalog) {
        surface = catalog.surface
        title = catalog.definition.title
        sources = catalog.definition.sources
        stats = catalog.stats
        categories = catalog.definition.categories
        globalScope = catalog.globalScope
        scopes = catalog.scopes.map {
            ScopeRow(
                name: $0.name, category: $0.category, description: $0.description,
                credentialTypes: $0.credentialTypes.map(\.displayName), products: $0.products,
                selfService: $0.selfService, smart: $0.isSMART, endpoints: $0.endpoints,
                aliasOf: $0.aliasOf, requires: $0.requires)
        }
        routes = catalog.routes.map {
            RouteRow(method: $0.method.description, path: $0.path, requirement: $0.requirement, public: $0.isPublic, description: $0.description)
        }
    }

    /// A plain-text listing: counts, then one block per category.
    public var text: String {
        var out = "\(surface) — \(title)\n"
        out += "\(stats.scopes) scopes, \(stats.categories) categories, \(stats.smart) SMART, \(stats.selfService) self-service, \(routes.count) routes\n"
        if let globalScope { out += "global scope: \(globalScope) (opens every route; not combinable)\n" }
        for category in categories {
            let rows = scopes.filter { $0.category == category }
            if rows.isEmpty { continue }
            out += "\n\(category)\n"
            let width = min(rows.map(\.name.count).max() ?? 0, 44)
            for row in rows {
                var flags = row.credentialTypes.joined(separator: ", ")
                if row.selfService { flags += "; self-service" }
                if let alias = row.aliasOf { flags += "; alias of \(alias)" }
                if !row.requires.isEmpty { flags += "; requires \(row.requires.joined(separator: ", "))" }
                out += "  \(row.name.padding(toLength: max(width, row.name.count), withPad: " ", startingAt: 0))  [\(flags)]\n"
                for endpoint in row.endpoints { out += "      \(endpoint)\n" }
            }
        }
        return out
    }
}
