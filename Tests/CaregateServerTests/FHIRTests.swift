import CaregateStore
// The server's own token service mints the one token no issuing flow gives out (patient/
// scopes without a patient), to check that the FHIR API refuses it on its own.
@testable import CaregateServer
import Foundation
import Synchronization
import Testing

/// FHIR R4 over the clinic data (SPEC §8), with the confinement rules checked one by one as a
/// SMART app meets them: tokens from real launches through the sign-in and consent pages, the
/// requests and the R4B validation of every answer in Fixtures/fhir_compartment.py.
@Suite struct FHIRTests {
    static let password = "correct horse battery staple"
    static let appScopes = [
        "launch/patient", "openid", "fhirUser", "patient/*.rs", "patient/Observation.cud", "patient/Patient.rs",
        "patient/Observation.rs?category=laboratory", "cms.fhir.r4.read", "user/*.rs",
    ]

    /// What fhir_compartment.py observed, by scenario.
    struct Observed {
        let raw: [String: Any]
        func scenario(_ name: String, sourceLocation: SourceLocation = #_sourceLocation) -> [String: Any] {
            let value = raw[name] as? [String: Any] ?? [:]
            #expect(value["error"] == nil, "\(name) raised: \(value["error"] ?? "")", sourceLocation: sourceLocation)
            return value
        }
    }

    /// Starts the scenario script against a server and clinic set up as SPEC §8's rules need.
    /// With `upstream`, the server is the gateway in front of it, and the upstream is given the
    /// clinic's data (what the built-in API would serve: read from the clinic database).
    static func observe(_ s: TestServer, upstream: FHIRUpstream? = nil) async throws -> (Observed, patient: String, other: String) {
        let dev = try await s.createDeveloper()
        let clinic = try await s.createClinic(patients: 50)
        let foreign = try await s.createClinic(patients: 2)
        if let upstream { try await upstream.load(FHIRStore(database: s.server.database), organization: clinic.id) }
        let app = try await s.createApp(developer: dev.token, scopes: appScopes, surface: "platform")
        _ = try await s.install(app: app.id, clinic: clinic)
        let key = try await s.createKey(developer: dev.token, app: app.id, scopes: ["cms.fhir.r4.read"])
        let reply = try await s.request("POST", "/manage/apps/\(app.id)/oauth-clients", token: dev.token, json: [
            "scopes": appScopes.filter { $0 != "cms.fhir.r4.read" }, "grantTypes": ["authorization_code", "refresh_token"], "public": true,
            "redirectUris": ["http://127.0.0.1:9/callback"],
        ])
        try expectStatus(reply, 201)
        let clientID = reply.json!.string("clientId")
        // No flow issues patient/ scopes without a patient (the picker runs first); were one to,
        // as another FHIR server's did, the FHIR API must still refuse the token.
        let noPatientToken = try await s.server.tokens.issue(
            clientID: clientID, scope: "patient/Observation.rs patient/Patient.rs", organizationID: clinic.id, subject: "usr_test",
            context: LaunchContext(fhirUser: "Practitioner/prv-test")).token
        // Record ids as /v3 shows them (pat_…) and as FHIR does (pat-…).
        let records = try await s.server.clinic.list(.patients, organization: clinic.id, filters: [], after: nil, limit: 3).items.compactMap { $0["id"]?.stringValue }
        let patients = records.map(FHIRID.fhir)
        let provider = try #require(try await s.server.clinic.list(.providers, organization: clinic.id, filters: [], after: nil, limit: 1).items.first?["id"]?.stringValue)
        let foreignPatient = try #require(try await s.server.clinic.list(.patients, organization: foreign.id, filters: [], after: nil, limit: 1).items.first?["id"]?.stringValue)
        let tag = UUID().uuidString.prefix(6).lowercased()
        for (username, role, link) in [("fhir.pat.\(tag)", "patient", patients[0]), ("fhir.dr.\(tag)", "clinician", provider)] {
            try expectStatus(try await s.request("POST", "/manage/organizations/\(clinic.id)/users", token: clinic.adminToken, json: [
                "username": username, "password": password, "role": role, role == "clinician" ? "providerId" : "patientId": FHIRID.record(link),
            ]), 201)
        }
        let config: [String: Any] = [
            "base": s.base, "fhirBase": s.base + "/fhir/R4", "gateway": upstream != nil, "upstream": upstream?.url ?? "",
            "public": ["clientId": clientID, "redirectUri": "http://127.0.0.1:9/callback"],
            "patientUser": ["username": "fhir.pat.\(tag)", "password": password, "patientId": patients[0]],
            "clinician": ["username": "fhir.dr.\(tag)", "password": password, "providerId": FHIRID.fhir(provider)],
            "otherPatient": patients[1], "foreignPatient": FHIRID.fhir(foreignPatient), "key": key.key, "orgHeader": clinic.uuid, "noPatientToken": noPatientToken,
            "scopes": [
                "patient": "launch/patient openid fhirUser patient/*.rs patient/Observation.cud",
                "lab": "launch/patient patient/Patient.rs patient/Observation.rs?category=laboratory",
                "clinician": "openid fhirUser user/*.rs",
            ],
        ]
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("fhir-\(UUID().uuidString).json")
        try JSONSerialization.data(withJSONObject: config).write(to: path)
        defer { try? FileManager.default.removeItem(at: path) }
        let script = repositoryRoot.appendingPathComponent("Tests/CaregateServerTests/Fixtures/fhir_compartment.py").path
        let (status, output) = try await runProgram("/usr/bin/env", ["python3", script, path.path])
        try #require(status == 0, "fhir_compartment.py failed: \(output)")
        let line = try #require(output.split(separator: "\n").last)
        let raw = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(output)")
        return (Observed(raw: raw), patients[0], patients[1])
    }

    /// Validates every line of an NDJSON file with the R4B model of its own resourceType;
    /// prints "valid N" (a line that does not validate ends it with the model's error).
    static let validateNDJSON = """
        import json, sys
        from fhir.resources.R4B import get_fhir_model_class
        count = 0
        for line in open(sys.argv[1]):
            resource = json.loads(line)
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)
            count += 1
        print("valid %d" % count)
        """

