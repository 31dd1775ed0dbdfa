import CaregateServer
import CaregateStore
import Crypto
import Foundation
import SQLKit
import Testing

/// SMART App Launch 2.2 (SPEC §7) end to end with real client libraries: fhirclient 4.4
/// (standalone launches as a patient and as a clinician with the picker), authlib (an EHR
/// launch with PKCE, refresh with rotation, the id_token checked against the JWKS) and
/// requests-oauthlib, plus one case per refusal of SPEC §7. The pages are driven as a browser
/// submits them (Fixtures/smart_launch.py): no shortcut around sign-in, picker or consent.
@Suite struct SMARTLaunchTests {
    static let password = "correct horse battery staple"
    static let appScopes = [
        "launch", "launch/patient", "openid", "fhirUser", "offline_access", "patient/*.read", "patient/Patient.read", "patient/Observation.rs",
        "user/Patient.read",
    ]

    @Test("fhirclient, authlib and requests-oauthlib complete or are refused as SPEC §7 says", arguments: Backend.allCases)
    func launches(_ backend: Backend) async throws {
        let port = try OAuthTests.closedPort()
        let upstream = try EchoUpstream()
        defer { upstream.stop() }
        try await withServer(backend, configure: {
            $0.port = port
            $0.issuer = "http://127.0.0.1:\(port)"
            $0.upstreams = [try! UpstreamConfiguration(surface: "platform", url: upstream.url)]
        }) { s in
            let fhirBase = s.base + "/fhir/R4"
            let dev = try await s.createDeveloper()
            let clinic = try await s.createClinic(patients: 5)
            let other = try await s.createClinic(patients: 1)
            let app = try await s.createApp(developer: dev.token, scopes: Self.appScopes, surface: "platform")
            _ = try await s.install(app: app.id, clinic: clinic)

            func list(_ collection: ClinicCollection, _ organization: String) async throws -> [JSONValue] {
                try await s.server.clinic.list(collection, organization: organization, filters: [], after: nil, limit: 10).items
            }
            let patients = try await list(.patients, clinic.id).compactMap { $0["id"]?.stringValue }
            let provider = try #require(try await list(.providers, clinic.id).first?["id"]?.stringValue)
            let visit = try #require(try await list(.appointments, clinic.id).first)
            let visitID = try #require(visit["id"]?.stringValue)
            let visitPatient = try #require(visit["patientId"]?.stringValue)
            let foreignPatient = try #require(try await list(.patients, other.id).first?["id"]?.stringValue)
            let pick = try #require(patients.first { $0 != patients[0] })

            func client(_ extra: [String: Any]) async throws -> (id: String, secret: String?) {
                var body: [String: Any] = ["scopes": Self.appScopes, "grantTypes": ["authorization_code", "refresh_token"]]
                for (k, v) in extra { body[k] = v }
                let reply = try await s.request("POST", "/manage/apps/\(app.id)/oauth-clients", token: dev.token, json: body)
                try expectStatus(reply, 201)
                return (reply.json!.string("clientId"), reply.json?.raw["clientSecret"] as? String)
            }
            let publicClient = try await client(["public": true, "redirectUris": ["http://127.0.0.1:9/callback"]])
            #expect(publicClient.secret == nil)
            let confidential = try await client(["redirectUris": ["http://127.0.0.1:9/cb"], "launchUrl": "https://app.example/launch"])
            let otherClient = try await client(["redirectUris": ["http://127.0.0.1:9/other"]])

            func user(_ username: String, _ role: String, _ link: String) async throws -> String {
                let reply = try await s.request("POST", "/manage/organizations/\(clinic.id)/users", token: clinic.adminToken, json: [
                    "username": username, "password": Self.password, "role": role, role == "clinician" ? "providerId" : "patientId": link,
                ])
                try expectStatus(reply, 201)
                return reply.json!.string("id")
            }
            // Usernames are unique across clinics, and the PostgreSQL runs share one database.
            let tag = UUID().uuidString.prefix(6).lowercased()
            let (patientName, clinicianName, doomedName, lockedName) = ("pat.one.\(tag)", "dr.ada.\(tag)", "pat.doomed.\(tag)", "pat.locked.\(tag)")
            _ = try await user(patientName, "patient", patients[0])
            let clinicianID = try await user(clinicianName, "clinician", provider)
            let doomedID = try await user(doomedName, "patient", patients[1])
            _ = try await user(lockedName, "patient", patients[0])

            func launch(_ clientID: String, _ extra: [String: Any] = [:]) async throws -> String {
                var body: [String: Any] = ["clientId": clientID, "userId": clinicianID]
                for (k, v) in extra { body[k] = v }
                let reply = try await s.request("POST", "/manage/launches", token: clinic.adminToken, json: body)
                try expectStatus(reply, 201)
                return reply.json!.string("launch")
            }
            // Made first and then aged in the database: at that moment the client's only launch.
            let expired = try await launch(confidential.id)
            try await s.server.database.sql.raw("UPDATE smart_launches SET expires_at = 1 WHERE client_id = \(bind: confidential.id)").run()
            let ehrReply = try await s.request("POST", "/manage/launches", token: clinic.adminToken, json: [
                "clientId": confidential.id, "userId": clinicianID, "encounterId": visitID, "needPatientBanner": true,
            ])
            try expectStatus(ehrReply, 201)
            let ehr = ehrReply.json!.string("launch")
            let launchURL = try #require(URLComponents(string: ehrReply.json!.string("launchUrl")))
            #expect(launchURL.host == "app.example" && launchURL.queryItems?.first { $0.name == "iss" }?.value == fhirBase)
            #expect(launchURL.queryItems?.first { $0.name == "launch" }?.value == ehr)
            #expect(ehr.allSatisfy { $0.isLetter || $0.isNumber }, "a launch value is URL-safe")
            let reuse = try await launch(confidential.id, ["patientId": pick])
            let forOther = try await launch(otherClient.id, ["patientId": pick])
            // The EHR launches only its own clinicians, for installed apps, with its own patients.
            #expect(try await s.request("POST", "/manage/launches", token: clinic.adminToken, json: ["clientId": confidential.id, "userId": doomedID]).status == 400)
            #expect(try await s.request("POST", "/manage/launches", token: clinic.adminToken,
                                        json: ["clientId": confidential.id, "userId": clinicianID, "patientId": foreignPatient]).status == 400)
            #expect(try await s.request("POST", "/manage/launches", token: other.adminToken, json: ["clientId": confidential.id, "userId": clinicianID]).status == 400)
            #expect(try await s.request("POST", "/manage/launches", token: dev.token, json: ["clientId": confidential.id, "userId": clinicianID]).status == 403)

