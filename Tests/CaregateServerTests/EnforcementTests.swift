import CaregateServer
import Foundation
import Scopes
import Testing

/// Every /v3 and /v1 endpoint of the seeds: allowed with its scope, 403 with the exact
/// seed message without it — on SQLite and on PostgreSQL.
@Suite("Enforcement over HTTP")
struct EnforcementTests {
    static let v3 = try! CatalogLoader.load(file: catalogDirectory.appendingPathComponent("marketplace-v3.json"))
    static let v1 = try! CatalogLoader.load(file: catalogDirectory.appendingPathComponent("marketplace-v1.json"))
    static let allScopes = Array(Set(v3.scopes.map(\.name) + v1.scopes.map(\.name))).sorted()

    /// Real records of the clinic, for paths and bodies.
    struct Fixture {
        var ids: [String: String] = [:]
        var provider = ""
    }

    static let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + Array(repeating: 0, count: 32)

    static func fixture(_ s: TestServer, key: String, clinic: TestServer.Clinic) async throws -> Fixture {
        var f = Fixture()
        for (collection, path) in [("patients", "patients"), ("appointments", "appointments"), ("providers", "providers"), ("facilities", "facilities"),
                                   ("bills", "bills"), ("claims", "claims"), ("notes", "notes"), ("tasks", "tasks"), ("emails", "emails"),
                                   ("changes", "inventory/changes"), ("products", "inventory/products")] {
            let reply = try await s.request("GET", "/v3/\(path)?limit=1", token: key, organization: clinic.uuid)
            try expectStatus(reply, 200)
            f.ids[collection] = reply.json!.array("data").first?.string("id")
        }
        f.provider = f.ids["providers"]!
        let note = try await s.request("GET", "/v3/notes/\(f.ids["notes"]!)?includeSoapNote=true", token: key, organization: clinic.uuid)
        f.ids["impressions"] = note.json!.object("data")!.object("soapNote")!.array("impressions").first!.string("id")
        return f
    }

    /// A request that the route serves successfully, made fresh each time (writes consume records).
    static func concrete(_ route: RouteInfo, _ f: Fixture, _ s: TestServer, fullKey: String, clinic: TestServer.Clinic) async throws
        -> (path: String, json: Any?, body: Data?, headers: [String: String], expected: Int)
    {
        let version = route.path.hasPrefix("/v1") ? "/v1" : "/v3"
        var path = route.path
        let segments = path.split(separator: "/").map(String.init)
        var resolved: [String] = []
        for (i, segment) in segments.enumerated() {
            guard segment.hasPrefix("{") else { resolved.append(segment); continue }
            let parent = segments[i - 1]
            switch (parent, segment) {
            case ("images", _):
                let created = try await s.request("POST", "\(version)/notes/\(f.ids["notes"]!)/images?providerId=\(f.provider)", token: fullKey,
                                                  organization: clinic.uuid, body: Data(png), headers: ["Content-Type": "image/png"])
                try expectStatus(created, 201)
                resolved.append(created.json!.object("data")!.string("id"))
            case ("impressions", _): resolved.append(f.ids["impressions"]!)
            case ("tasks", _) where route.method == .patch:
                let task = try await s.request("POST", "/v3/tasks", token: fullKey, organization: clinic.uuid, json: ["title": "to complete"])
                try expectStatus(task, 201)
                resolved.append(task.json!.object("data")!.string("id"))
            case ("changes", _): resolved.append(f.ids["changes"]!)
            default: resolved.append(f.ids[parent]!)
            }
        }
        path = "/" + resolved.joined(separator: "/")
        var json: Any?
        var body: Data?
        var headers: [String: String] = [:]
        var expected = route.method == .post ? 201 : (route.method == .delete ? 204 : 200)
        switch "\(route.method) \(route.path.dropFirst(3))" {
        case "POST /notes/{noteId}/images":
            path += "?providerId=\(f.provider)"
            body = Data(png)
            headers["Content-Type"] = "image/png"
        case "DELETE /notes/{noteId}/images/{imageId}", "PATCH /notes/{noteId}/impressions/{impressionId}", "PATCH /notes/{noteId}":
            path += "?providerId=\(f.provider)"
            json = route.path.hasSuffix("{impressionId}") ? ["description": "Reviewed"] : (route.method == .patch ? ["plan": "Recheck in 2 weeks"] : nil)
        case "POST /tasks": json = ["title": "Call patient", "patientId": f.ids["patients"]!]
        case "PATCH /tasks/{id}": json = ["status": "completed"]
        case "POST /emails/send":
            json = ["to": "patient@example.com", "subject": "Hello", "body": "Your results are in."]
            expected = 202
        case "POST /inventory/products": json = ["name": "Test product", "sku": "T-" + UUID().uuidString.prefix(8), "priceCents": 999]
        case "PUT /inventory/products/{id}": json = ["name": "Renamed product"]
        case "POST /inventory/changes": json = ["reason": "restock", "lines": [["productId": f.ids["products"]!, "quantityDelta": 3]]]
        default: break
        }
        return (path, json, body, headers, expected)
    }