    /// Validates FHIR JSON documents (one resource each) with the R4B models; true when all are valid.
    static func validR4B(_ documents: [Data], sourceLocation: SourceLocation = #_sourceLocation) async throws -> Bool {
        let lines = try documents.map { try JSONSerialization.data(withJSONObject: try JSONSerialization.jsonObject(with: $0)) }
        let ndjson = FileManager.default.temporaryDirectory.appendingPathComponent("fhir-\(UUID().uuidString).ndjson")
        try Data(lines.map { $0 + Data("\n".utf8) }.joined()).write(to: ndjson)
        defer { try? FileManager.default.removeItem(at: ndjson) }
        let check = try await runProgram("/usr/bin/env", ["python3", "-c", validateNDJSON, ndjson.path])
        let valid = check.status == 0 && check.output.hasSuffix("valid \(documents.count)\n")
        #expect(valid, "\(check.output.suffix(600))", sourceLocation: sourceLocation)
        return valid
    }

    /// A server whose issuer is its own address: the FHIR base in links and launch `aud`s must be reachable.
    static func withAddressedServer(_ backend: Backend, _ body: (TestServer) async throws -> Void) async throws {
        let port = try OAuthTests.closedPort()
        try await withServer(backend, configure: {
            $0.port = port
            $0.issuer = "http://127.0.0.1:\(port)"
        }, body)
    }

    @Test("the built-in FHIR API confines every token as SPEC §8 says", arguments: Backend.allCases)
    func builtIn(_ backend: Backend) async throws {
        try await Self.withAddressedServer(backend) { s in
            let (observed, me, _) = try await Self.observe(s)
            Self.assertRules(observed, me: me)
        }
    }

    @Test("in front of an upstream FHIR server, the gateway confines every token as the built-in API does", arguments: Backend.allCases)
    func gateway(_ backend: Backend) async throws {
        let upstream = try FHIRUpstream()
        defer { upstream.stop() }
        let port = try OAuthTests.closedPort()
        try await withServer(backend, configure: {
            $0.port = port
            $0.issuer = "http://127.0.0.1:\(port)"
            $0.upstreams = [try! UpstreamConfiguration(surface: "platform", url: upstream.url)]
            $0.fhirBackend = .upstream
        }) { s in
            let (observed, me, _) = try await Self.observe(s, upstream: upstream)
            Self.assertRules(observed, me: me, gateway: true)
            // The upstream answered: what was created has its ids, at Caregate's address.
            #expect((observed.scenario("writes")["location"] as? String)?.hasPrefix(s.base + "/fhir/R4/Observation/up-") == true, "\(observed.scenario("writes"))")
            // An upstream that ignores the added patient parameter: the gateway's check of every
            // entry still passes only the patient's, and drops the total that counted the others.
            let ignored = observed.scenario("ignored_narrowing")
            #expect(ignored["status"] as? Int == 200 && ignored["owners"] as? [String] == [me] && (ignored["count"] as? Int ?? 0) > 0, "\(ignored)")
            #expect(ignored["total"] is NSNull || ignored["total"] == nil, "\(ignored)")
        }
    }

