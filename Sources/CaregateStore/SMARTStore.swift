import Foundation
import SQLKit

/// What a SMART authorization knows beside its scopes: the patient and encounter in
/// context, whether the app should show a patient banner, the person's FHIR identity and the
/// OpenID Connect `nonce`. Stored with codes and token families as JSON.
public struct LaunchContext: Codable, Sendable, Equatable {
    public var patient: String?
    public var encounter: String?
    public var needPatientBanner: Bool?
    /// `Practitioner/…` or `Patient/…`, relative to the FHIR base.
    public var fhirUser: String?
    public var nonce: String?

    public init(patient: String? = nil, encounter: String? = nil, needPatientBanner: Bool? = nil, fhirUser: String? = nil, nonce: String? = nil) {
        self.patient = patient
        self.encounter = encounter
        self.needPatientBanner = needPatientBanner
        self.fhirUser = fhirUser
        self.nonce = nonce
    }

    var stored: String { String(decoding: (try? JSONEncoder().encode(self)) ?? Data("{}".utf8), as: UTF8.self) }
    init(stored: String) { self = (try? JSONDecoder().decode(Self.self, from: Data(stored.utf8))) ?? LaunchContext() }
}

/// An EHR launch (`POST /manage/launches`), as the authorization endpoint finds it.
public struct LaunchRecord: Sendable, Equatable {
    public init(clientID: String, userID: String, organizationID: String, patientID: String?, encounterID: String?, needPatientBanner: Bool) {
        self.clientID = clientID
        self.userID = userID
        self.organizationID = organizationID
        self.patientID = patientID
        self.encounterID = encounterID
        self.needPatientBanner = needPatientBanner
    }

    public var clientID: String
    public var userID: String
    public var organizationID: String
    public var patientID: String?
    public var encounterID: String?
    public var needPatientBanner: Bool
}

/// An authorization in progress (sign-in → patient picker → consent): the validated request
/// as the server encoded it, and what the pages have settled so far.
public struct AuthorizationRequestRecord: Sendable, Equatable {
    public var csrf: String
    public var browserHash: String
    public var request: String
    public var userID: String?
    public var patientID: String?
}

/// An authorization code, once redeemed by its client.
public struct AuthorizationCodeRecord: Sendable, Equatable {
    public var clientID: String
    public var redirectURI: String
    public var codeChallenge: String
    public var userID: String
    public var organizationID: String
    public var scope: [String]
    public var context: LaunchContext
    /// The token family the redemption opens (revoked if the code is presented again).
    public var familyID: String
}

/// The tokens one authorization issued: every refresh token and access token of a family
/// ends when the family is revoked.
public struct TokenFamilyRecord: Sendable, Equatable {
    public init(id: String, clientID: String, userID: String, organizationID: String, scope: [String], context: LaunchContext, revokedAt: Int64?) {
        self.id = id
        self.clientID = clientID
        self.userID = userID
        self.organizationID = organizationID
        self.scope = scope
        self.context = context
        self.revokedAt = revokedAt
    }

    public var id: String
    public var clientID: String
    public var userID: String
    public var organizationID: String
    public var scope: [String]
    public var context: LaunchContext
    public var revokedAt: Int64?
}

/// SMART App Launch state: launches, authorizations in progress, codes, token families with
/// rotating refresh tokens, and failed sign-ins. Every secret handle (launch, request id,
/// code, refresh token) is stored as its keyed hash only; every "use once" is one
/// conditional UPDATE, so two instances racing on the same handle cannot both win.
public struct SMARTStore: Sendable {
    public let grants: GrantStore
    public init(grants: GrantStore) { self.grants = grants }
    var sql: any SQLDatabase { grants.database.sql }
    /// For the reads a request waits for (``Database/reads``).
    var reads: any SQLDatabase { grants.database.reads }

    /// A URL-safe random handle (base62: nothing for a client or a test kit to mangle).
    static func handle() -> String { Secrets.randomBase62(43) }

    // MARK: Launches

    public static let launchLifetime: Int64 = 5 * 60 * 1000