    @Test("every /v3 and /v1 route: allowed with its scope, 403 with the seed message without it", arguments: Backend.allCases)
    func everyRoute(_ backend: Backend) async throws {
        try await withServer(backend) { s in
            let developer = try await s.createDeveloper()
            let clinic = try await s.createClinic(patients: 6)
            let app = try await s.createApp(developer: developer.token, scopes: Self.allScopes)
            _ = try await s.install(app: app.id, clinic: clinic)
            let full = try await s.createKey(developer: developer.token, app: app.id, scopes: nil)
            let f = try await Self.fixture(s, key: full.key, clinic: clinic)
            var keysFor: [String: String] = [:]
            var keysWithout: [String: String] = [:]
            var checked = 0
            for catalog in [Self.v3, Self.v1] {
                for route in catalog.routes {
                    // The scope this route needs (its query gate's scope when it has one).
                    let probe = samplePath(route.path)
                    let scope: String
                    if route.requirement.contains("includeSoapNote"),
                       case .insufficientScope(_, let required) = catalog.decide(catalog.set("read:notes"), method: route.method, path: probe, query: "includeSoapNote=true") {
                        scope = required
                    } else if route.isPublic {
                        scope = ""
                    } else {
                        guard case .insufficientScope(_, let required) = catalog.decide(ScopeSet.empty, method: route.method, path: probe) else {
                            Issue.record("\(route.template) should refuse an empty set"); continue
                        }
                        scope = required
                    }
                    let needs = scope.isEmpty ? [] : [scope] + (catalog.scope(named: scope)?.requires ?? [])
                    let gated = scope == "read:soap_notes"
                    if keysFor[scope] == nil {
                        keysFor[scope] = try await s.createKey(developer: developer.token, app: app.id, scopes: needs.isEmpty ? ["read:patients"] : needs).key
                        let aliases = Set([scope] + catalog.scopes.filter { $0.aliasOf == scope || $0.name == catalog.scope(named: scope)?.aliasOf }.map(\.name))
                        keysWithout[scope] = try await s.createKey(developer: developer.token, app: app.id, scopes: Self.allScopes.filter { !aliases.contains($0) }).key
                    }
                    var request = try await Self.concrete(route, f, s, fullKey: full.key, clinic: clinic)
                    if gated { request.path += (request.path.contains("?") ? "&" : "?") + "includeSoapNote=true" }
                    let allowed = try await s.request(route.method.description, request.path, token: keysFor[scope]!, organization: clinic.uuid,
                                                      json: request.json, body: request.body, headers: request.headers)
                    #expect(allowed.status == request.expected, "\(backend) \(route.template) with \(scope): \(allowed.status) \(allowed.text.prefix(300))")
                    if scope.isEmpty { checked += 1; continue }
                    let refusal = try await Self.concrete(route, f, s, fullKey: full.key, clinic: clinic)
                    var refusedPath = refusal.path
                    if gated { refusedPath += (refusedPath.contains("?") ? "&" : "?") + "includeSoapNote=true" }
                    let denied = try await s.request(route.method.description, refusedPath, token: keysWithout[scope]!, organization: clinic.uuid,
                                                     json: refusal.json, body: refusal.body, headers: refusal.headers)
                    #expect(denied.status == 403, "\(backend) \(route.template) without \(scope): \(denied.status)")
                    #expect(denied.json?.string("code") == "forbidden")
                    #expect(denied.json?.string("message") == "Insufficient scope. Required: \(scope)")
                    #expect(denied.json?.string("trace_id") == denied.header("X-Trace-Id"))
                    #expect(denied.header("WWW-Authenticate") == #"Bearer realm="caregate", error="insufficient_scope", scope="\#(scope)""#)
                    checked += 1
                }
            }
            #expect(checked == Self.v3.routes.count + Self.v1.routes.count)
        }
    }
}

extension CompiledCatalog {
    func set(_ scopes: String) -> ScopeSet { applyingDependencies(try! resolve(scopes)) }
}

func samplePath(_ template: String) -> String {
    template.split(separator: "/", omittingEmptySubsequences: false).map { $0.hasPrefix("{") ? "x1" : String($0) }.joined(separator: "/")
}
