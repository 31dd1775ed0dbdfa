import CaregateServer
import Foundation
import Testing

/// The console in a real browser: headless Chromium driven by Selenium
/// (Fixtures/browser_console.py; `scripts/test` installs chromium, chromium-driver and selenium).
/// With `CAREGATE_SCREENSHOTS=DIR` the pages are saved there as PNG (docs/ holds the README's).
@Suite struct BrowserTests {
    @Test("headless Chromium: the scope filter, a developer's key copied from the page, a clinic admin's unticked scope refused next, the 403 found in the audit page by trace id")
    func console() async throws {
        try await withServer(.sqlite) { s in
            let (dev, clinic, app, _) = try await s.installedApp(scopes: ["read:patients", "read:appointments"], patients: 2)
            let screenshots = ProcessInfo.processInfo.environment["CAREGATE_SCREENSHOTS"] ?? ""
            let config: [String: Any] = [
                "base": s.base, "developerToken": dev.token, "clinicAdminToken": clinic.adminToken, "operatorToken": s.operatorToken,
                "appId": app.id, "appName": "Test app", "organization": clinic.uuid, "revokeScope": "read:appointments",
                "revokePath": "/v3/appointments?limit=5", "screenshots": screenshots,
                "versionScopes": ["read:patients", "read:appointments", "read:providers"], "newScope": "read:providers", "newPath": "/v3/providers?limit=5",
            ]
            let script = repositoryRoot.appendingPathComponent("Tests/CaregateServerTests/Fixtures/browser_console.py").path
            let argument = String(decoding: try JSONSerialization.data(withJSONObject: config), as: UTF8.self)
            let run = try await runProgram("/usr/bin/env", ["python3", script, argument])
            try #require(run.status == 0, "\(run.output)")
            let result = try #require(try JSONSerialization.jsonObject(with: Data(run.output.split(separator: "\n").last!.utf8)) as? [String: Any])

            #expect(result["scopeCounts"] as? [String: String] == [
                "count-scopes": "40", "count-categories": "10", "count-smart": "12", "count-self-service": "11",
            ])
            let serviceKey = try WebConsoleTests.catalogScopes("platform")
                .filter { ($0["credentialTypes"] as? [String] ?? []).contains("service_key") }.compactMap { $0["name"] as? String }.sorted()
            #expect(result["serviceKeyScopes"] as? [String] == serviceKey)
            #expect((result["filterURL"] as? String)?.contains("credentialType=service_key") == true)

            #expect(result["keyShown"] as? Bool == true)
            #expect(result["meStatus"] as? Int == 200, "the key copied from the page answers /v3/marketplace/me")
            #expect(result["keyListedMasked"] as? Bool == true)
            #expect(result["beforeStatus"] as? Int == 200)

            #expect(result["wasTicked"] as? Bool == true && result["stillTicked"] as? Bool == false)
            #expect(result["afterStatus"] as? Int == 403, "the unticked scope is refused on the next request")
            #expect(result["auditFound"] as? Bool == true, "\(result["auditRows"] ?? "")")
            // Re-approval after a new version: what is new is shown, ticked, approved, and usable.
            #expect(result["versionStatus"] as? Int == 201)
            #expect(result["newShown"] as? [String] == ["read:providers"])
            #expect(result["reviewDone"] as? Bool == true && result["newStatus"] as? Int == 200)
        }
    }
}
