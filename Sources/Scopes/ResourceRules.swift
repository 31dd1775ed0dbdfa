/// REST resources in the practice-API style (seed 004): each resource `name` gets the
/// scopes `<context>/<name>.read` and, unless read-only, `<context>/<name>.write`, and the
/// routes `<prefix>/<name>` (GET → search, POST → create), `<prefix>/<name>/{id}`
/// (GET → read, PUT/PATCH → update, DELETE → delete) and `<prefix>/<name>/{id}/*`
/// (nested routes, governed by the parent resource with the same method mapping as the item).
public struct ResourceRules: Hashable, Sendable, Codable {
    /// The context of the generated scopes (`system`).
    public var context: ScopeContext
    /// The path every generated route starts with (`/api/2.0`): starts with `/`, does not end with one.
    public var pathPrefix: String
    /// Who may carry the generated scopes; the catalog's `defaultCredentialTypes` when absent.
    public var credentialTypes: [CredentialType]?
    /// The resources, grouped by category.
    public var groups: [ResourceGroup]

    /// Builds resource rules in code.
    /// - Parameters:
    ///   - context: The context of the generated scopes.
    ///   - pathPrefix: The path every generated route starts with.
    ///   - credentialTypes: Who may carry the generated scopes; `nil` for the catalog's default.
    ///   - groups: The resources, grouped by category.
    public init(context: ScopeContext, pathPrefix: String, credentialTypes: [CredentialType]? = nil, groups: [ResourceGroup]) {
        self.context = context
        self.pathPrefix = pathPrefix
        self.credentialTypes = credentialTypes
        self.groups = groups
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case context, pathPrefix, credentialTypes, groups }

    /// Decodes resource rules, refusing keys they do not know.
    /// - Parameter decoder: The decoder positioned at the rules.
    /// - Throws: `DecodingError` for a missing or unknown key or a value of the wrong type.
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
    /// One of the catalog's `categories`.
    public var category: String
    /// Reference data: only the `.read` scope exists, and only GET routes.
    public var readOnly: Bool
    /// The group's resources.
    public var resources: [ResourceEntry]

    /// Builds a resource group in code.
    /// - Parameters:
    ///   - category: One of the catalog's categories.
    ///   - readOnly: Whether only `.read` scopes and GET routes are generated.
    ///   - resources: The group's resources.
    public init(category: String, readOnly: Bool = false, resources: [ResourceEntry]) {
        self.category = category
        self.readOnly = readOnly
        self.resources = resources
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case category, readOnly, resources }

    /// Decodes a resource group, refusing keys it does not know.
    /// - Parameter decoder: The decoder positioned at the group.
    /// - Throws: `DecodingError` for a missing or unknown key or a value of the wrong type.
    public init(from decoder: any Decoder) throws {
        try StrictKeys.check(decoder, allowed: CodingKeys.allCases)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        category = try c.decode(String.self, forKey: .category)
        readOnly = try c.decodeIfPresent(Bool.self, forKey: .readOnly) ?? false
        resources = try c.decode([ResourceEntry].self, forKey: .resources)
    }
}

/// One REST resource of a ``ResourceGroup``.
public struct ResourceEntry: Hashable, Sendable, Codable {
    /// The path segment and scope resource name (`patients`).
    public var name: String
    /// Human name used in the generated descriptions ("Read access to <label>").
    public var label: String

    /// Builds a resource entry in code.
    /// - Parameters:
    ///   - name: The path segment and scope resource name.
    ///   - label: The human name used in generated descriptions.
    public init(name: String, label: String) {
        self.name = name
        self.label = label
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case name, label }

    /// Decodes a resource entry, refusing keys it does not know.
    /// - Parameter decoder: The decoder positioned at the entry.
    /// - Throws: `DecodingError` for a missing or unknown key or a value of the wrong type.
    public init(from decoder: any Decoder) throws {
        try StrictKeys.check(decoder, allowed: CodingKeys.allCases)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        label = try c.decode(String.self, forKey: .label)
    }
}