            let config: [String: Any] = [
                "base": s.base, "fhirBase": fhirBase, "adminToken": clinic.adminToken, "orgId": clinic.id,
                "public": ["clientId": publicClient.id, "redirectUri": "http://127.0.0.1:9/callback"],
                "confidential": ["clientId": confidential.id, "clientSecret": confidential.secret ?? "", "redirectUri": "http://127.0.0.1:9/cb"],
                "other": ["clientId": otherClient.id, "clientSecret": otherClient.secret ?? "", "redirectUri": "http://127.0.0.1:9/other"],
                "patientUser": ["username": patientName, "password": Self.password, "patientId": patients[0]],
                "clinician": ["username": clinicianName, "password": Self.password, "providerId": provider],
                "doomedUser": ["username": doomedName, "password": Self.password, "id": doomedID, "patientId": patients[1]],
                "lockUser": ["username": lockedName, "password": Self.password],
                "pickPatient": pick, "foreignPatient": foreignPatient,
                "launches": ["ehr": ehr, "ehrEncounter": visitID, "reuse": reuse, "expired": expired, "otherClient": forOther],
                "scopes": [
                    "patientApp": "launch/patient openid fhirUser offline_access patient/Patient.read patient/Observation.rs",
                    "clinicianApp": "launch/patient openid fhirUser offline_access user/Patient.read patient/Patient.read",
                    "ehrApp": "launch openid fhirUser offline_access patient/*.read",
                ],
            ]
            let configPath = FileManager.default.temporaryDirectory.appendingPathComponent("smart-launch-\(UUID().uuidString).json")
            try JSONSerialization.data(withJSONObject: config).write(to: configPath)
            defer { try? FileManager.default.removeItem(at: configPath) }
            let script = repositoryRoot.appendingPathComponent("Tests/CaregateServerTests/Fixtures/smart_launch.py").path
            let (status, output) = try await runProgram("/usr/bin/env", ["python3", script, configPath.path])
            try #require(status == 0, "smart_launch.py failed: \(output)")
            let line = try #require(output.split(separator: "\n").last)
            let out = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(output)")
            func scenario(_ name: String) throws -> [String: Any] {
                let value = try #require(out[name] as? [String: Any], "\(name) missing")
                #expect(value["error"] == nil || value["status"] != nil, "\(name) raised: \(value)")
                return value
            }
            func sub(_ object: [String: Any], _ key: String) -> [String: Any] { object[key] as? [String: Any] ?? [:] }

