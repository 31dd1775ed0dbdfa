/// Rows of the grant chain, as the management API and the credential cache use them.
public struct DeveloperRecord: Sendable, Equatable {
    public var id: String
    public var name: String
    public var email: String
}

public struct OrganizationRecord: Sendable, Equatable {
    public var id: String
    public var name: String
    /// `prd`, or `sbx` for a test clinic with synthetic data: a key works only in clinics of its own environment.
    public var environment: String
}

/// A management token as the operator sees it (never the token itself).
public struct ManagementTokenRecord: Sendable, Equatable {
    /// The token's non-secret id (its third `_`-separated part).
    public var id: String
    public var kind: Principal.Kind
    public var subjectID: String
    public var createdAt: Int64
    public var expiresAt: Int64?
    public var revokedAt: Int64?
}

/// Who a management token belongs to.
public struct Principal: Sendable, Equatable {
    public enum Kind: String, Sendable { case `operator`, developer, clinicAdmin = "clinic_admin" }
    public var kind: Kind
    /// The developer's or organization's id; empty for the operator.
    public var subjectID: String
}

public struct AppRecord: Sendable, Equatable {
    public var id: String
    public var developerID: String
    public var slug: String
    public var name: String
    public var surface: String
    public var liveVersionID: String
    /// The live version's declared scopes.
    public var scopes: [String]
}

public struct AppVersionRecord: Sendable, Equatable {
    public var id: String
    public var appID: String
    public var scopes: [String]
}

public struct InstallationRecord: Sendable, Equatable {
    public var id: String
    public var appID: String
    public var organizationID: String
    public var approvedVersionID: String
    public var approvedScopes: [String]
    public var status: String
}

public struct APIKeyRecord: Sendable, Equatable {
    public var id: String
    public var appID: String
    public var lookupID: String
    public var keyHash: String
    public var environment: String
    public var name: String
    public var display: String
    /// `nil`: the key inherits whatever the clinic approved (v1 behaviour).
    public var scopes: [String]?
    public var expiresAt: Int64?
    public var revokedAt: Int64?
    public var replacedBy: String?
    public var createdAt: Int64
}

/// What authenticating a presented key reads of its row (``GrantStore/presentedKey(lookupID:)``):
/// kept in the credential cache for every key in use, so no more than that.
public struct PresentedKeyRecord: Sendable, Equatable {
    public var id: String
    public var appID: String
    /// The stored keyed hash as bytes (32 of them), compared with the presented key's.
    public var digest: [UInt8]
    public var environment: String
    /// `nil`: the key inherits whatever the clinic approved.
    public var scopes: [String]?
    public var expiresAt: Int64?
    public var revokedAt: Int64?

    /// A digest no presented key's keyed hash matches: for a stored hash that is not one, and for
    /// a lookup id no key has.
    public static let unmatchable = [UInt8](repeating: 0, count: 32)
}

/// A key as the caller sees it once, at creation or rotation.
public struct IssuedKey: Sendable {
    public var record: APIKeyRecord
    public var key: String
}

extension Array where Element == String {
    /// Scope lists are stored space-separated: a scope never contains a space.
    var stored: String { joined(separator: " ") }
    init(stored: String) { self = stored.isEmpty ? [] : stored.split(separator: " ").map(String.init) }
}
