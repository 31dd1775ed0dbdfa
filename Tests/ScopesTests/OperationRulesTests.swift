import Foundation
import Scopes
import Testing

/// A FHIR operation (`$export`) is decided only by a literal route that names it, a
/// `{ResourceType}` parameter accepts resource type names only, and the path decoder refuses
/// double encodings and malformed UTF-8 (security review, items 1 and 4).
@Suite("Operations, typed parameters and encodings")
struct OperationRulesTests {
    let platform = catalog("platform")

    /// Every scope of a catalog, for the credential type that may carry the most.
    func everything(_ catalog: CompiledCatalog) -> ScopeSet {
        catalog.scopes.filter { $0.aliasOf == nil }.reduce(ScopeSet.empty) { set, scope in
            set.union((try? catalog.resolve(names: [scope.name])) ?? .empty)
        }
    }

    @Test("every route template of every shipped catalog: a $ segment in a parameter position is decided only by a literal route naming it")
    func operationsInEveryPosition() {
        var checked = 0
        for (surface, catalog) in shippedCatalogs.sorted(by: { $0.key < $1.key }) {
            let all = catalog.applyingDependencies(everything(catalog))
            for route in catalog.routes {
                let segments = route.path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
                for (position, segment) in segments.enumerated() where segment == "*" || segment.hasPrefix("{") {
                    for operation in ["$export", "$import", "$everything", "$X"] {
                        var probe = samplePath(route.path).split(separator: "/", omittingEmptySubsequences: false).map(String.init)
                        probe[position] = operation
                        let path = probe.joined(separator: "/")
                        let decision = catalog.decide(all, method: route.method.description, target: path)
                        checked += 1
                        guard let found = decision.route else {
                            #expect(decision == .notFound || decision == .methodNotAllowed, "\(surface) \(route.method) \(path): \(decision)")
                            continue
                        }
                        let matched = catalog.routes[found.index].path.split(separator: "/", omittingEmptySubsequences: false)
                        #expect(position < matched.count && matched[position] == operation,
                                "\(surface) \(route.method) \(path) was decided by \(catalog.routes[found.index].template)")
                    }
                }
            }
        }
        #expect(checked > 1000)
    }

    @Test("the five requests of the review pass no more with an API key's cms.fhir.r4.read and cms.fhir.rest.write")
    func reviewReproductions() throws {
        let key = try platform.resolve("cms.fhir.r4.read cms.fhir.rest.write", credentialType: .apiKey)
        let set = platform.effectiveSet(credential: key, grants: key, credentialType: .apiKey)
        for (method, path) in [
            ("GET", "/fhir/R4/Patient/$export"), ("POST", "/fhir/R4/$export"), ("POST", "/fhir/R4/$import"),
            ("GET", "/fhir/R4/$Export"), ("GET", "/fhir/R4/$export-poll-status"),
        ] {
            let decision = platform.decide(set, method: method, target: path)
            #expect(!decision.isAllowed, "\(method) \(path): \(decision)")
            switch decision {
            case .insufficientScope(_, let required): #expect(required.hasPrefix("system/"), "\(method) \(path) needs \(required)")
            case .notFound: break
            default: Issue.record("\(method) \(path): \(decision)")
            }
        }
        // …while the resource routes still work.
        #expect(platform.decide(set, method: "GET", target: "/fhir/R4/Patient/p1").isAllowed)
        #expect(platform.decide(set, method: "POST", target: "/fhir/R4/Observation").isAllowed)
    }

    @Test("every bulk-export form needs a system/ read scope", arguments: [
        ("GET", "/fhir/R4/$export"), ("POST", "/fhir/R4/$export"), ("GET", "/fhir/R4/Patient/$export"), ("POST", "/fhir/R4/Patient/$export"),
        ("GET", "/fhir/R4/Group/g1/$export"), ("POST", "/fhir/R4/Group/g1/$export"), ("GET", "/fhir/R4/$export-poll-status/j1"),
        ("DELETE", "/fhir/R4/$export-poll-status/j1"), ("GET", "/fhir/R4/$export-file/j1/Patient"),
    ])
    func bulkExport(_ method: String, _ path: String) {
        let cms = platform.decide("cms.fhir.r4.read cms.fhir.rest.write cms.fhir.bundle.push", method, path)
        guard case .insufficientScope(_, let required) = cms else { Issue.record("\(method) \(path): \(cms)"); return }
        #expect(required == "system/*.read")
        #expect(platform.decide("system/*.read", method, path).isAllowed)
    }

    @Test("a typed {ResourceType} matches resource type names only")
    func typedParameter() {
        let read = "cms.fhir.r4.read"
        #expect(platform.decide(read, "GET", "/fhir/R4/Patient").isAllowed)
        #expect(platform.decide(read, "GET", "/fhir/R4/Observation/o1").isAllowed)
        for path in ["/fhir/R4/patient", "/fhir/R4/Foo", "/fhir/R4/metadata", "/fhir/R4/$X", "/fhir/R4/PATIENT/p1", "/fhir/R4/Patient1"] {
            #expect(platform.decide(read, "GET", path) == .notFound, "\(path)")
        }
    }

    @Test("a catalog whose resource-type parameter is untyped is refused")
    func validationRule() throws {
        let json = #"""
        {"format": 1, "surface": "fhir-test", "title": "t", "categories": ["c"], "defaultCredentialTypes": ["api_key"],
         "resourceTypes": ["Patient"],
         "scopes": [{"name": "patient/*.read", "category": "c", "description": "d"}],
         "routes": [{"method": "GET", "path": "/fhir/{ResourceType}", "anyOf": ["patient/{ResourceType}.s"]}]}
        """#
        let definition = try JSONDecoder().decode(CatalogDefinition.self, from: Data(json.utf8))
        #expect(throws: CatalogError.self) { try CompiledCatalog(definition) }
        do {
            _ = try CompiledCatalog(definition)
        } catch {
            #expect("\(error)".contains("{ResourceType:resourceType}"))
        }
        let typed = try JSONDecoder().decode(CatalogDefinition.self, from: Data(json.replacingOccurrences(of: "/fhir/{ResourceType}", with: "/fhir/{ResourceType:resourceType}").utf8))
        let compiled = try CompiledCatalog(typed)
        #expect(compiled.routes[0].path == "/fhir/{ResourceType}")
        #expect(compiled.decide(compiled.set("patient/*.read"), method: "GET", target: "/fhir/Patient").isAllowed)
        #expect(compiled.decide(compiled.set("patient/*.read"), method: "GET", target: "/fhir/$export") == .notFound)
    }

    @Test("double encodings and malformed UTF-8 are refused", arguments: [
        ("/fhir/R4/Patient/%252e%252e", PathError.doubleEncoding),
        ("/fhir/R4/Patient/%252E", .doubleEncoding),
        ("/fhir/R4/Patient/%c0%ae%c0%ae", .invalidUTF8),
        ("/fhir/R4/Patient/%c0%ae", .invalidUTF8),
        ("/fhir/R4/Patient/%e0%80%ae", .invalidUTF8),
        ("/fhir/R4/Patient/%ed%a0%80", .invalidUTF8),
        ("/fhir/R4/Patient/%80", .invalidUTF8),
        ("/fhir/R4/Patient/%f4%90%80%80", .invalidUTF8),
        ("/fhir/R4/Patient/a%c3", .invalidUTF8),
    ])
    func encodings(_ path: String, _ error: PathError) {
        #expect(RequestPath.segments(path) == .failure(error))
        #expect(platform.decide(platform.set("cms.fhir.r4.read"), method: .get, path: path) == .invalidPath(error))
    }

    @Test("well-formed UTF-8 and a lone %25 still pass")
    func wellFormed() {
        #expect(RequestPath.segments("/a/caf%C3%A9") == .success(["a", "café"]))
        #expect(RequestPath.segments("/a/%F0%9F%98%80") == .success(["a", "😀"]))
        #expect(RequestPath.segments("/a/100%25") == .success(["a", "100%"]))
        #expect(RequestPath.segments("/a/%25zz") == .success(["a", "%zz"]))
    }
}
