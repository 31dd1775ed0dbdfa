import CaregateStore
import Foundation

/// The demo clinic (a sandbox: its keys are `sbx` ones): a developer, a clinic, an installed app, two keys with different
/// scopes and synthetic data — and curl commands that show an allowed call, a 403 and `/me`.
public struct DemoSetup: Sendable {
    public var developerToken: String
    public var clinicAdminToken: String
    public var organizationID: String
    public var organizationUUID: String
    public var appID: String
    public var fullKey: String
    public var patientsOnlyKey: String

    public static let appScopes = [
        "read:patients", "read:appointments", "read:providers", "read:facilities", "read:bills", "read:encounters", "read:claims",
        "read:notes", "read:soap_notes", "read:tasks", "read:emails", "read:phone_numbers", "read:inventory", "read:products",
        "read:marketplace", "write:notes_images", "write:soap_notes", "write:tasks", "write:emails", "write:products", "write:inventory",
    ]

    /// Creates the demo records through the same stores the management API uses.
    public static func create(on server: CaregateServer, patients: Int = 25) async throws -> DemoSetup {
        let (developer, developerToken) = try await server.grants.createDeveloper(name: "Demo Developer", email: "developer@demo.example")
        let (organization, adminToken) = try await server.grants.createOrganization(name: "Demo Clinic", environment: "sbx")
        let slug = "demo-app-" + Secrets.randomHex(bytes: 3)
        let app = try await server.grants.createApp(
            developerID: developer.id, slug: slug, name: "Demo App", surface: SurfaceRegistry.defaultAppSurface, scopes: appScopes)
        _ = try await server.grants.install(appID: app.id, organizationID: organization.id, versionID: app.liveVersionID, scopes: appScopes)
        let full = try await server.grants.createKey(appID: app.id, name: "full access (inherits approvals)", environment: "sbx", scopes: nil, expiresAt: nil)
        let limited = try await server.grants.createKey(appID: app.id, name: "patients only", environment: "sbx", scopes: ["read:patients"], expiresAt: nil)
        _ = try await SampleData(store: server.clinic).generate(organization: organization.id, counts: .init(patients: patients))
        return DemoSetup(
            developerToken: developerToken, clinicAdminToken: adminToken, organizationID: organization.id,
            organizationUUID: Identifier.uuidForm(ofOrganization: organization.id), appID: app.id, fullKey: full.key, patientsOnlyKey: limited.key)
    }

    /// The commands to paste, each with what it shows.
    public func curlCommands(baseURL: String) -> [(title: String, command: String)] {
        let org = "-H \"X-Organization-Id: \(organizationUUID)\""
        return [
            ("Your app, clinic and effective scopes (no scope needed)",
             "curl -s \(baseURL)/v3/marketplace/me -H \"Authorization: Bearer \(fullKey)\" \(org)"),
            ("Allowed: list patients (read:patients)",
             "curl -s \"\(baseURL)/v3/patients?limit=2\" -H \"Authorization: Bearer \(patientsOnlyKey)\" \(org)"),
            ("Refused with 403: the patients-only key reading bills",
             "curl -s -i \(baseURL)/v3/bills -H \"Authorization: Bearer \(patientsOnlyKey)\" \(org)"),
            ("Allowed: SOAP content needs read:notes and read:soap_notes",
             "curl -s \"\(baseURL)/v3/notes?limit=1&includeSoapNote=true\" -H \"Authorization: Bearer \(fullKey)\" \(org)"),
        ]
    }
}
