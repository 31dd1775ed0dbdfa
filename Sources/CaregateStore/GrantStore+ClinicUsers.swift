import Foundation
import SQLKit

/// A person who signs in for a clinic (SMART App Launch): a clinician linked to one of the
/// clinic's providers, or a patient linked to one of its patients.
public struct ClinicUserRecord: Sendable, Equatable {
    public var id: String
    public var organizationID: String
    public var username: String
    /// `clinician` or `patient`.
    public var role: String
    public var providerID: String?
    public var patientID: String?
    public var createdAt: Int64

    /// `Practitioner/<providerId>` or `Patient/<patientId>` (relative to the FHIR base).
    public var fhirUser: String {
        role == "clinician" ? "Practitioner/\(providerID ?? "")" : "Patient/\(patientID ?? "")"
    }
}

extension GrantStore {
    private static let clinicUserColumns = "id, organization_id, username, role, provider_id, patient_id, created_at"

    private func clinicUser(from row: any SQLRow) throws -> ClinicUserRecord {
        ClinicUserRecord(
            id: try row.decode(column: "id", as: String.self), organizationID: try row.decode(column: "organization_id", as: String.self),
            username: try row.decode(column: "username", as: String.self), role: try row.decode(column: "role", as: String.self),
            providerID: try row.decode(column: "provider_id", as: String?.self), patientID: try row.decode(column: "patient_id", as: String?.self),
            createdAt: try row.decode(column: "created_at", as: Int64.self))
    }

    /// A new clinic user; `passwordHash` is already the memory-hard hash (never the password).
    public func createClinicUser(
        organizationID: String, username: String, passwordHash: String, role: String, providerID: String?, patientID: String?
    ) async throws -> ClinicUserRecord {
        let user = ClinicUserRecord(
            id: Identifier.random("usr"), organizationID: organizationID, username: username, role: role, providerID: providerID, patientID: patientID,
            createdAt: Clock.millis())
        let inserted = try await sql.raw("""
            INSERT INTO clinic_users (id, organization_id, username, password_hash, role, provider_id, patient_id, created_at)
            VALUES (\(bind: user.id), \(bind: organizationID), \(bind: username), \(bind: passwordHash), \(bind: role), \(bind: providerID),
              \(bind: patientID), \(bind: user.createdAt))
            ON CONFLICT DO NOTHING RETURNING id
            """).all()
        // Usernames are unique across clinics: the sign-in page asks for nothing else.
        guard !inserted.isEmpty else { throw StoreError.conflict("the username \(username) is taken") }
        return user
    }

    /// A clinic's users, by username.
    public func clinicUsers(organizationID: String) async throws -> [ClinicUserRecord] {
        try await sql.raw("SELECT \(unsafeRaw: Self.clinicUserColumns) FROM clinic_users WHERE organization_id = \(bind: organizationID) ORDER BY username")
            .all().map(clinicUser(from:))
    }

    /// A user and its password hash, for signing in (nil when there is no such username).
    public func clinicUserForSignIn(username: String) async throws -> (user: ClinicUserRecord, passwordHash: String)? {
        guard username.utf8.count <= 64, let row = try await sql.raw("""
            SELECT \(unsafeRaw: Self.clinicUserColumns), password_hash FROM clinic_users WHERE username = \(bind: username)
            """).first() else { return nil }
        return (try clinicUser(from: row), try row.decode(column: "password_hash", as: String.self))
    }

    /// One user by id, in any clinic (nil when there is none).
    public func clinicUser(id: String) async throws -> ClinicUserRecord? {
        guard id.utf8.count <= 64 else { return nil }
        return try await sql.raw("SELECT \(unsafeRaw: Self.clinicUserColumns) FROM clinic_users WHERE id = \(bind: id)").first().map(clinicUser(from:))
    }

    /// Removes a user; a grant-chain change, so that whatever it signed in to ends everywhere.
    /// False when the clinic has no such user.
    public func deleteClinicUser(organizationID: String, id: String) async throws -> Bool {
        guard try await sql.raw("SELECT id FROM clinic_users WHERE organization_id = \(bind: organizationID) AND id = \(bind: id)").first() != nil
        else { return false }
        // Whatever the user signed in to ends with it: authorizations in progress, codes not yet
        // exchanged, and every token family (refresh and access tokens), on every instance.
        let now = Clock.millis()
        try await change([.organization(organizationID)]) { db in
            try await db.raw("DELETE FROM clinic_users WHERE organization_id = \(bind: organizationID) AND id = \(bind: id)").run()
            try await db.raw("DELETE FROM authorization_requests WHERE user_id = \(bind: id)").run()
            try await db.raw("DELETE FROM authorization_codes WHERE user_id = \(bind: id)").run()
            try await db.raw("DELETE FROM smart_launches WHERE user_id = \(bind: id)").run()
            try await db.raw("UPDATE token_families SET revoked_at = \(bind: now) WHERE user_id = \(bind: id) AND revoked_at IS NULL").run()
        }
        return true
    }
}
