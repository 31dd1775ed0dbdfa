import Foundation
import Scopes
import Testing

/// Every endpoint of seeds 000–004 (transcribed in Fixtures/seed-endpoints.txt) is in a
/// catalog, opened by its scope, and refused naming that scope without it.
@Suite("Seed coverage")
struct SeedCoverageTests {
    struct SeedEndpoint: CustomTestStringConvertible, Sendable {
        var surface: String
        var method: String
        var target: String
        var scope: String
        var testDescription: String { "\(surface) \(method) \(target) ← \(scope)" }
    }

    static let lines: [[String]] = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/seed-endpoints.txt")
        return try! String(contentsOf: url, encoding: .utf8).split(separator: "\n")
            .filter { !$0.hasPrefix("#") }.map { $0.split(separator: " ").map(String.init) }
    }()

    static let endpoints: [SeedEndpoint] = lines.filter { $0.count == 4 }.map {
        SeedEndpoint(surface: $0[0], method: $0[1], target: $0[2], scope: $0[3])
    }

    /// Seed 004 lists scopes; each opens its resource's routes by the method mapping.
    static let practiceScopes: [String] = lines.filter { $0.count == 2 }.map { $0[1] }

    @Test func fixtureIsComplete() {
        #expect(Self.endpoints.filter { $0.surface == "marketplace-v3" }.count == 36)
        #expect(Self.endpoints.filter { $0.surface == "marketplace-v1" }.count == 19)
        #expect(Self.endpoints.filter { $0.surface == "platform" }.count == 32)
        #expect(Self.practiceScopes.count == 151)
    }

    @Test("allowed with its scope, refused naming it without", arguments: endpoints)
    func endpoint(_ e: SeedEndpoint) throws {
        let c = catalog(e.surface)
        let target = samplePath(e.target, sample: "Observation")
        let requires = c.scope(named: e.scope)?.requires.joined(separator: " ") ?? ""
        #expect(c.decide([e.scope, requires].filter { !$0.isEmpty }.joined(separator: " "), e.method, target).isAllowed)
        // Every other scope of the catalog together, minus the ones that open this
        // endpoint on their own, still does not open it.
        let others = c.scopes.map(\.name).filter { name in
            let alone = ([name] + (c.scope(named: name)?.requires ?? [])).joined(separator: " ")
            return name != c.globalScope && !c.decide(alone, e.method, target).isAllowed
        }
        let decision = c.decide(c.applyingDependencies(try c.resolve(names: others)), method: e.method, target: target)
        guard case .insufficientScope = decision else {
            Issue.record("expected insufficientScope, got \(decision)")
            return
        }
        // Holding only what the scope depends on, the refusal names the scope itself.
        let none = c.decide(c.effective(requires), method: e.method, target: target)
        let named: String? = if case .insufficientScope(_, let required) = none { required } else { nil }
        // A route with alternatives names its first (cms.fhir.r4.read on SMART-or-cms
        // routes); whatever it names must open the endpoint on its own.
        let alternatives = c.routes[none.route!.index].requirement.contains(" or ")
        #expect(named == e.scope || (alternatives && named.map { c.decide($0, e.method, target).isAllowed } == true))
    }

    @Test("every seed 004 scope opens exactly its resource's routes", arguments: practiceScopes)
    func practiceScope(_ scope: String) throws {
        let c = catalog("practice-api")
        let set = try c.resolve(scope)
        let resource = String(scope.dropFirst("system/".count).prefix { $0 != "." })
        let isRead = scope.hasSuffix(".read")
        let base = "/api/2.0/\(resource)"
        let paths = [base, base + "/", base + "/17", base + "/17/", base + "/17/nested/3/deeper"]
        for path in paths {
            for method in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] {
                let decision = c.decide(set, method: method, target: path)
                let isReadMethod = method == "GET" || method == "HEAD"
                let routeExists = !(method == "POST" && path.hasSuffix("/17") || method == "POST" && path.hasSuffix("/17/"))
                    && !(["PUT", "PATCH", "DELETE"].contains(method) && (path == base || path == base + "/"))
                if !routeExists {
                    #expect(decision == .methodNotAllowed, "\(method) \(path)")
                } else if isRead == isReadMethod {
                    #expect(decision.isAllowed, "\(scope) should open \(method) \(path)")
                } else if case .insufficientScope(_, let required) = decision {
                    #expect(required == "system/\(resource).\(isRead ? "write" : "read")")
                } else {
                    // Read-only reference data: no write routes at all.
                    #expect(decision == .methodNotAllowed, "\(method) \(path): \(decision)")
                }
            }
        }
        // A neighbouring resource stays closed.
        let other = resource == "patients" ? "allergies" : "patients"
        #expect(!c.decide(set, method: isRead ? "GET" : "POST", target: "/api/2.0/\(other)").isAllowed)
        // apiv2 opens it too.
        #expect(c.decide(c.set("apiv2"), method: isRead ? "GET" : "DELETE", target: base + "/17").isAllowed)
    }
}
