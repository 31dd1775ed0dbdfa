/// One route: method + path template → what opens it.
///
/// Exactly one of `scope`, `anyOf` or `public` is given. Path templates are literal
/// segments, `{name}` parameters and an optional final `*` (one or more further segments).
/// Requirements in `anyOf` may use a path parameter as the resource type
/// (`"patient/{ResourceType}.s"`) or a comma-separated query parameter
/// (`"system/{query._type}.rs"`: every listed type is required; the alternative does not
/// apply when the parameter is absent).
public struct RouteEntry: Hashable, Sendable, Codable {
    /// `GET`, `POST`, `PUT`, `PATCH`, `DELETE` or `OPTIONS`; `HEAD` is served by the `GET` route.
    public var method: String
    /// The path template (`/v3/patients/{id}`, `/fhir/R4/{ResourceType:resourceType}/*`).
    public var path: String
    /// The one scope that opens the route.
    public var scope: String?
    /// Alternatives, any one of which opens the route.
    public var anyOf: [String]?
    /// The route needs no scope (discovery documents, metadata).
    public var `public`: Bool
    /// Extra requirements that apply when the request carries a query parameter.
    public var when: [QueryGate]
    /// What the route does, for listings.
    public var description: String?

    /// Builds a route in code; the defaults are what a file that omits the key means.
    /// - Parameters:
    ///   - method: The HTTP method's name.
    ///   - path: The path template.
    ///   - scope: The one scope that opens the route.
    ///   - anyOf: Alternatives, any one of which opens the route.
    ///   - isPublic: Whether the route needs no scope.
    ///   - when: Extra requirements keyed by query parameter.
    ///   - description: What the route does.
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

    /// Decodes a route, refusing keys it does not know.
    /// - Parameter decoder: The decoder positioned at the route.
    /// - Throws: `DecodingError` for a missing or unknown key or a value of the wrong type.
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
    /// The query parameter's name, as it appears after percent-decoding.
    public var query: String
    /// The scope also required when the gate fires.
    public var scope: String

    /// Builds a query gate in code.
    /// - Parameters:
    ///   - query: The query parameter's name.
    ///   - scope: The scope also required when the gate fires.
    public init(query: String, scope: String) {
        self.query = query
        self.scope = scope
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case query, scope }

    /// Decodes a query gate, refusing keys it does not know.
    /// - Parameter decoder: The decoder positioned at the gate.
    /// - Throws: `DecodingError` for a missing or unknown key or a value of the wrong type.
    public init(from decoder: any Decoder) throws {
        try StrictKeys.check(decoder, allowed: CodingKeys.allCases)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        query = try c.decode(String.self, forKey: .query)
        scope = try c.decode(String.self, forKey: .scope)
    }
}
