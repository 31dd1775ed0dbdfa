import Scopes
import Testing

@Suite("Catalog validation")
struct CatalogValidationTests {
    static func minimal(scopes: [ScopeEntry], routes: [RouteEntry], global: String? = nil) -> CatalogDefinition {
        CatalogDefinition(
            surface: "test", title: "Test", categories: ["A"], defaultCredentialTypes: [.apiKey],
            globalScope: global, scopes: scopes, routes: routes)
    }

    @Test("every problem is reported with its entry")
    func everyProblem() {
        let definition = Self.minimal(
            scopes: [
                ScopeEntry(name: "read:a", category: "A", description: "a"),
                ScopeEntry(name: "read:a", category: "A", description: "dup"),
                ScopeEntry(name: "read:b", category: "Nope", description: "b"),
                ScopeEntry(name: "read:c", category: "A", description: "c", aliasOf: "read:missing"),
                ScopeEntry(name: "read:d", category: "A", description: "d", requires: ["read:missing"]),
                ScopeEntry(name: "Read:e", category: "A", description: "e"),
                ScopeEntry(name: "read:f", category: "A", description: "f", endpoints: ["GET /nowhere"]),
            ],
            routes: [
                RouteEntry(method: "GET", path: "/a", scope: "read:a"),
                RouteEntry(method: "GET", path: "/a/", scope: "read:b"),
                RouteEntry(method: "GET", path: "/x"),
                RouteEntry(method: "GET", path: "/y", scope: "read:unknown"),
                RouteEntry(method: "FETCH", path: "/z", scope: "read:a"),
                RouteEntry(method: "GET", path: "/w/../v", scope: "read:a"),
                RouteEntry(method: "GET", path: "/v/{id}/{id}", scope: "read:a"),
                RouteEntry(method: "GET", path: "/u", scope: "read:a", when: [QueryGate(query: "q", scope: "read:zzz")]),
                RouteEntry(method: "GET", path: "/t", public: true, when: [QueryGate(query: "q", scope: "read:a")]),
            ])
        do {
            _ = try CompiledCatalog(definition)
            Issue.record("expected the catalog to be refused")
        } catch {
            let text = error.problems.map(\.description)
            let expected = [
                "scopes[1] \"read:a\": duplicate scope (also scopes[0] \"read:a\")",
                "scopes[2] \"read:b\": category \"Nope\" is not listed in categories",
                "scopes[3] \"read:c\": aliasOf \"read:missing\" is not a scope of this catalog",
                "scopes[4] \"read:d\": requires \"read:missing\", which is not a scope of this catalog",
                "scopes[5] \"Read:e\": invalid scope \"Read:e\": action must start with a lower-case letter",
                "routes[1] GET /a/: duplicate route: same method and path shape as routes[0] GET /a",
                "routes[2] GET /x: a route needs a scope, anyOf or public: true",
                "routes[3] GET /y: \"read:unknown\" is not a scope of this catalog",
                "routes[4] FETCH /z: method \"FETCH\" must be one of GET POST PUT PATCH DELETE OPTIONS (HEAD follows GET)",
                "routes[5] GET /w/../v: segment \"..\" is not a valid literal segment",
                "routes[6] GET /v/{id}/{id}: parameter {id} appears twice",
                "routes[7] GET /u: \"read:zzz\" is not a scope of this catalog",
                "routes[8] GET /t: a public route cannot have query gates",
            ]
            for line in expected { #expect(text.contains(line), "missing: \(line)\nin: \(text.joined(separator: "\n"))") }
        }
    }

    @Test("a listed endpoint the scope cannot open is refused")
    func endpointMismatch() {
        let definition = Self.minimal(
            scopes: [
                ScopeEntry(name: "read:a", category: "A", description: "a", endpoints: ["GET /b"]),
                ScopeEntry(name: "read:b", category: "A", description: "b"),
            ],
            routes: [RouteEntry(method: "GET", path: "/a", scope: "read:a"), RouteEntry(method: "GET", path: "/b", scope: "read:b")])
        #expect {
            try CompiledCatalog(definition)
        } throws: { error in
            (error as? CatalogError)?.problems.first?.description.hasPrefix("scopes[0] \"read:a\": lists endpoint \"GET /b\"") == true
        }
    }

    @Test func globalScopeMustExist() {
        let definition = Self.minimal(scopes: [ScopeEntry(name: "read:a", category: "A", description: "a")], routes: [], global: "apiv2")
        #expect(throws: CatalogError.self) { try CompiledCatalog(definition) }
    }

    @Test("a read-only resource cannot be given a write scope")
    func readOnlyWrite() {
        var definition = Self.minimal(scopes: [ScopeEntry(name: "system/languages.write", category: "A", description: "w")], routes: [])
        definition.resources = ResourceRules(context: .system, pathPrefix: "/api", groups: [
            ResourceGroup(category: "A", readOnly: true, resources: [ResourceEntry(name: "languages", label: "languages")]),
        ])
        #expect {
            try CompiledCatalog(definition)
        } throws: { error in
            (error as? CatalogError)?.problems.contains { $0.message.contains("read-only") } == true
        }
    }

    @Test("catalogs larger than the bitset are refused, not truncated")
    func capacity() {
        var definition = Self.minimal(scopes: [], routes: [])
        definition.resources = ResourceRules(context: .system, pathPrefix: "/api", groups: [
            ResourceGroup(category: "A", resources: (0..<120).map { ResourceEntry(name: "r\($0)", label: "r\($0)") }),
        ])
        #expect {
            try CompiledCatalog(definition)
        } throws: { error in
            (error as? CatalogError)?.problems.first?.message.contains("at most 512") == true
        }
    }

    @Test("derived endpoints list what the routes open")
    func derivedEndpoints() {
        let v3 = catalog("marketplace-v3")
        #expect(v3.scope(named: "read:patients")?.endpoints == ["GET /v3/patients", "GET /v3/patients/{id}"])
        #expect(v3.scope(named: "read:soap_notes")?.endpoints == ["GET /v3/notes?includeSoapNote=true", "GET /v3/notes/{id}?includeSoapNote=true"])
        #expect(v3.scope(named: "read:encounters")?.endpoints == v3.scope(named: "read:bills")?.endpoints)
        let practice = catalog("practice-api")
        #expect(practice.scope(named: "system/visit_notes.write")?.endpoints.contains("POST /api/2.0/visit_notes/{visit_note_id}/sign") == true)
    }
}
