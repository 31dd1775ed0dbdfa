import Benchmark
import Foundation
import Scopes

// Run from the repository root (the catalogs are read from ./Catalogs):
//   CAREGATE_BENCHMARKS=1 swift package --allow-writing-to-package-directory benchmark
let benchmarks: @Sendable () -> Void = {
    let directory = URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent("Catalogs")
    func definition(_ surface: String) -> CatalogDefinition {
        let data = try! Data(contentsOf: directory.appendingPathComponent("\(surface).json"))
        return try! JSONDecoder().decode(CatalogDefinition.self, from: data)
    }
    let surfaces = ["marketplace-v3", "marketplace-v1", "platform", "practice-api"]
    let definitions = Dictionary(uniqueKeysWithValues: surfaces.map { ($0, definition($0)) })
    let v3 = try! CompiledCatalog(definitions["marketplace-v3"]!)
    let practice = try! CompiledCatalog(definitions["practice-api"]!)

    let micro = Benchmark.Configuration(
        metrics: [.wallClock, .throughput, .mallocCountTotal], scalingFactor: .kilo, maxDuration: .seconds(2))

    let twenty = [
        "read:patients", "read:appointments", "read:providers", "read:facilities", "read:bills",
        "read:claims", "read:notes", "read:soap_notes", "read:tasks", "read:emails",
        "cms.fhir.r4.read", "velocity.clearinghouse.claims.write", "patient/Observation.read", "user/*.write",
        "system/patients.read", "patient/Observation.rs?category=laboratory", "launch/patient", "fhirUser",
        "offline_access", "write:inventory",
    ].joined(separator: " ")
    Benchmark("parse a 20-scope string", configuration: micro) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try! ScopeList.parse(twenty)) }
    }

    for surface in surfaces {
        Benchmark("compile \(surface)", configuration: .init(metrics: [.wallClock, .mallocCountTotal], maxDuration: .seconds(2))) { benchmark in
            for _ in benchmark.scaledIterations { blackHole(try! CompiledCatalog(definitions[surface]!)) }
        }
    }

    let key = try! v3.resolve("read:patients read:notes read:appointments read:bills")
    let grants = try! v3.resolve("read:patients read:notes read:soap_notes read:appointments read:bills read:claims")
    let effective = v3.effectiveSet(credential: key, grants: grants, credentialType: .apiKey)
    let withSoap = v3.effectiveSet(credential: grants, grants: grants, credentialType: .apiKey)

    Benchmark("decide hit (v3 GET /v3/patients/{id})", configuration: micro) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(v3.decide(effective, method: .get, path: "/v3/patients/pat_0001"))
        }
    }
    Benchmark("decide miss (v3 GET /v3/claims/{id}, 403)", configuration: micro) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(v3.decide(effective, method: .get, path: "/v3/claims/clm_0001"))
        }
    }
    Benchmark("decide query-gated (v3 GET /v3/notes?includeSoapNote=true)", configuration: micro) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(v3.decide(withSoap, method: .get, path: "/v3/notes", query: "includeSoapNote=true&limit=50"))
        }
    }
    let practiceSet = try! practice.resolve("system/patients.read system/visit_notes.write")
    Benchmark("decide hit (practice-api nested, 821 routes)", configuration: micro) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(practice.decide(practiceSet, method: .get, path: "/api/2.0/patients/12/policies/3/card-images/"))
        }
    }
    // Real traffic: 100,000 varied requests replayed in turn (see ReplayMix), so that the
    // figure includes what one repeated path hides: cold caches, every route, denials.
    let replayed = Benchmark.Configuration(
        metrics: [.wallClock, .throughput, .mallocCountTotal], scalingFactor: .kilo, maxDuration: .seconds(3))
    for (name, catalog) in [("v3", v3), ("practice-api", practice)] {
        let mix = ReplayMix(catalog)
        FileHandle.standardError.write(Data("replayed mix \(name): \(mix.requests.count) requests, \(catalog.routes.count) routes, \(Int((mix.denied * 100).rounded())) % denied, \(Int((mix.unrouted * 100).rounded())) % on no route\n".utf8))
        let cursor = Cursor()
        Benchmark("decide replayed mix (\(name), 100,000 requests)", configuration: replayed) { benchmark in
            var i = cursor.next
            for _ in benchmark.scaledIterations {
                let request = mix.requests[i]
                blackHole(catalog.decide(mix.sets[request.caller], method: request.method, path: request.path, query: request.query))
                i = i + 1 == mix.requests.count ? 0 : i + 1
            }
            cursor.next = i
        }
    }

    Benchmark("effective set (key ∩ grants ∩ type, dependencies)", configuration: micro) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(v3.effectiveSet(credential: key, grants: grants, credentialType: .apiKey))
        }
    }
}

/// Where a replay continues from one sample to the next, so that every request of the mix is decided.
final class Cursor: @unchecked Sendable {
    var next = 0
}
