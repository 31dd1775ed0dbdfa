/// A surface's catalog as written in its data file (`Catalogs/<surface>.json`).
///
/// This is the documented file format; ``CompiledCatalog/init(_:)`` validates it and
/// compiles it to the fast form. Unknown keys are refused when decoding, so a typo
/// in a catalog file is an error rather than a silently ignored rule.
/// See `docs/catalog-format.md` for the reference.
public struct CatalogDefinition: Hashable, Sendable, Codable {
    /// Format version of the file; this engine reads version 1.
    public var format: Int
    /// The surface's name (`marketplace-v3`): lower-case letters, digits and `-`. Servers key
    /// catalogs by it, and it names the catalog in every ``CatalogError``.
    public var surface: String
    /// The human title of the surface's reference page.
    public var title: String
    /// Where the catalog's rules were taken from (seed files, vendor documents), for reviewers.
    public var sources: [String]
    /// Category names, in display order. Every scope names one of them.
    public var categories: [String]
    /// Credential types for scopes that do not list their own.
    public var defaultCredentialTypes: [CredentialType]
    /// A scope that opens every route of the surface and may not be combined with any other.
    public var globalScope: String?
    /// FHIR resource types known to this surface's SMART scopes (besides the wildcard `*`).
    public var resourceTypes: [String]
    /// Every name a `{Name:resourceType}` path parameter accepts (the FHIR resource types of the
    /// surface's FHIR versions); `resourceTypes` are always accepted. When both are empty the
    /// parameter accepts `^[A-Z][A-Za-z]+$`.
    public var resourceTypeNames: [String]
    /// The scopes as listed; `resources` adds generated ones after them.
    public var scopes: [ScopeEntry]
    /// REST resources whose `system/<name>.read|write` scopes and routes are generated.
    public var resources: ResourceRules?
    /// The route table as listed; `resources` adds generated routes after it.
    public var routes: [RouteEntry]

    /// Builds a catalog in code (tests, generated catalogs) rather than from a file; the
    /// defaults are what a file that omits the key means.
    /// - Parameters:
    ///   - format: The file format version; this engine reads 1.
    ///   - surface: The surface's name.
    ///   - title: The reference page's title.
    ///   - sources: Where the rules were taken from.
    ///   - categories: Category names, in display order.
    ///   - defaultCredentialTypes: Who may carry scopes that do not say.
    ///   - globalScope: The scope that opens every route, if the surface has one.
    ///   - resourceTypes: FHIR types known to SMART scopes.
    ///   - resourceTypeNames: Every name a `{Name:resourceType}` parameter accepts.
    ///   - scopes: The listed scopes.
    ///   - resources: REST resources whose scopes and routes are generated.
    ///   - routes: The listed routes.
    public init(
        format: Int = 1, surface: String, title: String, sources: [String] = [],
        categories: [String], defaultCredentialTypes: [CredentialType],
        globalScope: String? = nil, resourceTypes: [String] = [], resourceTypeNames: [String] = [],
        scopes: [ScopeEntry], resources: ResourceRules? = nil, routes: [RouteEntry]
    ) {
        self.resourceTypeNames = resourceTypeNames
        self.format = format
        self.surface = surface
        self.title = title
        self.sources = sources
        self.categories = categories
        self.defaultCredentialTypes = defaultCredentialTypes
        self.globalScope = globalScope
        self.resourceTypes = resourceTypes
        self.scopes = scopes
        self.resources = resources
        self.routes = routes
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case format, surface, title, sources, categories, defaultCredentialTypes, globalScope
        case resourceTypes, resourceTypeNames, scopes, resources, routes
    }

    /// Decodes a catalog file, refusing keys it does not know so that a typo is an error.
    /// - Parameter decoder: The decoder of the file (`JSONDecoder` for `Catalogs/*.json`).
    /// - Throws: `DecodingError` for a missing or unknown key or a value of the wrong type.
    public init(from decoder: any Decoder) throws {
        try StrictKeys.check(decoder, allowed: CodingKeys.allCases)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        format = try c.decode(Int.self, forKey: .format)
        surface = try c.decode(String.self, forKey: .surface)
        title = try c.decode(String.self, forKey: .title)
        sources = try c.decodeIfPresent([String].self, forKey: .sources) ?? []
        categories = try c.decode([String].self, forKey: .categories)
        defaultCredentialTypes = try c.decode([CredentialType].self, forKey: .defaultCredentialTypes)
        globalScope = try c.decodeIfPresent(String.self, forKey: .globalScope)
        resourceTypes = try c.decodeIfPresent([String].self, forKey: .resourceTypes) ?? []
        resourceTypeNames = try c.decodeIfPresent([String].self, forKey: .resourceTypeNames) ?? []
        scopes = try c.decodeIfPresent([ScopeEntry].self, forKey: .scopes) ?? []
        resources = try c.decodeIfPresent(ResourceRules.self, forKey: .resources)
        routes = try c.decodeIfPresent([RouteEntry].self, forKey: .routes) ?? []
    }
}