            // Discovery: SMART configuration at the FHIR base and at the root, OpenID, RFC 8414, and a
            // CapabilityStatement strict R4 models accept.
            let discovery = try scenario("discovery")
            for document in ["fhir_smart_configuration", "smart_configuration", "openid_configuration", "oauth_authorization_server", "metadata"] {
                #expect(sub(discovery, document)["status"] as? Int == 200, "\(document)")
            }
            #expect((sub(discovery, "metadata")["content_type"] as? String)?.hasPrefix("application/fhir+json") == true)
            #expect(discovery["metadata_strict_ok"] as? Bool == true, "\(discovery["metadata_strict_error"] ?? "")")
            #expect(discovery["code_challenge_methods_supported"] as? [String] == ["S256"])
            let capabilities = Set(discovery["capabilities"] as? [String] ?? [])
            #expect(capabilities.isSuperset(of: ["launch-ehr", "launch-standalone", "client-public", "sso-openid-connect", "context-ehr-patient",
                                                 "context-ehr-encounter", "context-standalone-patient", "permission-offline", "permission-v1", "permission-v2"]))
            #expect(Set(discovery["grant_types_supported"] as? [String] ?? []) == ["authorization_code", "client_credentials", "refresh_token"])
            #expect(discovery["id_token_signing_alg_values_supported"] as? [String] == ["RS256"])

            // fhirclient, standalone, as a patient: no picker, the token's patient is the user's own.
            let asPatient = try scenario("fhirclient_patient")
            #expect(asPatient["pages"] as? [String] == ["sign-in", "consent"], "\(asPatient)")
            // Launch contexts name FHIR resources, so their ids are FHIR ids (pat-…, not /v3's pat_…).
            #expect(asPatient["patient_id"] as? String == FHIRID.fhir(patients[0]), "\(asPatient)")
            #expect(asPatient["state_ok"] as? Bool == true && asPatient["iss"] as? String == s.base)
            #expect(asPatient["has_refresh"] as? Bool == true && asPatient["refreshed"] as? Bool == true, "\(asPatient)")
            let introspection = sub(asPatient, "introspection")
            #expect(introspection["active"] as? Bool == true && introspection["patient"] as? String == FHIRID.fhir(patients[0]), "\(introspection)")
            #expect(introspection["fhirUser"] as? String == "\(fhirBase)/Patient/\(FHIRID.fhir(patients[0]))")

            // The built-in FHIR API serves /fhir/R4 (the platform's upstream serves its other routes):
            // the patient's own record reads, another clinic's patient is unknown.
            #expect(sub(asPatient, "gateway_reads")["own_patient"] as? Int == 200, "\(asPatient)")
            #expect(sub(asPatient, "gateway_reads")["other_patient"] as? Int == 404)
            #expect((sub(asPatient, "gateway_reads")["invalid"] as? [String])?.isEmpty == true, "R4B: \(asPatient)")

            // fhirclient, standalone, as a clinician: the picker offers the clinic's patients only.
            let asClinician = try scenario("fhirclient_clinician")
            #expect(asClinician["pages"] as? [String] == ["sign-in", "patient", "consent"], "\(asClinician)")
            #expect(asClinician["patient_id"] as? String == FHIRID.fhir(pick), "\(asClinician)")
            #expect(Set(asClinician["offered"] as? [String] ?? []) == Set(patients) && asClinician["foreign_offered"] as? Bool == false)
            // A clinician's `user/Patient.read` reaches the clinic's patients.
            #expect(sub(asClinician, "gateway_reads")["own_patient"] as? Int == 200, "\(asClinician)")
            #expect((sub(asClinician, "gateway_reads")["invalid"] as? [String])?.isEmpty == true, "R4B: \(asClinician)")
            let foreign = try scenario("picker_foreign")
            #expect(foreign["status"] as? Int == 400 && foreign["has_code"] as? Bool == false, "\(foreign)")

            // authlib, EHR launch: context from the launch, an id_token that verifies, rotating refresh tokens.
            let ehrRun = try scenario("authlib_ehr")
            #expect(ehrRun["pages"] as? [String] == ["sign-in", "consent"], "\(ehrRun)")
            #expect(ehrRun["patient"] as? String == FHIRID.fhir(visitPatient) && ehrRun["encounter"] as? String == FHIRID.fhir(visitID), "\(ehrRun)")
            #expect(ehrRun["need_patient_banner"] as? Bool == true)
            #expect(ehrRun["id_token_verified"] as? Bool == true && ehrRun["id_token_alg"] as? String == "RS256", "\(ehrRun)")
            #expect(ehrRun["aud"] as? String == confidential.id && ehrRun["nonce_ok"] as? Bool == true)
            #expect(ehrRun["fhirUser"] as? String == "\(fhirBase)/Practitioner/\(FHIRID.fhir(provider))")
            #expect(ehrRun["refresh_rotated"] as? Bool == true, "\(ehrRun)")
            #expect(ehrRun["reuse_status"] as? Int == 400 && ehrRun["reuse_error"] as? String == "invalid_grant")
            #expect(ehrRun["after_reuse_status"] as? Int == 400 && ehrRun["after_reuse_error"] as? String == "invalid_grant", "the family is revoked")
            #expect(ehrRun["after_reuse_active"] as? Bool == false)

            // Refresh: widening refused, another client's token refused, narrowing kept.
            let refresh = try scenario("refresh_rules")
            #expect(refresh["widen_status"] as? Int == 400 && refresh["widen_error"] as? String == "invalid_scope", "\(refresh)")
            #expect(refresh["other_client_status"] as? Int == 400 && refresh["other_client_error"] as? String == "invalid_grant", "\(refresh)")
            #expect(refresh["narrow_status"] as? Int == 200 && refresh["narrow_scope"] as? String == "offline_access patient/Patient.read", "\(refresh)")
            #expect(refresh["after_narrow_scope"] as? String == "offline_access patient/Patient.read", "a refresh never widens back: \(refresh)")

            // Codes: PKCE checked for every client, single use, a replay revokes what the first use issued.
            let codes = try scenario("code_rules")
            for key in ["wrong_verifier", "verifier_is_challenge", "blank_verifier", "missing_verifier"] {
                let r = sub(codes, key)
                #expect(r["status"] as? Int == 400 && r["error"] as? String == "invalid_grant", "\(key): \(codes)")
                #expect((r["error_description"] as? String)?.contains("code_verifier") == true, "\(key) is refused for its verifier: \(r)")
            }
            #expect(sub(codes, "correct_after_failures")["status"] as? Int == 400, "a code is spent by a failed attempt")
            #expect(sub(codes, "first_use")["status"] as? Int == 200 && codes["active_before"] as? Bool == true, "\(codes)")
            #expect(sub(codes, "second_use")["status"] as? Int == 400 && sub(codes, "second_use")["error"] as? String == "invalid_grant")
            #expect(codes["active_after"] as? Bool == false, "a replayed code revokes the first use's tokens")
            #expect(sub(codes, "refresh_after_replay")["status"] as? Int == 400)

            // PKCE plain (requests-oauthlib sends no challenge for it): refused on the redirect, with the state.
            let plain = try scenario("requests_oauthlib_plain")
            #expect(plain["status"] as? Int == 302 && plain["error"] as? String == "invalid_request" && plain["state_ok"] as? Bool == true, "\(plain)")

            let refusals = try scenario("authorize_refusals")
            for page in ["unknown_client", "inexact_redirect", "redirect_trailing_slash"] {
                #expect(sub(refusals, page)["status"] as? Int == 400 && sub(refusals, page)["has_location"] as? Bool == false, "\(page): an error page, no redirect")
            }
            for redirected in ["wrong_aud", "missing_pkce", "plain_pkce", "unknown_launch", "expired_launch", "other_client_launch", "reused_launch"] {
                let r = sub(refusals, redirected)
                #expect(r["status"] as? Int == 302 && r["error"] as? String == "invalid_request" && r["state"] as? String == "st-\(redirected)", "\(redirected): \(r)")
            }
            #expect(sub(refusals, "bad_response_type")["error"] as? String == "unsupported_response_type")
            #expect(sub(refusals, "reuse_first")["has_code"] as? Bool == true, "\(refusals)")
            for accepted in ["aud_trailing_slash", "post_form"] {
                #expect(sub(refusals, accepted)["status"] as? Int == 200 && sub(refusals, accepted)["sign_in"] as? Bool == true, "\(accepted): \(refusals)")
            }

            // Consent: an unticked scope is not granted; deny goes back with access_denied and the state.
            let consent = try scenario("consent")
            let unticked = (consent["unticked_scope"] as? String ?? "").split(separator: " ").map(String.init)
            #expect(!unticked.isEmpty && !unticked.contains("patient/Observation.rs") && unticked.contains("patient/Patient.read"), "\(consent)")
            #expect(sub(consent, "deny")["error"] as? String == "access_denied" && sub(consent, "deny")["state_ok"] as? Bool == true)

            // A deleted user's refresh token and access token stop.
            let deleted = try scenario("deleted_user")
            #expect(sub(deleted, "before")["status"] as? Int == 200 && deleted["delete_status"] as? Int == 204, "\(deleted)")
            #expect(sub(deleted, "after")["status"] as? Int == 400 && sub(deleted, "after")["error"] as? String == "invalid_grant")
            #expect(deleted["active_after_delete"] as? Bool == false)

            // Revoking a refresh token ends its access tokens; introspection carried the launch context until then.
            let revocation = try scenario("revocation")
            let before = sub(revocation, "before")
            #expect(before["active"] as? Bool == true && before["patient"] as? String == FHIRID.fhir(patients[0]) && before["sub"] as? String != nil, "\(revocation)")
            #expect(before["fhirUser"] as? String == "\(fhirBase)/Patient/\(FHIRID.fhir(patients[0]))" && before["iss"] as? String == s.base)
            #expect(revocation["revoke_status"] as? Int == 200 && revocation["active_after"] as? Bool == false, "\(revocation)")
            #expect(sub(revocation, "refresh_after")["error"] as? String == "invalid_grant")

            // Ten failures lock the username; locked, wrong and unknown are answered alike.
            let lockout = try scenario("lockout")
            #expect(lockout["locked_status"] as? Int == 401 && lockout["unknown_status"] as? Int == 401 && lockout["wrong_status"] as? Int == 401, "\(lockout)")
            #expect(lockout["locked_message"] as? String == lockout["unknown_message"] as? String)
            #expect(lockout["wrong_message"] as? String == lockout["unknown_message"] as? String)
            #expect(lockout["locked_location"] == nil || lockout["locked_location"] is NSNull)
        }
    }
    @Test("SMART state that can no longer be used is deleted by the background pruning; live state stays", arguments: Backend.allCases)
    func pruning(_ backend: Backend) async throws {
        try await withServer(backend, configure: { $0.auditRetentionDays = 30; $0.auditPruneInterval = .milliseconds(100) }) { s in
            let database = s.server.database
            let smart = SMARTStore(grants: GrantStore(database: database, secret: SymmetricKey(size: .bits256)))
            let client = "cli_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
            let hour: Int64 = 3_600_000
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            _ = try await smart.createLaunch(LaunchRecord(
                clientID: client, userID: "usr_x", organizationID: "org_x", patientID: nil, encounterID: nil, needPatientBanner: false))
            try await database.sql.raw("UPDATE smart_launches SET expires_at = \(bind: now - 2 * hour) WHERE client_id = \(bind: client)").run()
            // Each family is aged only once its refresh token exists: the pruning runs meanwhile.
            func family(_ id: String, createdAt: Int64, refreshLifetime: Int64) async throws {
                _ = try await smart.createFamily(TokenFamilyRecord(
                    id: id, clientID: client, userID: "usr_x", organizationID: "org_x", scope: ["openid"], context: LaunchContext(), revokedAt: nil))
                _ = try await smart.createRefreshToken(familyID: id, scope: ["openid"], lifetime: refreshLifetime)
                try await database.sql.raw("UPDATE token_families SET created_at = \(bind: createdAt) WHERE id = \(bind: id)").run()
            }
            let (old, kept, live) = ("fam_old_\(client)", "fam_kept_\(client)", "fam_live_\(client)")
            try await family(old, createdAt: now - 3 * hour, refreshLifetime: -1)   // refresh token expired, access tokens long expired
            try await family(kept, createdAt: now - 3 * hour, refreshLifetime: hour) // an unexpired refresh token keeps it
            try await family(live, createdAt: now, refreshLifetime: -1)              // its access token may still be in use
            func count(_ table: String, _ condition: SQLQueryString) async throws -> Int {
                try await database.sql.raw("SELECT COUNT(*) AS n FROM \(ident: table) WHERE " + condition).first()!.decode(column: "n", as: Int.self)
            }
            let deadline = ContinuousClock.now + .seconds(20)
            while ContinuousClock.now < deadline {
                let launches = try await count("smart_launches", "client_id = \(bind: client)")
                let families = try await count("token_families", "id = \(bind: old)")
                // The live family's expired refresh token may be written after the pass that took the old family.
                let expired = try await count("refresh_tokens", "family_id = \(bind: live)")
                if launches == 0 && families == 0 && expired == 0 { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(try await count("smart_launches", "client_id = \(bind: client)") == 0)
            #expect(try await count("token_families", "id = \(bind: old)") == 0)
            #expect(try await count("refresh_tokens", "family_id = \(bind: old)") == 0)
            #expect(try await count("token_families", "id IN (\(bind: kept), \(bind: live))") == 2)
            #expect(try await count("refresh_tokens", "family_id = \(bind: kept)") == 1)
            #expect(try await count("refresh_tokens", "family_id = \(bind: live)") == 0, "an expired refresh token goes")
            #expect(try await smart.isFamilyActive(kept))
            #expect(try await smart.isFamilyActive(live))
            #expect(try await !smart.isFamilyActive(old), "a pruned family counts as revoked")
        }
    }
}
