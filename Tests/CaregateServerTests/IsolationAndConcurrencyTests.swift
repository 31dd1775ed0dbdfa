import Foundation
import Testing

@Suite("Tenant isolation and concurrency")
struct IsolationAndConcurrencyTests {
    static let listPaths = ["patients", "appointments", "providers", "facilities", "bills", "claims", "notes", "tasks", "emails",
                            "phone-numbers", "inventory/changes", "inventory/products", "inventory/stock-levels"]
    static let detailPaths: Set<String> = ["patients", "appointments", "providers", "facilities", "bills", "claims", "notes", "tasks", "emails",
                                           "inventory/changes", "inventory/products"]

    @Test("two clinics' data never mix: every list and detail endpoint", arguments: Backend.allCases)
    func isolation(_ backend: Backend) async throws {
        try await withServer(backend) { s in
            let dev = try await s.createDeveloper()
            let scopes = EnforcementTests.allScopes
            let app = try await s.createApp(developer: dev.token, scopes: scopes)
            let a = try await s.createClinic(patients: 5)
            let b = try await s.createClinic(patients: 5)
            _ = try await s.install(app: app.id, clinic: a)
            _ = try await s.install(app: app.id, clinic: b)
            let key = try await s.createKey(developer: dev.token, app: app.id, scopes: nil)
            var idsOf: [String: [String: Set<String>]] = [:]
            for clinic in [a, b] {
                for path in Self.listPaths {
                    let reply = try await s.request("GET", "/v3/\(path)?\(path.hasSuffix("stock-levels") ? "" : "limit=200")", token: key.key, organization: clinic.uuid)
                    try expectStatus(reply, 200)
                    let items = reply.json!.array("data")
                    #expect(!items.isEmpty, "\(path) of \(clinic.id) is empty")
                    idsOf[clinic.id, default: [:]][path] = Set(items.map { $0.string(path.hasSuffix("stock-levels") ? "productId" : "id") })
                }
            }
            for path in Self.listPaths {
                #expect(idsOf[a.id]![path]!.isDisjoint(with: idsOf[b.id]![path]!), "\(path) shares ids between clinics")
            }
            // Clinic A's credential asking for clinic B's records by id: 404, never the record.
            for path in Self.detailPaths.sorted() {
                for id in idsOf[b.id]![path]!.prefix(2) {
                    let reply = try await s.request("GET", "/v3/\(path)/\(id)", token: key.key, organization: a.uuid)
                    #expect(reply.status == 404, "\(path)/\(id) across clinics answered \(reply.status)")
                    #expect(!reply.text.contains("firstName"))
                }
                for id in idsOf[a.id]![path]!.prefix(1) {
                    #expect(try await s.status("GET", "/v3/\(path)/\(id)", key: key.key, clinic: a) == 200)
                }
            }
            // Writes across clinics are refused too.
            let bProduct = idsOf[b.id]!["inventory/products"]!.first!
            let put = try await s.request("PUT", "/v3/inventory/products/\(bProduct)", token: key.key, organization: a.uuid, json: ["name": "stolen"])
            #expect(put.status == 404)
            let change = try await s.request("POST", "/v3/inventory/changes", token: key.key, organization: a.uuid,
                                             json: ["reason": "usage", "lines": [["productId": bProduct, "quantityDelta": -1]]])
            #expect(change.status == 400)
            #expect(change.json?.string("message").contains("lines[0].productId") == true)
        }
    }

    @Test("20 concurrent inventory changes on one product leave stock equal to the sum", arguments: Backend.allCases)
    func concurrentStock(_ backend: Backend) async throws {
        try await withServer(backend) { s in
            let dev = try await s.createDeveloper()
            let app = try await s.createApp(developer: dev.token, scopes: ["read:inventory", "write:inventory", "write:products", "read:products"])
            let clinic = try await s.createClinic(patients: 0)
            _ = try await s.install(app: app.id, clinic: clinic)
            let key = try await s.createKey(developer: dev.token, app: app.id, scopes: nil)
            let product = try await s.request("POST", "/v3/inventory/products", token: key.key, organization: clinic.uuid,
                                              json: ["name": "Gloves", "sku": "GLV-1", "priceCents": 500])
            try expectStatus(product, 201)
            let productID = product.json!.object("data")!.string("id")
            let deltas = (1...20).map { $0 % 3 == 0 ? -$0 : $0 * 2 }
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for delta in deltas {
                    group.addTask {
                        try await s.request("POST", "/v3/inventory/changes", token: key.key, organization: clinic.uuid,
                                            json: ["reason": delta > 0 ? "restock" : "usage", "lines": [["productId": productID, "quantityDelta": delta]]]).status
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(statuses == Array(repeating: 201, count: 20))
            let levels = try await s.request("GET", "/v3/inventory/stock-levels?productId=\(productID)", token: key.key, organization: clinic.uuid)
            try expectStatus(levels, 200)
            #expect(levels.json!.array("data").first?["quantity"] as? Int == deltas.reduce(0, +))
            let changes = try await s.request("GET", "/v3/inventory/changes?limit=200", token: key.key, organization: clinic.uuid)
            #expect(changes.json!.array("data").count == 20)
        }
    }
}