/// The kinds of credential that can carry a scope (seed 003).
///
/// A catalog says which types may carry each scope, so that, for example, a scope meant
/// for a user's consent cannot be put on a long-lived API key.
public enum CredentialType: String, Hashable, Sendable, Codable, CaseIterable {
    /// A partner's API key.
    case apiKey = "api_key"
    /// An OAuth 2.0 access token.
    case oauth2 = "oauth2"
    /// A key for server-to-server integrations.
    case serviceKey = "service_key"
    /// A SMART on FHIR app's access token.
    case smartOnFHIR = "smart_on_fhir"

    /// Decodes the type's raw value, naming the valid ones when it is not one of them.
    /// - Parameter decoder: The decoder positioned at the value.
    /// - Throws: `DecodingError.dataCorrupted` for an unknown type.
    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let type = CredentialType(rawValue: text) else {
            throw DecodingError.dataCorrupted(DecodingError.Context(
                codingPath: decoder.codingPath,
                debugDescription: "unknown credential type \"\(text)\" (expected \(CredentialType.allCases.map(\.rawValue).joined(separator: ", ")))"))
        }
        self = type
    }

    /// The name shown to people on reference pages and in refusals (`API Key`).
    public var displayName: String {
        switch self {
        case .apiKey: "API Key"
        case .oauth2: "OAuth 2.0"
        case .serviceKey: "Service Key"
        case .smartOnFHIR: "SMART on FHIR"
        }
    }
}

/// One scope of a catalog.
public struct ScopeEntry: Hashable, Sendable, Codable {
    /// The scope string as clients request it; must parse as a ``Scope``.
    public var name: String
    /// One of the catalog's `categories`, which group scopes on the reference page.
    public var category: String
    /// What the scope lets a credential do, for the reference page and consent screens.
    public var description: String
    /// Who may carry it; the catalog's `defaultCredentialTypes` when absent.
    public var credentialTypes: [CredentialType]?
    /// The products the scope belongs to, for listings only.
    public var products: [String]
    /// A partner may assign it to its own credentials without clinic approval.
    public var selfService: Bool
    /// Documented endpoints (`"GET /fhir/R4/{ResourceType}"`). When absent they are
    /// derived from the routes this scope opens. When present each one is checked:
    /// the scope must open it.
    public var endpoints: [String]?
    /// This scope is another name for that one, in both directions.
    public var aliasOf: String?
    /// Scopes without which this one has no effect.
    public var requires: [String]

    /// Builds a scope entry in code; the defaults are what a file that omits the key means.
    /// - Parameters:
    ///   - name: The scope string.
    ///   - category: One of the catalog's categories.
    ///   - description: What the scope lets a credential do.
    ///   - credentialTypes: Who may carry it; `nil` for the catalog's default.
    ///   - products: The products it belongs to.
    ///   - selfService: Whether a partner may assign it without clinic approval.
    ///   - endpoints: Documented endpoints to check; `nil` to derive them from the routes.
    ///   - aliasOf: The scope this one is another name for.
    ///   - requires: Scopes without which this one has no effect.
    public init(
        name: String, category: String, description: String, credentialTypes: [CredentialType]? = nil,
        products: [String] = [], selfService: Bool = false, endpoints: [String]? = nil,
        aliasOf: String? = nil, requires: [String] = []
    ) {
        self.name = name
        self.category = category
        self.description = description
        self.credentialTypes = credentialTypes
        self.products = products
        self.selfService = selfService
        self.endpoints = endpoints
        self.aliasOf = aliasOf
        self.requires = requires
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, category, description, credentialTypes, products, selfService, endpoints, aliasOf, requires
    }

    /// Decodes a scope entry, refusing keys it does not know.
    /// - Parameter decoder: The decoder positioned at the entry.
    /// - Throws: `DecodingError` for a missing or unknown key or a value of the wrong type.
    public init(from decoder: any Decoder) throws {
        try StrictKeys.check(decoder, allowed: CodingKeys.allCases)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        category = try c.decode(String.self, forKey: .category)
        description = try c.decode(String.self, forKey: .description)
        credentialTypes = try c.decodeIfPresent([CredentialType].self, forKey: .credentialTypes)
        products = try c.decodeIfPresent([String].self, forKey: .products) ?? []
        selfService = try c.decodeIfPresent(Bool.self, forKey: .selfService) ?? false
        endpoints = try c.decodeIfPresent([String].self, forKey: .endpoints)
        aliasOf = try c.decodeIfPresent(String.self, forKey: .aliasOf)
        requires = try c.decodeIfPresent([String].self, forKey: .requires) ?? []
    }
}

/// Refuses keys a type does not know, so that typos in catalog files are reported.
enum StrictKeys {
    struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    static func check<K: CodingKey & RawRepresentable>(_ decoder: any Decoder, allowed: [K]) throws
    where K.RawValue == String {
        let container = try decoder.container(keyedBy: AnyKey.self)
        let known = Set(allowed.map(\.rawValue))
        for key in container.allKeys where !known.contains(key.stringValue) {
            throw DecodingError.dataCorrupted(
                DecodingError.Context(
                    codingPath: decoder.codingPath,
                    debugDescription: "unknown key \"\(key.stringValue)\" (known: \(allowed.map(\.rawValue).joined(separator: ", ")))"))
        }
    }
}
