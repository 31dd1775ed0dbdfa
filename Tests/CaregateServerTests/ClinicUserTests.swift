import CaregateServer
import CaregateStore
import Foundation
import Testing

/// Clinic users (SPEC §7): the clinicians and patients who sign in to SMART apps, created by
/// the clinic admin, their passwords stored only as a scrypt hash.
@Suite struct ClinicUserTests {
    @Test("a clinic admin creates, lists and removes clinicians and patients; bad input, other clinics and other callers are refused", arguments: Backend.allCases)
    func users(_ backend: Backend) async throws {
        try await withServer(backend) { s in
            let clinic = try await s.createClinic(patients: 3)
            let other = try await s.createClinic(patients: 1)
            let provider = try #require(try await s.server.clinic.list(.providers, organization: clinic.id, filters: [], after: nil, limit: 1).items.first?["id"]?.stringValue)
            let patient = try #require(try await s.server.clinic.list(.patients, organization: clinic.id, filters: [], after: nil, limit: 1).items.first?["id"]?.stringValue)
            let foreignPatient = try #require(try await s.server.clinic.list(.patients, organization: other.id, filters: [], after: nil, limit: 1).items.first?["id"]?.stringValue)
            let path = "/manage/organizations/\(clinic.id)/users"
            let password = "correct horse battery staple"
            // Usernames are unique across clinics (the sign-in page asks for nothing else), and the
            // PostgreSQL tests share one database: each run names its users afresh.
            let tag = UUID().uuidString.prefix(6).lowercased()
            let ada = "dr.ada.\(tag)", one = "pat.one.\(tag)", grace = "dr.grace.\(tag)"

            let clinician = try await s.request("POST", path, token: clinic.adminToken, json: ["username": ada, "password": password, "role": "clinician", "providerId": provider])
            try expectStatus(clinician, 201)
            #expect(clinician.json?.string("id").hasPrefix("usr_") == true && clinician.json?.string("fhirUser") == "Practitioner/\(provider)")
            let patientUser = try await s.request("POST", "/manage/organizations/\(clinic.uuid)/users", token: clinic.adminToken,
                                                  json: ["username": one, "password": password, "role": "patient", "patientId": patient])
            try expectStatus(patientUser, 201)
            #expect(patientUser.json?.string("fhirUser") == "Patient/\(patient)")

            // The password is kept only as a scrypt hash.
            let stored = try await s.server.database.sql.raw("SELECT password_hash FROM clinic_users WHERE username = \(bind: ada)").first()
            let hash = try #require(try stored?.decode(column: "password_hash", as: String.self))
            #expect(hash.hasPrefix("scrypt$32768$8$3$") && !hash.contains(password))

            for (body, why) in [
                (["username": "x1", "password": password, "role": "patient", "patientId": patient], "username too short"),
                (["username": "short.pw", "password": "tooshort", "role": "patient", "patientId": patient], "password under 12"),
                (["username": "control.pw", "password": "twelve chars\u{1}", "role": "patient", "patientId": patient], "password with a control character"),
                (["username": "blank.pw", "password": String(repeating: " ", count: 12), "role": "patient", "patientId": patient], "password of spaces"),
                (["username": "no.provider", "password": password, "role": "clinician"], "clinician without providerId"),
                (["username": "both", "password": password, "role": "patient", "patientId": patient, "providerId": provider], "two links"),
                (["username": "foreign", "password": password, "role": "patient", "patientId": foreignPatient], "another clinic's patient"),
                (["username": "admin", "password": password, "role": "operator", "patientId": patient], "unknown role"),
            ] as [([String: Any], String)] {
                #expect(try await s.request("POST", path, token: clinic.adminToken, json: body).status == 400, "\(why)")
            }
            // 12 code points (as the document's minLength counts) in 6 characters: accepted.
            let combining = try await s.request("POST", path, token: clinic.adminToken,
                                                json: ["username": "combining.\(tag)", "password": String(repeating: "e\u{301}", count: 6), "role": "patient", "patientId": patient])
            try expectStatus(combining, 201)
            #expect(try await s.request("DELETE", "\(path)/\(combining.json!.string("id"))", token: clinic.adminToken).status == 204)
            let again = try await s.request("POST", path, token: clinic.adminToken, json: ["username": ada, "password": password, "role": "clinician", "providerId": provider])
            #expect(again.status == 409)
            let elsewhere = try await s.request("POST", "/manage/organizations/\(other.id)/users", token: other.adminToken,
                                                json: ["username": one, "password": password, "role": "patient", "patientId": foreignPatient])
            #expect(elsewhere.status == 409, "a username names one person across clinics")
            #expect(try await s.request("GET", path, token: other.adminToken).status == 404, "another clinic's admin")
            let dev = try await s.createDeveloper()
            #expect(try await s.request("GET", path, token: dev.token).status == 403)

            let list = try JSONSerialization.jsonObject(with: try await s.request("GET", path, token: clinic.adminToken).body) as? [[String: Any]] ?? []
            #expect(list.compactMap { $0["username"] as? String } == [ada, one])
            #expect(list.allSatisfy { $0["password"] == nil && $0["passwordHash"] == nil })
            let id = clinician.json!.string("id")
            #expect(try await s.request("DELETE", "/manage/organizations/\(other.id)/users/\(id)", token: other.adminToken).status == 404)
            #expect(try await s.request("DELETE", "\(path)/\(id)", token: clinic.adminToken).status == 204)
            #expect(try await s.request("DELETE", "\(path)/\(id)", token: clinic.adminToken).status == 404)

            // The same from the console.
            let web = WebClient(base: s.base)
            _ = try await web.signIn(clinic.adminToken)
            let page = try await web.get("/console")
            #expect(page.html.contains(one) && page.html.contains("<option value=\"\(provider)\">"))
            let csrf = try #require(page.csrf)
            let added = try await web.post("/console/users", [
                ("csrf", csrf), ("username", grace), ("password", password), ("role", "clinician"), ("providerId", provider), ("patientId", ""),
            ])
            #expect(added.status == 303)
            let after = try await web.get("/console")
            #expect(after.html.contains(grace) && after.html.contains("Practitioner/\(provider)"))
            let refused = try await web.post("/console/users", [("csrf", csrf), ("username", "bad"), ("password", "short"), ("role", "patient")])
            #expect(refused.status == 400 && refused.html.contains("password"))
        }
    }
}
