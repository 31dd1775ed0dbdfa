/// A surface's catalog as written in its data file (`Catalogs/<surface>.json`).
///
/// This is the documented file format; ``CompiledCatalog/init(_:)`` validates it and
/// compiles it to the fast form. Unknown keys are refused when decoding, so a typo
/// in a catalog file is an error rather than a silently ignored rule.
/// See `docs/catalog-format.md` for the reference.
public struct CatalogDefinition: Hashable, Sendable, Codable {
    /// Format version of the file; this engine reads version 1.
    public var format: Int
    public var surface: String
    public var title: String
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
    public var scopes: [ScopeEntry]
    /// REST resources whose `system/<name>.read|write` scopes and routes are generated.
    public var resources: ResourceRules?
    public var routes: [RouteEntry]

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
public enum CredentialType: String, Hashable, Sendable, Codable, CaseIterable {
    case apiKey = "api_key"
    case oauth2 = "oauth2"
    case serviceKey = "service_key"
    case smartOnFHIR = "smart_on_fhir"

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let type = CredentialType(rawValue: text) else {
            throw DecodingError.dataCorrupted(DecodingError.Context(
                codingPath: decoder.codingPath,
                debugDescription: "unknown credential type \"\(text)\" (expected \(CredentialType.allCases.map(\.rawValue).joined(separator: ", ")))"))
        }
        self = type
    }

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
    public var name: String
    public var category: String
    public var description: String
    /// Who may carry it; the catalog's `defaultCredentialTypes` when absent.
    public var credentialTypes: [CredentialType]?
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

/// REST resources in the practice-API style (seed 004): each resource `name` gets the
/// scopes `<context>/<name>.read` and, unless read-only, `<context>/<name>.write`, and the
/// routes `<prefix>/<name>` (GET → search, POST → create), `<prefix>/<name>/{id}`
/// (GET → read, PUT/PATCH → update, DELETE → delete) and `<prefix>/<name>/{id}/*`
/// (nested routes, governed by the parent resource with the same method mapping as the item).
public struct ResourceRules: Hashable, Sendable, Codable {
    public var context: ScopeContext
    public var pathPrefix: String
    public var credentialTypes: [CredentialType]?
    public var groups: [ResourceGroup]

    public init(context: ScopeContext, pathPrefix: String, credentialTypes: [CredentialType]? = nil, groups: [ResourceGroup]) {
        self.context = context
        self.pathPrefix = pathPrefix
        self.credentialTypes = credentialTypes
        self.groups = groups
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case context, pathPrefix, credentialTypes, groups }

    public init(from decoder: any Decoder) throws {
        try StrictKeys.check(decoder, allowed: CodingKeys.allCases)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        context = try c.decode(ScopeContext.self, forKey: .context)
        pathPrefix = try c.decode(String.self, forKey: .pathPrefix)
        credentialTypes = try c.decodeIfPresent([CredentialType].self, forKey: .credentialTypes)
        groups = try c.decode([ResourceGroup].self, forKey: .groups)
    }
}

extension ScopeContext: Codable {}

/// A group of REST resources; the group name is the generated scopes' category.
public struct ResourceGroup: Hashable, Sendable, Codable {
    public var category: String
    /// Reference data: only the `.read` scope exists, and only GET routes.
    public var readOnly: Bool
    public var resources: [ResourceEntry]

    public init(category: String, readOnly: Bool = false, resources: [ResourceEntry]) {
        self.category = category
        self.readOnly = readOnly
        self.resources = resources
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case category, readOnly, resources }

    public init(from decoder: any Decoder) throws {
        try StrictKeys.check(decoder, allowed: CodingKeys.allCases)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        category = try c.decode(String.self, forKey: .category)
        readOnly = try c.decodeIfPresent(Bool.self, forKey: .readOnly) ?? false
        resources = try c.decode([ResourceEntry].self, forKey: .resources)
    }
}

public struct ResourceEntry: Hashable, Sendable, Codable {
    public var name: String
    /// Human name used in the generated descriptions ("Read access to <label>").
    public var label: String

    public init(name: String, label: String) {
        self.name = name
        self.label = label
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case name, label }

    public init(from decoder: any Decoder) throws {
        try StrictKeys.check(decoder, allowed: CodingKeys.allCases)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        label = try c.decode(String.self, forKey: .label)
    }
}

/// One route: method + path template → what opens it.
///
/// Exactly one of `scope`, `anyOf` or `public` is given. Path templates are literal
/// segments, `{name}` parameters and an optional final `*` (one or more further segments).
/// Requirements in `anyOf` may use a path parameter as the resource type
/// (`"patient/{ResourceType}.s"`) or a comma-separated query parameter
/// (`"system/{query._type}.rs"`: every listed type is required; the alternative does not
/// apply when the parameter is absent).
public struct RouteEntry: Hashable, Sendable, Codable {
    public var method: String
    public var path: String
    public var scope: String?
    public var anyOf: [String]?
    public var `public`: Bool
    public var when: [QueryGate]
    public var description: String?

    public init(
        method: String, path: String, scope: String? = nil, anyOf: [String]? = nil,
        public isPublic: Bool = false, when: [QueryGate] = [], description: String? = nil
    ) {
        self.method = method
        self.path = path
        self.scope = scope
        self.anyOf = anyOf
        self.public = isPublic
        self.when = when
        self.description = description
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case method, path, scope, anyOf, `public`, when, description }

    public init(from decoder: any Decoder) throws {
        try StrictKeys.check(decoder, allowed: CodingKeys.allCases)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        method = try c.decode(String.self, forKey: .method)
        path = try c.decode(String.self, forKey: .path)
        scope = try c.decodeIfPresent(String.self, forKey: .scope)
        anyOf = try c.decodeIfPresent([String].self, forKey: .anyOf)
        self.public = try c.decodeIfPresent(Bool.self, forKey: .public) ?? false
        when = try c.decodeIfPresent([QueryGate].self, forKey: .when) ?? []
        description = try c.decodeIfPresent(String.self, forKey: .description)
    }
}

/// An extra requirement that applies when the request carries a query parameter.
///
/// The gate fires when `query` appears (after percent-decoding) with any value other
/// than exactly `false`, in any of its occurrences — so that every value a handler
/// could read as "yes" (`true`, `TRUE`, `1`, empty) needs the extra scope.
public struct QueryGate: Hashable, Sendable, Codable {
    public var query: String
    public var scope: String

    public init(query: String, scope: String) {
        self.query = query
        self.scope = scope
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case query, scope }

    public init(from decoder: any Decoder) throws {
        try StrictKeys.check(decoder, allowed: CodingKeys.allCases)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        query = try c.decode(String.self, forKey: .query)
        scope = try c.decode(String.self, forKey: .scope)
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