    @Test("a system/*.read bulk export of a 1,000-patient clinic completes; its files parse as their types and reach no other client",
          arguments: Backend.allCases)
    func bulkExport(_ backend: Backend) async throws {
        try await Self.withAddressedServer(backend) { s in
            let port = String(s.base.split(separator: ":").last!)
            let dev = try await s.createDeveloper()
            let clinic = try await s.createClinic(patients: 1_000)
            let app = try await s.createApp(developer: dev.token, scopes: ["system/*.read", "cms.fhir.r4.read"], surface: "platform")
            _ = try await s.install(app: app.id, clinic: clinic)
            func client() async throws -> (id: String, secret: String) {
                try await OAuthTests.client(s, dev: dev.token, app: app.id, scopes: ["system/*.read"], extra: ["organizationId": clinic.id])
            }
            func token(_ client: (id: String, secret: String), _ scope: String = "system/*.read") async throws -> String {
                let issued = try await OAuthTests.form(s, "grant_type=client_credentials&scope=\(scope)", basic: client)
                try expectStatus(issued, 200)
                return issued.json!.string("access_token")
            }
            let exporting = try await client()
            let exporter = try await token(exporting), stranger = try await token(try await client())
            // The same client with narrower tokens: each sees only what it still reaches.
            let narrower = try await token(exporting, "system/Patient.read")
            let labsOnly = try await token(exporting, "system/Observation.rs?category=laboratory")
            let key = try await s.createKey(developer: dev.token, app: app.id, scopes: ["cms.fhir.r4.read"]).key
            let async = ["Prefer": "respond-async", "Accept": "application/fhir+json"]
            let path = "/fhir/R4/$export?_type=Patient,Observation,AllergyIntolerance"

            // Refused: without Prefer: respond-async, an unsupported parameter, a key without system/ scopes.
            #expect(try await s.request("GET", path, token: exporter, headers: ["Accept": "application/fhir+json"]).status == 400)
            let unsupported = try await s.request("GET", "/fhir/R4/$export?_typeFilter=x", token: exporter, headers: async)
            #expect(unsupported.status == 400 && unsupported.text.contains("_typeFilter"))
            #expect(try await s.request("GET", path, token: key, organization: clinic.uuid, headers: async).status == 403)
            // HEAD is decided as GET but starts nothing.
            #expect(try await s.request("HEAD", path, token: exporter, headers: async).status == 405)

            let kickOff = try await s.request("GET", path, token: exporter, headers: async)
            try expectStatus(kickOff, 202)
            let location = try #require(kickOff.header("Content-Location"))
            #expect(location.hasPrefix("http://127.0.0.1:\(port)/fhir/R4/$export-poll-status/exp_"))
            let status = String(location.dropFirst(s.base.count))
            // Two exports of a client run at a time (each reads the whole clinic); a third waits its turn.
            // The first, 6,000 resources, is still being written while these two arrive.
            let second = try await s.request("GET", "/fhir/R4/$export", token: exporter, headers: async)
            try expectStatus(second, 202)
            let third = try await s.request("GET", "/fhir/R4/Patient/$export", token: exporter, headers: async)
            try expectStatus(third, 429)
            #expect(third.header("Retry-After") == "5")
            #expect(third.json?.raw["resourceType"] as? String == "OperationOutcome")
            #expect(third.text.contains("throttled") && third.text.contains("2 exports of this client are in progress"))
            // Another client of the app has places of its own.
            let strangers = try await s.request("GET", "/fhir/R4/$export?_type=Patient", token: stranger, headers: async)
            try expectStatus(strangers, 202)
            #expect(try await s.request("DELETE", String(try #require(second.header("Content-Location")).dropFirst(s.base.count)), token: exporter).status == 202)
            #expect(try await s.request("DELETE", String(try #require(strangers.header("Content-Location")).dropFirst(s.base.count)), token: stranger).status == 202)
            // Polled as a client does: 202 with X-Progress until the manifest (a fifth of Retry-After between polls).
            func manifest(_ status: String) async throws -> JSONObject? {
                let deadline = ContinuousClock.now + .seconds(120)
                while ContinuousClock.now < deadline {
                    let poll = try await s.request("GET", status, token: exporter)
                    if poll.status == 200 {
                        #expect(poll.header("Expires") != nil)
                        return poll.json
                    }
                    try expectStatus(poll, 202)
                    #expect(poll.header("X-Progress")?.isEmpty == false)
                    try await Task.sleep(for: .milliseconds(Int(poll.header("Retry-After") ?? "1")! * 200))
                }
                return nil
            }
            let outputs = try #require(try await manifest(status), "the export did not complete").array("output")
            // The backend token reads the whole clinic directly too, and nothing of another.
            let other = try await s.createClinic(patients: 1)
            let foreign = FHIRID.fhir(try #require(
                try await s.server.clinic.list(.patients, organization: other.id, filters: [], after: nil, limit: 1).items.first?["id"]?.stringValue))
            #expect(try await s.request("GET", "/fhir/R4/Patient?_count=0", token: exporter).json?.raw["total"] as? Int == 1_000)
            #expect(try await s.request("GET", "/fhir/R4/Patient/\(foreign)", token: exporter).status == 404)
            #expect(try await s.request("GET", "/fhir/R4/Observation?patient=\(foreign)&_count=0", token: exporter).json?.raw["total"] as? Int == 0)
            #expect(outputs.map { $0.string("type") } == ["Patient", "Observation", "AllergyIntolerance"])
            #expect(outputs.map { $0.raw["count"] as? Int } == [1_000, 4_000, 1_000])
            for output in outputs {
                let url = String(output.string("url").dropFirst(s.base.count))
                let file = try await s.request("GET", url, token: exporter, timeout: 120)
                try expectStatus(file, 200)
                #expect(file.header("Content-Type")?.hasPrefix("application/fhir+ndjson") == true)
                let lines = file.text.split(separator: "\n")
                #expect(lines.count == output.raw["count"] as? Int)
                let types = Set(lines.compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["resourceType"] as? String })
                #expect(types == [output.string("type")], "\(output.string("type")): \(types)")
                // Every line is a valid FHIR resource (fhir.resources R4B models).
                _ = try await Self.validR4B(lines.map { Data($0.utf8) })
                // Another client of the same app, with the same scopes, is told the file does not exist.
                #expect(try await s.request("GET", url, token: stranger).status == 404)
            }
            #expect(try await s.request("GET", status, token: stranger).status == 404)
            // The status URL repeats _type, so system/<Type>.read opens it only for its own types.
            let statusPath = status.split(separator: "?")[0]
            #expect(try await s.request("GET", status, token: narrower).status == 403)
            let narrowed = try await s.request("GET", statusPath + "?_type=Patient", token: narrower)
            #expect(narrowed.json?.array("output").map { $0.string("type") } == ["Patient"], "\(narrowed.text)")
            #expect(try await s.request("GET", String(outputs[0].string("url").dropFirst(s.base.count)), token: narrower).status == 200)
            #expect(try await s.request("GET", String(outputs[1].string("url").dropFirst(s.base.count)), token: narrower).status == 403)
            // A token reaching only laboratory Observations opens the file's route, not its content: made with more reach.
            #expect(try await s.request("GET", String(outputs[1].string("url").dropFirst(s.base.count)), token: labsOnly).status == 404)
            // _since: nothing was written after 2099.
            let later = try await s.request("GET", "/fhir/R4/$export?_type=Observation&_since=2099-01-01T00:00:00Z", token: exporter, headers: async)
            try expectStatus(later, 202)
            let laterStatus = try #require(later.header("Content-Location"))
            let none = try #require(try await manifest(String(laterStatus.dropFirst(s.base.count))))
            #expect(none.array("output").isEmpty)
            // Deleted at the client's request: the files go with the job.
            #expect(try await s.request("DELETE", status, token: exporter).status == 202)
            #expect(try await s.request("GET", String(outputs[0].string("url").dropFirst(s.base.count)), token: exporter).status == 404)
        }
    }

    @Test("no export stays in progress for nothing: a stopping server fails its own, a job whose instance went away is failed by its next poll, and only live jobs count against the client's two",
          arguments: Backend.allCases)
    func exportsThatStop(_ backend: Backend) async throws {
        func addressed(_ database: DatabaseLocation? = nil) async throws -> TestServer {
            let port = try OAuthTests.closedPort()
            return try await TestServer(backend) { options in
                options.port = port
                options.issuer = "http://127.0.0.1:\(port)"
                if let database { options.database = database }
            }
        }
        let first = try await addressed()
        let dev = try await first.createDeveloper()
        let clinic = try await first.createClinic(patients: 20)
        let app = try await first.createApp(developer: dev.token, scopes: ["system/*.read"], surface: "platform")
        _ = try await first.install(app: app.id, clinic: clinic)
        let client = try await OAuthTests.client(first, dev: dev.token, app: app.id, scopes: ["system/*.read"], extra: ["organizationId": clinic.id])
        func token(_ s: TestServer) async throws -> String {
            let issued = try await OAuthTests.form(s, "grant_type=client_credentials", basic: client)
            try expectStatus(issued, 200)
            return issued.json!.string("access_token")
        }
        let async = ["Prefer": "respond-async", "Accept": "application/fhir+json"]
        let status = "/fhir/R4/$export-poll-status/"

        // A server stopped (as SIGTERM does) while it exports leaves no job in progress: a real export
        // has completed or is failed, and one whose run is still going when the stop comes (held here
        // until it is cancelled) is failed, before the database closes.
        let kickOff = try await first.request("GET", "/fhir/R4/$export", token: try await token(first), headers: async)
        try expectStatus(kickOff, 202)
        let exported = String(try #require(kickOff.header("Content-Location")?.split(separator: "/").last))
        let row = try #require(try await first.server.database.sql.raw("SELECT organization_id, client_id FROM export_jobs WHERE id = \(bind: exported)").first())
        let organization = try row.decode(column: "organization_id", as: String.self), clientID = try row.decode(column: "client_id", as: String.self)
        let held = try #require(try await FHIRStore(database: first.server.database).createExportJob(
            organization: organization, clientID: clientID, request: "held", types: ["Patient"], access: [:], limit: BulkExport.exportsPerClient))
        first.server.exportRuns.start(held.id) { try? await Task.sleep(for: .seconds(3_600)) }
        // What a stop counts (and logs) is the jobs it failed, not a run that finished its job as it was cancelled.
        do {
            let jobs = FHIRStore(database: first.server.database), runs = ExportRuns(store: jobs)
            func job() async throws -> ExportJobRecord {
                try #require(try await jobs.createExportJob(
                    organization: organization, clientID: "stop-count", request: "held", types: ["Patient"], access: [:], limit: BulkExport.exportsPerClient))
            }
            let waiting = try await job(), finishing = try await job()
            runs.start(waiting.id) { try? await Task.sleep(for: .seconds(3_600)) }
            runs.start(finishing.id) {
                try? await Task.sleep(for: .seconds(3_600))
                _ = try? await jobs.finishExportJob(finishing.id, error: nil)
            }
            #expect(await runs.stop() == 1)
            for (job, status) in [(waiting, "failed"), (finishing, "completed")] {
                let row = try #require(try await first.server.database.sql.raw("SELECT status FROM export_jobs WHERE id = \(bind: job.id)").first())
                #expect(try row.decode(column: "status", as: String.self) == status)
            }
        }
        await first.stop()

        // Another instance on the same database tells the client so.
        let second = try await addressed(first.server.options.database)
        defer { Task { await second.stop() } }
        let bearer = try await token(second)
        let told = try await second.request("GET", status + held.id, token: bearer)
        try expectStatus(told, 500)
        #expect(told.json?.raw["resourceType"] as? String == "OperationOutcome")
        #expect(told.text.contains("the server stopped. Kick off a new one."))
        let real = try await second.request("GET", status + exported, token: bearer)
        #expect(real.status == 200 || (real.status == 500 && real.text.contains("the server stopped")), "\(real.status) \(real.text)")

        // Two exports of the client in progress on a third instance, made as its kick-offs make them: they count here too.
        let store = FHIRStore(database: second.server.database)
        func elsewhere() async throws -> ExportJobRecord? {
            try await store.createExportJob(
                organization: organization, clientID: clientID, request: "elsewhere", types: ["Patient"], access: [:], limit: BulkExport.exportsPerClient)
        }
        let gone = try #require(try await elsewhere()), alive = try #require(try await elsewhere())
        #expect(try await elsewhere() == nil)
        let refused = try await second.request("GET", "/fhir/R4/$export", token: bearer, headers: async)
        try expectStatus(refused, 429)
        #expect(refused.text.contains("2 exports of this client are in progress"))
        #expect(try await second.request("GET", status + alive.id, token: bearer).status == 202)

        // That instance goes away: one job shows no sign of life for two minutes. It no longer counts,
        // and its next poll fails it for good (a late part or end from it changes nothing).
        func silence(_ job: String) async throws {
            try await second.server.database.sql.raw("""
                UPDATE export_jobs SET heartbeat_at = \(bind: Clock.millis() - FHIRStore.exportStaleAfter - 1) WHERE id = \(bind: job)
                """).run()
        }
        try await silence(gone.id)
        let freed = try await second.request("GET", "/fhir/R4/$export?_type=Patient", token: bearer, headers: async)
        try expectStatus(freed, 202)
        let failed = try await second.request("GET", status + gone.id, token: bearer)
        try expectStatus(failed, 500)
        #expect(failed.text.contains("the server instance running it went away. Kick off a new one."))
        #expect(try await store.addExportPart(gone.id, type: "Patient", part: 0, count: 0, content: "") == false)
        try await store.finishExportJob(gone.id, error: nil)
        try expectStatus(try await second.request("GET", status + gone.id, token: bearer), 500)
        // A job that keeps writing (a part, a progress step) is never taken for gone.
        try await silence(alive.id)
        #expect(try await store.addExportPart(alive.id, type: "Patient", part: 0, count: 0, content: ""))
        #expect(try await second.request("GET", status + alive.id, token: bearer).status == 202)
        try await silence(alive.id)
        try await store.setExportProgress(alive.id, "Patient: 1 of 1 types")
        #expect(try await second.request("GET", status + alive.id, token: bearer).status == 202)
        await second.stop()
    }

    @Test("the dates a written resource is searched by, and its other top-level dates, are FHIR dateTimes on real days (instants where FHIR says), as /openapi.json's pattern says; a choice element comes in one type; the first searched date present is the one searched",
          arguments: Backend.allCases)
    func writtenDates(_ backend: Backend) async throws {
        try await withServer(backend) { s in
            let dev = try await s.createDeveloper()
            let clinic = try await s.createClinic(patients: 1)
            let app = try await s.createApp(developer: dev.token, scopes: ["cms.fhir.r4.read", "cms.fhir.rest.write"], surface: "platform")
            _ = try await s.install(app: app.id, clinic: clinic)
            let key = try await s.createKey(developer: dev.token, app: app.id, scopes: nil).key
            let patient = FHIRID.fhir(try #require(
                try await s.server.clinic.list(.patients, organization: clinic.id, filters: [], after: nil, limit: 1).items.first?["id"]?.stringValue))
            let paths = try #require(try await s.request("GET", "/openapi.json").json?.raw["paths"] as? [String: Any])
            func write(_ type: String, _ fields: [String: Any]) async throws -> TestServer.Reply {
                var resource: [String: Any] = ["resourceType": type]
                switch type {
                case "Observation":
                    resource["status"] = "final"
                    resource["code"] = ["coding": [["system": "http://loinc.org", "code": "8867-4"]]]
                    resource["subject"] = ["reference": "Patient/\(patient)"]
                case "Condition": resource["subject"] = ["reference": "Patient/\(patient)"]
                default: resource["patient"] = ["reference": "Patient/\(patient)"]
                }
                resource.merge(fields) { $1 }
                return try await s.request("POST", "/fhir/R4/\(type)", token: key, organization: clinic.uuid,
                                           body: try JSONSerialization.data(withJSONObject: resource), headers: ["Content-Type": "application/fhir+json"])
            }
            /// The written type's schema at `names` (a property's name, or `items` for an array's).
            func property(_ type: String, _ names: [String]) -> [String: Any]? {
                var at = ((((paths["/fhir/R4/\(type)"] as? [String: Any])?["post"] as? [String: Any])?["requestBody"] as? [String: Any])?["content"]
                    as? [String: [String: Any]])?["application/fhir+json"]?["schema"] as? [String: Any]
                for name in names { at = name == "items" ? at?["items"] as? [String: Any] : (at?["properties"] as? [String: Any])?[name] as? [String: Any] }
                return at
            }
            let dates = ["2026", "2026-02", "2024-02-29"]
            let times = ["2026-11-30T08:00:00Z", "2026-11-30T08:00:00.123456789+14:00", "0001-01-01T00:00:00-13:59"]
            let wrong = ["0000", "2026-13", "2026-02-29", "2026-11-31", "2026-11-30T08:00Z", "2026-11-30T24:00:00Z", "2026-11-30T08:00:60Z",
                       "2026-11-30T08:00:00", "2026-11-30T08:00:00+14:30", "2026-11-30T08:00:00.1234567890Z", "2026-11-30 08:00:00Z", "", "yesterday"]
            for (type, field) in [("Observation", "effectiveDateTime"), ("Observation", "effectiveInstant"), ("Observation", "issued"),
                                  ("Condition", "recordedDate"), ("Condition", "onsetDateTime"), ("Condition", "abatementDateTime"),
                                  ("AllergyIntolerance", "recordedDate"), ("AllergyIntolerance", "onsetDateTime"), ("AllergyIntolerance", "lastOccurrence")] {
                let documented = try NSRegularExpression(pattern: try #require(
                    property(type, [field])?["pattern"] as? String, "\(type).\(field) has no pattern"))
                func matches(_ value: String) -> Bool { documented.firstMatch(in: value, range: NSRange(value.startIndex..., in: value)) != nil }
                // An instant has its time; a dateTime may be a year, a month or a day.
                let isInstant = field.hasSuffix("Instant") || field == "issued"
                let good = isInstant ? times : dates + times
                let bad = isInstant ? wrong + dates : wrong
                for value in good {
                    #expect(try await write(type, [field: value]).status == 201, "\(type).\(field) \(value)")
                    #expect(matches(value), "\(type).\(field) \(value): the documented pattern refuses it")
                }
                for value in bad {
                    let refused = try await write(type, [field: value])
                    #expect(refused.status == 400 && refused.text.contains(field), "\(type).\(field) \(value): \(refused.status) \(refused.text)")
                    #expect(!matches(value), "\(type).\(field) \(value): the documented pattern allows it")
                }
                let number = try await write(type, [field: 20261130])
                #expect(number.status == 400 && number.text.contains(field), "\(type).\(field) as a number: \(number.status)")
            }
            // Every date present is checked, not only the one searched.
            let second = try await write("Observation", ["effectiveDateTime": "2026-11-30T08:00:00Z", "issued": "yesterday"])
            #expect(second.status == 400 && second.text.contains("issued"), "\(second.text)")
            // A choice element in one type at most, however valid each is.
            for (type, fields) in [("Observation", ["effectiveDateTime": "2026-11-30T08:00:00Z", "effectiveInstant": "2026-11-30T08:00:00Z"]),
                                   ("Observation", ["valueString": "high", "valueQuantity": ["value": 7]] as [String: Any]),
                                   ("Condition", ["onsetDateTime": "2026-11-30", "onsetString": "last week"]),
                                   ("Condition", ["abatementAge": ["value": 40], "abatementDateTime": "2026"] as [String: Any]),
                                   ("AllergyIntolerance", ["onsetPeriod": ["start": "2026"], "onsetDateTime": "2026"] as [String: Any])] {
                let refused = try await write(type, fields)
                #expect(refused.status == 400 && fields.keys.allSatisfy { refused.text.contains($0) }, "\(type) \(fields.keys.sorted()): \(refused.text)")
            }
            try expectStatus(try await write("Observation", ["effectivePeriod": ["start": "2026"], "valueString": "high"]), 201)
            // An effectivePeriod's ends are dates too, and its start is the one `date` searches (as the gateway reads it).
            for end in ["start", "end"] {
                let refused = try await write("Observation", ["effectivePeriod": [end: "2026-02-30"]])
                #expect(refused.status == 400 && refused.text.contains("effectivePeriod.\(end)"), "\(refused.text)")
            }
            for (period, named) in [("2026-01-01" as Any, "effectivePeriod"), (["start": "2026-02-01", "end": "2026-01-31T23:59:59Z"] as Any, "effectivePeriod.end")] {
                let refused = try await write("Observation", ["effectivePeriod": period])
                #expect(refused.status == 400 && refused.text.contains(named), "\(refused.text)")
            }
            try expectStatus(try await write("Observation", ["effectivePeriod": ["start": "2026-02-01", "end": "2026-02-01"]]), 201)
            try expectStatus(try await write("Observation", ["effectivePeriod": ["start": "2015-06-07T10:00:00Z", "end": "2015-06-08"]]), 201)
            // The dates deeper in are checked too and named by their place: the other Periods,
            // value[x], and those of each note, reaction and component (whose value[x] is a choice too).
            let code: [String: Any] = ["coding": [["system": "http://loinc.org", "code": "8480-6"]]]
            for (type, fields, named) in [
                ("Observation", ["valueDateTime": "2026-02-30"], "valueDateTime"),
                ("Observation", ["valuePeriod": ["start": "2026-03", "end": "2026-02"]], "valuePeriod.end is before valuePeriod.start"),
                ("Condition", ["onsetPeriod": ["end": "soon"]], "onsetPeriod.end"),
                ("Condition", ["abatementPeriod": "2026"], "abatementPeriod must be a Period"),
                ("AllergyIntolerance", ["onsetPeriod": ["start": "2026-11-30T08:00Z"]], "onsetPeriod.start"),
                ("Observation", ["note": [["text": "fine", "time": "2026-11-30T08:00:00Z"], ["text": "late", "time": "2026-11-31"]]], "note[1].time"),
                ("Condition", ["note": ["text": "not a list"]], "note must be an array"),
                ("AllergyIntolerance", ["reaction": [["onset": "2026-13"]]], "reaction[0].onset"),
                ("AllergyIntolerance", ["reaction": ["2026"]], "reaction[0] must be an object"),
                ("Observation", ["component": [["code": code, "valueDateTime": "2026", "valueString": "x"]]], "component[0].value[x] may be given once"),
                ("Observation", ["component": [["code": code, "valuePeriod": ["start": "2026-02", "end": "2026-01-31"]]]], "component[0].valuePeriod.end"),
            ] as [(String, [String: Any], String)] {
                let refused = try await write(type, fields)
                #expect(refused.status == 400 && refused.text.contains(named), "\(type) \(fields.keys.sorted()): \(refused.status) \(refused.text)")
            }
            for (type, fields) in [
                ("Observation", ["valuePeriod": ["start": "2026-02-01", "end": "2026-02-01"], "note": [["text": "ok", "time": "2026-11-30T08:00:00+01:00"]],
                                 "component": [["code": code, "valueDateTime": "2026-11"], ["code": code, "valuePeriod": ["end": "2026"]]]]),
                ("Condition", ["onsetPeriod": ["start": "2020"], "abatementPeriod": ["start": "2021-06", "end": "2022"], "note": [] as [Any]]),
                ("AllergyIntolerance", ["onsetPeriod": ["end": "2024-02-29"], "reaction": [["onset": "2024-02-29T10:00:00Z"], ["severity": "mild"]]]),
            ] as [(String, [String: Any])] {
                try expectStatus(try await write(type, fields), 201)
            }
            // …and documented with the same pattern.
            let datePattern = property("Condition", ["recordedDate"])?["pattern"] as? String
            #expect(datePattern != nil)
            for (type, names) in [("Observation", ["effectivePeriod", "start"]), ("Observation", ["valueDateTime"]), ("Observation", ["valuePeriod", "end"]), ("Observation", ["note", "items", "time"]),
                                  ("Observation", ["component", "items", "valuePeriod", "start"]), ("Condition", ["abatementPeriod", "start"]),
                                  ("AllergyIntolerance", ["reaction", "items", "onset"]), ("AllergyIntolerance", ["onsetPeriod", "end"])] {
                #expect(property(type, names)?["pattern"] as? String == datePattern, "\(type).\(names.joined(separator: "."))")
            }
            let period = try await s.request("GET", "/fhir/R4/Observation?patient=\(patient)&date=2015-06-07", token: key, organization: clinic.uuid)
            try expectStatus(period, 200)
            #expect(period.json?.raw["total"] as? Int == 1)
            // The first is the one `recorded-date` searches; a date it does not search is not found by it.
            try expectStatus(try await write("Condition", ["recordedDate": "2020-01-01", "onsetDateTime": "2026-11-30"]), 201)
            try expectStatus(try await write("Condition", ["abatementDateTime": "2019-05-05"]), 201)
            for (day, total) in [("2020-01-01", 1), ("2019-05-05", 0)] {
                let found = try await s.request("GET", "/fhir/R4/Condition?patient=\(patient)&recorded-date=\(day)", token: key, organization: clinic.uuid)
                try expectStatus(found, 200)
                #expect(found.json?.raw["total"] as? Int == total, "recorded-date=\(day)")
            }
            // The end of time sorts last: a year-9999 date with a negative offset (past 9999 in UTC),
            // and the end of year 9999 as a search's bound.
            try expectStatus(try await write("Condition", ["recordedDate": "9999-12-31T23:00:00-14:00"]), 201)
            func total(_ query: String) async throws -> Int? {
                let found = try await s.request("GET", "/fhir/R4/Condition?patient=\(patient)&\(query)", token: key, organization: clinic.uuid)
                try expectStatus(found, 200)
                return found.json?.raw["total"] as? Int
            }
            let dated = try #require(try await total("recorded-date=ge0001"))
            #expect(dated > 3)
            let counts = [try await total("recorded-date=le9999"), try await total("recorded-date=gt9999-12-31T20:00:00Z"), try await total("recorded-date=lt9999-12-31T20:00:00Z"), try await total("recorded-date=lt2100")]
            // Undated ones (only an abatementDateTime, six above) match no date search, `lt` and `ne` included.
            #expect(counts == [dated - 1, 1, dated - 1, dated - 1], "\(dated) \(counts)")
            #expect(try await total("recorded-date=ne1900") == dated)
        }
    }

    @Test("transaction Bundles are checked whole and written in one transaction; batches answer per entry", arguments: Backend.allCases)
    func bundles(_ backend: Backend) async throws {
        try await withServer(backend) { s in
            let dev = try await s.createDeveloper()
            let clinic = try await s.createClinic(patients: 3)
            let other = try await s.createClinic(patients: 1)
            let app = try await s.createApp(
                developer: dev.token, scopes: ["cms.fhir.r4.read", "cms.fhir.rest.write", "cms.fhir.bundle.push"], surface: "platform")
            _ = try await s.install(app: app.id, clinic: clinic)
            let full = try await s.createKey(developer: dev.token, app: app.id, scopes: nil).key
            let pushOnly = try await s.createKey(developer: dev.token, app: app.id, scopes: ["cms.fhir.bundle.push"]).key
            let patient = FHIRID.fhir(try #require(
                try await s.server.clinic.list(.patients, organization: clinic.id, filters: [], after: nil, limit: 1).items.first?["id"]?.stringValue))
            let stranger = FHIRID.fhir(try #require(
                try await s.server.clinic.list(.patients, organization: other.id, filters: [], after: nil, limit: 1).items.first?["id"]?.stringValue))
            func observation(_ subject: String) -> [String: Any] {
                ["resourceType": "Observation", "status": "final", "subject": ["reference": "Patient/\(subject)"],
                 "code": ["coding": [["system": "http://loinc.org", "code": "8867-4"]]], "effectiveDateTime": "2026-11-30T08:00:00Z"]
            }
            func post(_ key: String, _ type: String, _ entries: [[String: Any]]) async throws -> TestServer.Reply {
                let body = try JSONSerialization.data(withJSONObject: ["resourceType": "Bundle", "type": type, "entry": entries])
                return try await s.request("POST", "/fhir/R4", token: key, organization: clinic.uuid, body: body, headers: ["Content-Type": "application/fhir+json"])
            }
            func count() async throws -> Int {
                let reply = try await s.request("GET", "/fhir/R4/Observation?_count=0", token: full, organization: clinic.uuid)
                return reply.json?.raw["total"] as? Int ?? -1
            }
            let before = try await count()
            #expect(before == 12)

            // One bad entry refuses the whole transaction, and nothing of it is written.
            let refused = try await post(full, "transaction", [
                ["request": ["method": "POST", "url": "Observation"], "resource": observation(patient)],
                ["request": ["method": "POST", "url": "Observation"], "resource": observation(stranger)],
            ])
            #expect(refused.status == 400 && refused.text.contains("Bundle entry 1"), "\(refused.status): \(refused.text)")
            #expect(try await count() == before)
            let readOnly = try await post(full, "transaction", [["request": ["method": "PUT", "url": "Patient/\(patient)"], "resource": ["resourceType": "Patient"]]])
            #expect(readOnly.status == 400 && readOnly.json?.string("resourceType") == "OperationOutcome")

            // A good one: deletes, creates, updates, then reads, each answered in its entry.
            let first = try await post(full, "transaction", [["request": ["method": "POST", "url": "Observation"], "resource": observation(patient)]])
            try expectStatus(first, 200)
            let created = try #require((first.json?.array("entry").first?.object("resource"))?.string("id"))
            var amended = observation(patient)
            amended["id"] = created
            amended["status"] = "amended"
            let mixed = try await post(full, "transaction", [
                ["request": ["method": "GET", "url": "Observation/\(created)"]],
                ["request": ["method": "PUT", "url": "Observation/\(created)"], "resource": amended],
                ["request": ["method": "POST", "url": "Observation"], "resource": observation(patient)],
                ["request": ["method": "GET", "url": "Observation?patient=\(patient)&_count=0"]],
            ])
            try expectStatus(mixed, 200)
            #expect(mixed.json?.string("type") == "transaction-response")
            let statuses = mixed.json?.array("entry").map { $0.object("response")?.string("status") ?? "" }
            #expect(statuses == ["200 OK", "200 OK", "201 Created", "200 OK"], "\(statuses ?? [])")
            #expect(mixed.json?.array("entry")[0].object("resource")?.string("status") == "amended", "the read comes after the writes")
            #expect(mixed.json?.array("entry")[3].object("resource")?.raw["total"] as? Int == 6)
            #expect(try await count() == before + 2)

            // A batch answers each entry on its own.
            let batch = try await post(full, "batch", [
                ["request": ["method": "POST", "url": "Observation"], "resource": observation(stranger)],
                ["request": ["method": "DELETE", "url": "Observation/\(created)"]],
                ["request": ["method": "GET", "url": "Observation/\(created)"]],
            ])
            try expectStatus(batch, 200)
            #expect(batch.json?.array("entry").map { $0.object("response")?.string("status") ?? "" } == ["400 Bad Request", "204 No Content", "404 Not Found"])

            // cms.fhir.bundle.push writes through Bundles, clinic-wide, and reads nothing.
            let pushed = try await post(pushOnly, "batch", [
                ["request": ["method": "POST", "url": "Observation"], "resource": observation(patient)],
                ["request": ["method": "GET", "url": "Observation?patient=\(patient)"]],
            ])
            #expect(pushed.json?.array("entry").map { $0.object("response")?.string("status") ?? "" } == ["201 Created", "403 Forbidden"], "\(pushed.text)")
            #expect(try await s.request("POST", "/fhir/R4/Observation", token: pushOnly, organization: clinic.uuid,
                                        body: try JSONSerialization.data(withJSONObject: observation(patient)),
                                        headers: ["Content-Type": "application/fhir+json"]).status == 403, "but not outside a Bundle")
            // Every answer is valid R4B: the OperationOutcomes, transaction- and batch-responses.
            _ = try await Self.validR4B([refused, readOnly, first, mixed, batch, pushed].map(\.body))
        }
    }

    static func assertRules(_ observed: Observed, me: String, gateway: Bool = false) {
        func sub(_ object: [String: Any], _ key: String) -> [String: Any] { object[key] as? [String: Any] ?? [:] }
        let tokens = observed.raw["tokens"] as? [String: Any] ?? [:]
        #expect(sub(tokens, "patient")["patient"] as? String == me, "the launch token's patient: \(tokens)")
        #expect(sub(tokens, "lab")["patient"] as? String == me, "the launch token's patient: \(tokens)")

        // A patient/*.rs token: every search of every compartment type returns only its patient's.
        let compartment = observed.scenario("compartment")
        for (kind, result) in sub(compartment, "searches") {
            let result = result as? [String: Any] ?? [:]
            #expect(result["statuses"] as? [Int] == [200], "\(kind) search")
            #expect((result["count"] as? Int ?? 0) > 0, "\(kind) search found nothing of the patient's")
            #expect(result["owners"] as? [String] == [me], "\(kind) search returned another patient's: \(result)")
        }
        for (search, status) in sub(compartment, "named_self") { #expect(status as? Int == 200, "\(search)") }

        // Practitioner, Location and Organization stay readable.
        for (kind, result) in sub(observed.scenario("reference_types"), "types") {
            let result = result as? [String: Any] ?? [:]
            #expect((result["count"] as? Int ?? 0) > 0 && result["read"] as? Int == 200, "\(kind): \(result)")
        }

        // Another patient: named in a search, 403; read by id, answered as an id that does not exist.
        let other = observed.scenario("other_patient")
        for (search, outcome) in sub(other, "searches") {
            let outcome = outcome as? [String: Any] ?? [:]
            #expect(outcome["status"] as? Int == 403 && outcome["resourceType"] as? String == "OperationOutcome", "\(search): \(outcome)")
        }
        for (kind, read) in sub(other, "reads") {
            let read = read as? [String: Any] ?? [:]
            #expect(read["foreign"] as? Int == 404 && read["same"] as? Bool == true, "\(kind) of another patient: \(read)")
        }

        // $everything, $export, _include/_revinclude/_has/chains and a Bundle naming B are refused.
        let refused = observed.scenario("refused_operations")
        for operation in ["everything", "export", "patient_export", "has", "chained", "bundle_with_B"] + (gateway ? [] : ["include", "revinclude"]) {
            let outcome = sub(refused, operation)
            let status = outcome["status"] as? Int ?? 0
            #expect((400..<500).contains(status) && outcome["resourceType"] as? String == "OperationOutcome", "\(operation): \(outcome)")
        }
        if gateway {
            // The upstream serves _include and _revinclude; nothing they bring is another patient's,
            // or of a type the token does not read, though the upstream brings such (the key sees them).
            for probe in ["include", "revinclude", "include_practitioner", "revinclude_foreign", "revinclude_unscoped_type"] {
                let result = sub(refused, probe)
                #expect(result["statuses"] as? [Int] == [200] && result["owners"] as? [String] == [me], "\(probe): \(result)")
            }
            for probe in ["include", "revinclude", "include_practitioner"] {
                #expect((sub(refused, probe)["included"] as? Int ?? 0) > 0, "\(probe) brought nothing: \(sub(refused, probe))")
            }
            #expect((sub(refused, "revinclude_foreign")["key_owners"] as? Int ?? 0) > 1, "\(sub(refused, "revinclude_foreign"))")
            #expect(sub(refused, "revinclude_unscoped_type")["included"] as? Int == 0, "\(sub(refused, "revinclude_unscoped_type"))")
            #expect((sub(refused, "revinclude_unscoped_type")["key_included"] as? Int ?? 0) > 0)
        } else {
            #expect((sub(refused, "include")["text"] as? String)?.contains("_include") == true)
        }

        // Writes: another patient's is 403 and nothing is written; one's own works.
        let writes = observed.scenario("writes")
        #expect(sub(writes, "create_for_B")["status"] as? Int == 403, "\(sub(writes, "create_for_B"))")
        #expect(sub(writes, "create_referencing_B")["status"] as? Int == 403)
        #expect(sub(writes, "create_referencing_B_versioned")["status"] as? Int == 403 && sub(writes, "create_referencing_identifier")["status"] as? Int == 403)
        #expect(writes["create_own"] as? Int == 201 && writes["read_back"] as? Int == 200, "\(writes)")
        #expect(sub(writes, "move_to_B")["status"] as? Int == 403)
        #expect(writes["update_own"] as? Int == 200 && writes["version_after_update"] as? String == "2")
        #expect(writes["delete_own"] as? Int == 204 && writes["read_after_delete"] as? Int == 404)
        #expect(sub(writes, "update_B")["status"] as? Int == 404 && sub(writes, "delete_B")["status"] as? Int == 404, "\(writes)")

        // patient/Observation.rs?category=laboratory: only laboratory, a vital sign unreadable, no create.
        let granular = observed.scenario("granular")
        #expect(sub(granular, "search")["categories"] as? [String] == ["laboratory"], "\(granular)")
        #expect((sub(granular, "search")["count"] as? Int ?? 0) > 0)
        #expect(sub(granular, "read_vital")["status"] as? Int == 404 && granular["read_lab"] as? Int == 200, "\(granular)")
        #expect(granular["search_vital"] as? Int == 0)
        #expect(sub(granular, "create_lab")["status"] as? Int == 403)

        // patient/ scopes without a patient: refused on every FHIR route but /metadata.
        let noPatient = observed.scenario("no_patient_context")
        for (path, status) in sub(noPatient, "routes") { #expect(status as? Int == 403, "\(path) without a patient context: \(noPatient)") }
        #expect(noPatient["metadata"] as? Int == 200)

        // 401 and 403 are OperationOutcomes with X-Trace-Id and WWW-Authenticate.
        let errors = observed.scenario("errors")
        for (name, status) in [("no_token", 401), ("bad_token", 401), ("insufficient", 403)] {
            let outcome = sub(errors, name)
            #expect(outcome["status"] as? Int == status && outcome["resourceType"] as? String == "OperationOutcome", "\(name): \(outcome)")
            #expect((outcome["trace_id"] as? String)?.isEmpty == false && (outcome["www_authenticate"] as? String)?.hasPrefix("Bearer") == true, "\(name): \(outcome)")
        }
        #expect(sub(errors, "unsupported")["status"] as? Int == 400 && sub(errors, "unsupported")["code"] as? String == "not-supported")
        #expect((sub(errors, "unsupported")["text"] as? String).map { $0.contains("\"name\"") && $0.contains("\"_sort\"") } == true, "\(errors)")
        #expect(sub(errors, "bad_date")["status"] as? Int == 400)
        #expect(sub(errors, "longest_value")["status"] as? Int == 200, "\(errors)")
        if !gateway {  // in front of an upstream, a search's values are the upstream's to limit
            #expect(sub(errors, "too_long_value")["status"] as? Int == 400 && (sub(errors, "too_long_value")["text"] as? String)?.contains("2048 characters") == true, "\(errors)")
        }

        // cms.fhir.r4.read on an API key: the whole clinic, nothing of another.
        let wide = observed.scenario("clinic_wide")
        let totals = sub(wide, "totals")
        #expect(totals["Patient"] as? Int == 50 && totals["Observation"] as? Int == 200 && totals["Condition"] as? Int == 50, "\(totals)")
        #expect(totals["AllergyIntolerance"] as? Int == 50 && totals["Encounter"] as? Int == 100 && totals["Appointment"] as? Int == 100, "\(totals)")
        #expect(totals["Organization"] as? Int == 1 && totals["Practitioner"] as? Int == 5 && totals["Location"] as? Int == 3, "\(totals)")
        #expect(wide["foreign_patient"] as? Int == 404 && wide["foreign_search"] as? Int == 0)
        #expect(wide["paged_patients"] as? Int == 50)
        #expect((wide["date_ge"] as? Int ?? 0) + (wide["date_lt"] as? Int ?? 0) == 200 && (wide["date_ge"] as? Int ?? 0) > 0)
        #expect(wide["code"] as? Int == 50 && wide["code_wrong_system"] as? Int == 0)
        #expect((wide["status"] as? Int ?? 0) > 0 && (wide["status"] as? Int ?? 0) < 50)

        // user/*.rs for a signed-in clinician: the clinic (no picker: a user-level app), nothing of another clinic.
        let clinician = observed.scenario("clinician_user")
        #expect(clinician["pages"] as? [String] == ["sign-in", "consent"], "\(clinician)")
        #expect(clinician["observations"] as? Int == 200 && clinician["patients"] as? Int == 50, "\(clinician)")
        #expect(clinician["foreign_patient"] as? Int == 404 && clinician["own_record"] as? Int == 200, "\(clinician)")

        // fhirclient reads the Patient and searches Observations with the launch token.
        let client = observed.scenario("fhirclient_reads")
        #expect(client["patient_id"] as? String == me && (client["observations"] as? Int ?? 0) >= 4)
        #expect(client["observation_subjects"] as? [String] == ["Patient/\(me)"])

        // Every link and fullUrl names the FHIR base the app talks to.
        #expect((observed.raw["elsewhere"] as? [String])?.isEmpty == true, "\(observed.raw["elsewhere"] ?? "")")

        // Every answer validates with the fhir.resources R4B models.
        let validation = observed.raw["validation"] as? [String: Any] ?? [:]
        #expect((validation["count"] as? Int ?? 0) > 200, "\(validation)")
        #expect((validation["failures"] as? [String] ?? ["?"]).isEmpty, "\(validation)")
    }
}

/// Fixtures/fhir_upstream.py as a real process on a loopback port: a FHIR server over its own
/// data (read, search with paging and _include, writes), knowing nothing of Caregate's rules.
final class FHIRUpstream: Sendable {
    private let helper: ListeningHelper

    init() throws {
        let script = repositoryRoot.appendingPathComponent("Tests/CaregateServerTests/Fixtures/fhir_upstream.py").path
        helper = try ListeningHelper(URL(fileURLWithPath: "/usr/bin/env"), ["python3", script], name: "fhir_upstream.py")
    }

    var url: String { helper.url }
    func stop() { helper.stop() }

    /// Gives the upstream a clinic's resources of every served type, as the clinic database holds them.
    func load(_ store: FHIRStore, organization: String) async throws {
        var resources: [JSONValue] = []
        for type in FHIRType.allCases {
            var offset = 0
            while true {
                let page = try await store.search(type, organization: organization, filters: [], access: nil, count: 200, offset: offset)
                resources += page.resources
                offset += page.resources.count
                if page.resources.isEmpty || offset >= page.total { break }
            }
        }
        let reply = try await httpRequest(base: url, "POST", "/_load", body: Data(JSONValue.array(resources).serialized()), headers: ["Content-Type": "application/json"])
        guard reply.status == 204 else { throw TestSetupError("fhir_upstream.py did not load the clinic: \(reply.status) \(reply.text)") }
    }

}