    /// A launch for one client and user; the value is returned once.
    public func createLaunch(_ launch: LaunchRecord) async throws -> String {
        let value = Self.handle()
        let now = Clock.millis()
        try await sql.raw("""
            INSERT INTO smart_launches (id_hash, client_id, user_id, organization_id, patient_id, encounter_id, need_patient_banner, created_at, expires_at)
            VALUES (\(bind: grants.hash(value)), \(bind: launch.clientID), \(bind: launch.userID), \(bind: launch.organizationID), \(bind: launch.patientID),
                    \(bind: launch.encounterID), \(bind: launch.needPatientBanner ? 1 : 0), \(bind: now), \(bind: now + Self.launchLifetime))
            """).run()
        return value
    }

    /// Takes a launch for `clientID`: nil when it is unknown, expired, already taken or another client's.
    public func takeLaunch(_ value: String, clientID: String) async throws -> LaunchRecord? {
        guard value.utf8.count <= 128 else { return nil }
        let now = Clock.millis()
        let row = try await sql.raw("""
            UPDATE smart_launches SET used_at = \(bind: now)
            WHERE id_hash = \(bind: grants.hash(value)) AND client_id = \(bind: clientID) AND used_at IS NULL AND expires_at > \(bind: now)
            RETURNING client_id, user_id, organization_id, patient_id, encounter_id, need_patient_banner
            """).first()
        return try row.map { row in
            LaunchRecord(
                clientID: try row.decode(column: "client_id", as: String.self), userID: try row.decode(column: "user_id", as: String.self),
                organizationID: try row.decode(column: "organization_id", as: String.self),
                patientID: try row.decode(column: "patient_id", as: String?.self), encounterID: try row.decode(column: "encounter_id", as: String?.self),
                needPatientBanner: try row.decode(column: "need_patient_banner", as: Int64.self) != 0)
        }
    }

    // MARK: Authorizations in progress

    public static let requestLifetime: Int64 = 10 * 60 * 1000

    /// Stores a validated request; returns its id (carried by the pages' forms) and CSRF token.
    public func createAuthorizationRequest(request: String, browser: String) async throws -> (id: String, csrf: String) {
        let id = Self.handle()
        let csrf = Secrets.randomHex(bytes: 16)
        let now = Clock.millis()
        try await sql.raw("DELETE FROM authorization_requests WHERE expires_at < \(bind: now)").run()
        try await sql.raw("""
            INSERT INTO authorization_requests (id_hash, browser_hash, csrf, request, created_at, expires_at)
            VALUES (\(bind: grants.hash(id)), \(bind: grants.hash(browser)), \(bind: csrf), \(bind: request), \(bind: now), \(bind: now + Self.requestLifetime))
            """).run()
        return (id, csrf)
    }

    /// A request in progress that has not expired.
    public func authorizationRequest(id: String) async throws -> AuthorizationRequestRecord? {
        guard id.utf8.count <= 128 else { return nil }
        let row = try await sql.raw("""
            SELECT csrf, browser_hash, request, user_id, patient_id FROM authorization_requests
            WHERE id_hash = \(bind: grants.hash(id)) AND expires_at > \(bind: Clock.millis())
            """).first()
        return try row.map { row in
            AuthorizationRequestRecord(
                csrf: try row.decode(column: "csrf", as: String.self), browserHash: try row.decode(column: "browser_hash", as: String.self),
                request: try row.decode(column: "request", as: String.self), userID: try row.decode(column: "user_id", as: String?.self),
                patientID: try row.decode(column: "patient_id", as: String?.self))
        }
    }

    /// Records who signed in, or which patient they picked.
    public func updateAuthorizationRequest(id: String, userID: String? = nil, patientID: String? = nil) async throws {
        let hash = grants.hash(id)
        if let userID { try await sql.raw("UPDATE authorization_requests SET user_id = \(bind: userID) WHERE id_hash = \(bind: hash)").run() }
        if let patientID { try await sql.raw("UPDATE authorization_requests SET patient_id = \(bind: patientID) WHERE id_hash = \(bind: hash)").run() }
    }

    /// Ends a request (answered, one way or the other): false when it was already ended.
    public func endAuthorizationRequest(id: String) async throws -> Bool {
        try await !sql.raw("DELETE FROM authorization_requests WHERE id_hash = \(bind: grants.hash(id)) RETURNING id_hash").all().isEmpty
    }

