import Foundation
import Scopes

/// `GET /scopes`: a catalog's scope reference (seed 003), public. Counts come from the catalog;
/// the filter is a GET form, so it works without script and every filtered view is a link.
struct ScopeReferencePage {
    let catalogs: [CompiledCatalog]

    static let credentialTypeLabels: [(CredentialType, String)] = [
        (.apiKey, "API Key"), (.oauth2, "OAuth 2.0"), (.serviceKey, "Service Key"), (.smartOnFHIR, "SMART on FHIR"),
    ]

    struct Filter {
        var surface = "platform"
        var text = ""
        var category = ""
        var credentialType: CredentialType?
        var selfService: Bool?

        init(query: String?) {
            for (name, value) in QueryItems.parse(query ?? "") {
                switch name {
                case "surface": surface = value
                case "q": text = String(value.prefix(100))
                case "category": category = value
                case "credentialType": credentialType = CredentialType(rawValue: value)
                case "selfService": selfService = value == "yes" ? true : value == "no" ? false : nil
                default: break  // an unknown parameter narrows nothing here: the page only shows public data
                }
            }
        }

        func matches(_ scope: CatalogScope) -> Bool {
            if !category.isEmpty && scope.category != category { return false }
            if let credentialType, !scope.credentialTypes.contains(credentialType) { return false }
            if let selfService, scope.selfService != selfService { return false }
            if !text.isEmpty {
                let needle = text.lowercased()
                let haystack = ([scope.name, scope.description, scope.category] + scope.products + scope.endpoints).joined(separator: "\n").lowercased()
                if !haystack.contains(needle) { return false }
            }
            return true
        }
    }

    /// The page's context, or nil when no catalog has that surface.
    func context(query: String?) -> [String: Any]? {
        let filter = Filter(query: query)
        guard let catalog = catalogs.first(where: { $0.surface == filter.surface }) else { return nil }
        let stats = catalog.stats
        let matching = catalog.scopes.filter(filter.matches)
        let labels = Dictionary(uniqueKeysWithValues: Self.credentialTypeLabels)
        var order = catalog.definition.categories
        for scope in catalog.scopes where !order.contains(scope.category) { order.append(scope.category) }
        let groups: [[String: Any]] = order.compactMap { category in
            let scopes = matching.filter { $0.category == category }
            guard !scopes.isEmpty else { return nil }
            return [
                "category": category, "anchor": Self.anchor(category), "count": scopes.count,
                "scopes": scopes.map { scope -> [String: Any] in
                    [
                        "name": scope.name, "description": scope.description, "selfService": scope.selfService, "smart": scope.isSMART,
                        "credentialTypes": scope.credentialTypes.map { labels[$0] ?? $0.rawValue },
                        "products": scope.products, "hasProducts": !scope.products.isEmpty,
                        "endpoints": scope.endpoints, "hasEndpoints": !scope.endpoints.isEmpty,
                    ]
                },
            ]
        }
        return [
            "surfaceTitle": catalog.definition.title,
            "stats": ["scopes": stats.scopes, "categories": stats.categories, "smart": stats.smart, "selfService": stats.selfService],
            "surfaces": catalogs.map { ["name": $0.surface, "selected": $0.surface == catalog.surface] },
            "q": filter.text,
            "categories": order.map { ["name": $0, "selected": $0 == filter.category] },
            "credentialTypes": Self.credentialTypeLabels.map { ["value": $0.0.rawValue, "label": $0.1, "selected": $0.0 == filter.credentialType] },
            "selfServiceYes": filter.selfService == true, "selfServiceNo": filter.selfService == false,
            "matching": matching.count, "groups": groups,
        ]
    }

    static func anchor(_ category: String) -> String {
        String(category.lowercased().map { $0.isLetter || $0.isNumber ? $0 : "-" })
    }
}