    // MARK: Codes

    public static let codeLifetime: Int64 = 60 * 1000

    /// A code for the client, bound to the redirect URI, the PKCE challenge, the user and the context.
    public func createCode(
        clientID: String, redirectURI: String, codeChallenge: String, userID: String, organizationID: String, scope: [String], context: LaunchContext
    ) async throws -> String {
        let code = Self.handle()
        let now = Clock.millis()
        try await sql.raw("DELETE FROM authorization_codes WHERE expires_at < \(bind: now - 3_600_000)").run()
        try await sql.raw("""
            INSERT INTO authorization_codes (code_hash, client_id, redirect_uri, code_challenge, user_id, organization_id, scope, context, expires_at)
            VALUES (\(bind: grants.hash(code)), \(bind: clientID), \(bind: redirectURI), \(bind: codeChallenge), \(bind: userID), \(bind: organizationID),
                    \(bind: scope.stored), \(bind: context.stored), \(bind: now + Self.codeLifetime))
            """).run()
        return code
    }

    public enum Redemption: Sendable, Equatable {
        case redeemed(AuthorizationCodeRecord)
        /// Presented before: the family its first use opened is revoked.
        case replayed
        /// Unknown, expired, or another client's.
        case invalid
    }

    /// Redeems a code for `clientID`, once: any later presentation revokes what the first issued.
    public func redeemCode(_ code: String, clientID: String) async throws -> Redemption {
        guard code.utf8.count <= 128 else { return .invalid }
        let hash = grants.hash(code)
        let now = Clock.millis()
        let familyID = Identifier.random("fam")
        if let row = try await sql.raw("""
            UPDATE authorization_codes SET used_at = \(bind: now), family_id = \(bind: familyID)
            WHERE code_hash = \(bind: hash) AND client_id = \(bind: clientID) AND used_at IS NULL AND expires_at > \(bind: now)
            RETURNING client_id, redirect_uri, code_challenge, user_id, organization_id, scope, context
            """).first() {
            return .redeemed(AuthorizationCodeRecord(
                clientID: try row.decode(column: "client_id", as: String.self), redirectURI: try row.decode(column: "redirect_uri", as: String.self),
                codeChallenge: try row.decode(column: "code_challenge", as: String.self), userID: try row.decode(column: "user_id", as: String.self),
                organizationID: try row.decode(column: "organization_id", as: String.self),
                scope: [String](stored: try row.decode(column: "scope", as: String.self)),
                context: LaunchContext(stored: try row.decode(column: "context", as: String.self)), familyID: familyID))
        }
        guard let used = try await sql.raw("""
            SELECT family_id FROM authorization_codes WHERE code_hash = \(bind: hash) AND client_id = \(bind: clientID) AND used_at IS NOT NULL
            """).first() else { return .invalid }
        if let family = try used.decode(column: "family_id", as: String?.self) { try await revokeFamily(family) }
        return .replayed
    }

    // MARK: Token families and refresh tokens

    /// Opens the family of tokens one authorization issues: false when it was revoked first
    /// (the code was presented again between its redemption and now).
    public func createFamily(_ family: TokenFamilyRecord) async throws -> Bool {
        try await sql.raw("""
            INSERT INTO token_families (id, client_id, user_id, organization_id, scope, context, created_at)
            VALUES (\(bind: family.id), \(bind: family.clientID), \(bind: family.userID), \(bind: family.organizationID), \(bind: family.scope.stored),
                    \(bind: family.context.stored), \(bind: Clock.millis()))
            ON CONFLICT (id) DO NOTHING
            """).run()
        return try await isFamilyActive(family.id)
    }

    public func family(_ id: String) async throws -> TokenFamilyRecord? {
        guard id.utf8.count <= 64 else { return nil }
        let row = try await reads.raw("""
            SELECT id, client_id, user_id, organization_id, scope, context, revoked_at FROM token_families WHERE id = \(bind: id)
            """).first()
        return try row.map(Self.family(from:))
    }

    static func family(from row: any SQLRow) throws -> TokenFamilyRecord {
        TokenFamilyRecord(
            id: try row.decode(column: "id", as: String.self), clientID: try row.decode(column: "client_id", as: String.self),
            userID: try row.decode(column: "user_id", as: String.self), organizationID: try row.decode(column: "organization_id", as: String.self),
            scope: [String](stored: try row.decode(column: "scope", as: String.self)),
            context: LaunchContext(stored: try row.decode(column: "context", as: String.self)),
            revokedAt: try row.decode(column: "revoked_at", as: Int64?.self))
    }

    /// Ends a family: its refresh tokens and its access tokens, on every instance. A family not
    /// opened yet is recorded as revoked, so that opening it later fails.
    public func revokeFamily(_ id: String) async throws {
        let now = Clock.millis()
        try await grants.change([.tokenFamily(id)]) { db in
            try await db.raw("""
                INSERT INTO token_families (id, client_id, user_id, organization_id, scope, context, created_at, revoked_at)
                VALUES (\(bind: id), '', '', '', '', '{}', \(bind: now), \(bind: now))
                ON CONFLICT (id) DO UPDATE SET revoked_at = \(bind: now) WHERE token_families.revoked_at IS NULL
                """).run()
        }
    }

    /// A new refresh token of the family, carrying `scope`; returned once.
    public func createRefreshToken(familyID: String, scope: [String], lifetime: Int64) async throws -> String {
        let token = "rt_" + Self.handle()
        let now = Clock.millis()
        try await sql.raw("""
            INSERT INTO refresh_tokens (token_hash, family_id, scope, created_at, expires_at)
            VALUES (\(bind: grants.hash(token)), \(bind: familyID), \(bind: scope.stored), \(bind: now), \(bind: now + lifetime))
            """).run()
        return token
    }

    public enum RefreshUse: Sendable, Equatable {
        /// The token was taken: issue the next one of `family` with at most `scope`.
        case taken(family: TokenFamilyRecord, scope: [String])
        /// Used before (or concurrently): the family is now revoked.
        case reused
        /// Unknown, expired, revoked, or another client's.
        case invalid
    }

    /// Takes a refresh token for `clientID`: once. A second presentation revokes its family.
    /// `accept` sees the family and the token's scopes before the token is taken: what it
    /// throws refuses the request and leaves the token usable.
    public func takeRefreshToken(
        _ token: String, clientID: String, accept: (TokenFamilyRecord, [String]) throws -> Void = { _, _ in }
    ) async throws -> RefreshUse {
        guard token.utf8.count <= 128 else { return .invalid }
        let hash = grants.hash(token)
        let now = Clock.millis()
        guard let row = try await sql.raw("""
            SELECT r.scope AS token_scope, r.used_at, r.expires_at, f.id, f.client_id, f.user_id, f.organization_id, f.scope, f.context, f.revoked_at
            FROM refresh_tokens r JOIN token_families f ON f.id = r.family_id WHERE r.token_hash = \(bind: hash)
            """).first() else { return .invalid }
        let family = try Self.family(from: row)
        // Another client's token is not its business: refused, and not counted as a reuse.
        guard family.clientID == clientID, family.revokedAt == nil else { return .invalid }
        if try row.decode(column: "used_at", as: Int64?.self) != nil {
            try await revokeFamily(family.id)
            return .reused
        }
        guard try row.decode(column: "expires_at", as: Int64.self) > now else { return .invalid }
        let scope = [String](stored: try row.decode(column: "token_scope", as: String.self))
        try accept(family, scope)
        let taken = try await sql.raw("""
            UPDATE refresh_tokens SET used_at = \(bind: now) WHERE token_hash = \(bind: hash) AND used_at IS NULL RETURNING token_hash
            """).all()
        guard !taken.isEmpty else {
            try await revokeFamily(family.id)
            return .reused
        }
        return .taken(family: family, scope: scope)
    }

    /// Ends the family of a refresh token the client holds (RFC 7009): false when it is not one.
    public func revokeRefreshToken(_ token: String, clientID: String) async throws -> Bool {
        guard token.hasPrefix("rt_"), token.utf8.count <= 128 else { return false }
        guard let row = try await sql.raw("""
            SELECT f.id FROM refresh_tokens r JOIN token_families f ON f.id = r.family_id
            WHERE r.token_hash = \(bind: grants.hash(token)) AND f.client_id = \(bind: clientID)
            """).first() else { return false }
        try await revokeFamily(try row.decode(column: "id", as: String.self))
        return true
    }

    /// Whether a family still stands (its access tokens are good until they expire).
    public func isFamilyActive(_ id: String) async throws -> Bool {
        try await family(id).map { $0.revokedAt == nil } ?? false
    }

    // MARK: Housekeeping

    /// Deletes what can no longer be used (run with the audit retention): launches and codes an
    /// hour past expiry, expired authorizations in progress and refresh tokens, failures a day
    /// old that lock nothing, and families with no refresh token left whose access tokens have
    /// all expired (a missing family counts as revoked, so nothing it issued comes back).
    public func prune() async throws {
        let now = Clock.millis()
        let hour: Int64 = 3_600_000
        try await sql.raw("DELETE FROM smart_launches WHERE expires_at < \(bind: now - hour)").run()
        try await sql.raw("DELETE FROM authorization_requests WHERE expires_at < \(bind: now)").run()
        try await sql.raw("DELETE FROM authorization_codes WHERE expires_at < \(bind: now - hour)").run()
        try await sql.raw("DELETE FROM refresh_tokens WHERE expires_at < \(bind: now)").run()
        try await sql.raw("""
            DELETE FROM sign_in_failures WHERE first_at < \(bind: now - 24 * hour) AND (locked_until IS NULL OR locked_until < \(bind: now))
            """).run()
        try await sql.raw("""
            DELETE FROM token_families WHERE created_at < \(bind: now - 2 * hour)
              AND NOT EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.family_id = token_families.id)
            """).run()
    }

    // MARK: Failed sign-ins

    /// Failed sign-ins for a username (known or not) and, past the limit, until when it is locked.
    public struct SignInFailures: Sendable, Equatable {
        public var failures: Int
        public var lockedUntil: Int64?
    }

    public func signInFailures(username: String) async throws -> SignInFailures {
        let row = try await sql.raw("""
            SELECT failures, locked_until FROM sign_in_failures WHERE username_hash = \(bind: grants.hash("sign-in:" + username))
            """).first()
        guard let row else { return SignInFailures(failures: 0, lockedUntil: nil) }
        return SignInFailures(
            failures: Int(try row.decode(column: "failures", as: Int64.self)), lockedUntil: try row.decode(column: "locked_until", as: Int64?.self))
    }

    /// Counts a failure in a window of `window` ms; at `limit` failures the username is locked for `lockFor` ms.
    public func recordSignInFailure(username: String, window: Int64, limit: Int, lockFor: Int64) async throws -> SignInFailures {
        let hash = grants.hash("sign-in:" + username)
        let now = Clock.millis()
        return try await grants.database.transaction { db in
            let row = try await db.raw("SELECT failures, first_at, locked_until FROM sign_in_failures WHERE username_hash = \(bind: hash)").first()
            var failures: Int64 = 1
            var firstAt = now
            if let row, try row.decode(column: "first_at", as: Int64.self) > now - window
                || (try row.decode(column: "locked_until", as: Int64?.self) ?? 0) > now {
                failures = try row.decode(column: "failures", as: Int64.self) + 1
                firstAt = try row.decode(column: "first_at", as: Int64.self)
            }
            let lockedUntil: Int64? = failures >= Int64(limit) ? now + lockFor : nil
            if row == nil {
                try await db.raw("""
                    INSERT INTO sign_in_failures (username_hash, failures, first_at, locked_until) VALUES (\(bind: hash), \(bind: failures), \(bind: firstAt), \(bind: lockedUntil))
                    """).run()
            } else {
                try await db.raw("""
                    UPDATE sign_in_failures SET failures = \(bind: failures), first_at = \(bind: firstAt), locked_until = \(bind: lockedUntil)
                    WHERE username_hash = \(bind: hash)
                    """).run()
            }
            return SignInFailures(failures: Int(failures), lockedUntil: lockedUntil)
        }
    }

    public func clearSignInFailures(username: String) async throws {
        try await sql.raw("DELETE FROM sign_in_failures WHERE username_hash = \(bind: grants.hash("sign-in:" + username))").run()
    }
}
