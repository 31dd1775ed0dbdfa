import Crypto
import Foundation
import SQLKit

/// API keys: issue, look up, rotate, revoke; and the key-text format.
extension GrantStore {
    static let keyColumns = "id, app_id, lookup_id, key_hash, environment, name, display, scopes, expires_at, revoked_at, replaced_by, created_at"

    func key(from row: any SQLRow) throws -> APIKeyRecord {
        APIKeyRecord(
            id: try row.decode(column: "id", as: String.self), appID: try row.decode(column: "app_id", as: String.self),
            lookupID: try row.decode(column: "lookup_id", as: String.self), keyHash: try row.decode(column: "key_hash", as: String.self),
            environment: try row.decode(column: "environment", as: String.self), name: try row.decode(column: "name", as: String.self),
            display: try row.decode(column: "display", as: String.self),
            scopes: try row.decode(column: "scopes", as: String?.self).map { [String](stored: $0) },
            expiresAt: try row.decode(column: "expires_at", as: Int64?.self), revokedAt: try row.decode(column: "revoked_at", as: Int64?.self),
            replacedBy: try row.decode(column: "replaced_by", as: String?.self), createdAt: try row.decode(column: "created_at", as: Int64.self))
    }

    /// Key text: `<prefix>_<env>_ak_<12-character lookup id><40-character secret>`, all base62 from
    /// the system CSPRNG (the secret alone is 238 bits). Only the keyed hash is stored.
    func newKey(environment: String) -> (key: String, lookupID: String, display: String) {
        let lookupID = Secrets.randomBase62(12)
        let secretPart = Secrets.randomBase62(40)
        let body = lookupID + secretPart
        let key = "\(keyPrefix)_\(environment)_ak_\(body)"
        let display = "\(keyPrefix)_\(environment)_ak_\(body.prefix(3))...\(body.suffix(3))"
        return (key, lookupID, display)
    }

    /// The lookup id of a presented key, or `nil` when it is not shaped like one of ours
    /// (`<prefix>_<prd|sbx>_ak_<52 base62>`). Byte-level: it runs on every request.
    public func lookupID(ofPresentedKey key: Substring) -> String? {
        var key = key
        return key.withUTF8 { lookupID(ofPresentedKey: UnsafeRawBufferPointer($0)) }
    }

    /// The same, of a key as the request's bytes (the direct path reads them so): no string is made
    /// but the lookup id, which is short enough to be held inline.
    public func lookupID(ofPresentedKey b: UnsafeRawBufferPointer) -> String? {
        let prefixLength = keyPrefix.utf8.count
        let bodyStart = prefixLength + 8
        guard b.count == bodyStart + 52 else { return nil }
        var prefix = keyPrefix
        let prefixMatches = prefix.withUTF8 { p in (0..<prefixLength).allSatisfy { b[$0] == p[$0] } }
        guard prefixMatches, b[prefixLength] == UInt8(ascii: "_"), b[prefixLength + 4] == UInt8(ascii: "_"),
              b[prefixLength + 5] == UInt8(ascii: "a"), b[prefixLength + 6] == UInt8(ascii: "k"), b[prefixLength + 7] == UInt8(ascii: "_")
        else { return nil }
        let env = (b[prefixLength + 1], b[prefixLength + 2], b[prefixLength + 3])
        guard env == (UInt8(ascii: "p"), UInt8(ascii: "r"), UInt8(ascii: "d")) || env == (UInt8(ascii: "s"), UInt8(ascii: "b"), UInt8(ascii: "x")) else { return nil }
        // Base62 by arithmetic: a `switch` over three ranges compiled to a call per range and
        // byte, 0.16 µs a key (perf, 2026-12-04). `| 0x20` makes an upper-case letter lower.
        for i in bodyStart..<b.count {
            let byte = b[i]
            guard byte &- UInt8(ascii: "0") < 10 || (byte | 0x20) &- UInt8(ascii: "a") < 26 else { return nil }
        }
        return String(decoding: UnsafeRawBufferPointer(rebasing: b[bodyStart..<(bodyStart + 12)]), as: UTF8.self)
    }

    public func createKey(appID: String, name: String, environment: String, scopes: [String]?, expiresAt: Int64?) async throws -> IssuedKey {
        let (text, lookupID, display) = newKey(environment: environment)
        let record = APIKeyRecord(
            id: Identifier.random("key"), appID: appID, lookupID: lookupID, keyHash: hash(text),
            environment: environment, name: name, display: display, scopes: scopes, expiresAt: expiresAt, revokedAt: nil,
            replacedBy: nil, createdAt: Clock.millis())
        try await insert(record, db: sql)
        return IssuedKey(record: record, key: text)
    }

    func insert(_ r: APIKeyRecord, db: any SQLDatabase) async throws {
        try await db.raw("""
            INSERT INTO api_keys (id, app_id, lookup_id, key_hash, prefix, environment, name, display, scopes, expires_at, created_at)
            VALUES (\(bind: r.id), \(bind: r.appID), \(bind: r.lookupID), \(bind: r.keyHash), \(bind: keyPrefix), \(bind: r.environment),
                    \(bind: r.name), \(bind: r.display), \(bind: r.scopes?.stored), \(bind: r.expiresAt), \(bind: r.createdAt))
            """).run()
    }

    public func key(id: String) async throws -> APIKeyRecord? {
        try await sql.raw("SELECT \(unsafeRaw: Self.keyColumns) FROM api_keys WHERE id = \(bind: id)").first().map(key(from:))
    }

    /// What authenticating the key a request presents needs of its row, read on a cache miss
    /// while the request waits (through ``Database/reads``). Nil when no key has this lookup id.
    public func presentedKey(lookupID: String) async throws -> PresentedKeyRecord? {
        guard let row = try await reads.raw("""
            SELECT id, app_id, key_hash, environment, scopes, expires_at, revoked_at FROM api_keys WHERE lookup_id = \(bind: lookupID)
            """).first()
        else { return nil }
        // A stored hash that is not 32 bytes of hex (never written so) matches no presented key.
        let stored = Secrets.bytes(fromHex: try row.decode(column: "key_hash", as: String.self))
        let digest = stored?.count == 32 ? stored! : PresentedKeyRecord.unmatchable
        return PresentedKeyRecord(
            id: try row.decode(column: "id", as: String.self), appID: try row.decode(column: "app_id", as: String.self), digest: digest,
            environment: try row.decode(column: "environment", as: String.self),
            scopes: try row.decode(column: "scopes", as: String?.self).map { [String](stored: $0) },
            expiresAt: try row.decode(column: "expires_at", as: Int64?.self), revokedAt: try row.decode(column: "revoked_at", as: Int64?.self))
    }

    public func keys(appID: String) async throws -> [APIKeyRecord] {
        try await sql.raw("SELECT \(unsafeRaw: Self.keyColumns) FROM api_keys WHERE app_id = \(bind: appID) ORDER BY created_at, id").all().map(key(from:))
    }

    /// A new key with the old one's name, environment and scopes; the old key keeps working
    /// until `now + grace` (never beyond its own expiry), then stops.
    /// A key that was rotated already, revoked or has expired is not rotated again (409).
    /// A new key in place of `keyID`, shown once; the old one keeps working for `graceSeconds`.
    /// With `scopes`, the new key holds exactly those (narrowing: the caller checks they are
    /// among the old key's). A key is replaced once: a second rotation is a conflict.
    public func rotate(keyID: String, graceSeconds: Int, scopes: [String]? = nil) async throws -> IssuedKey? {
        guard let old = try await key(id: keyID) else { return nil }
        if old.revokedAt != nil { throw StoreError.conflict("key \(keyID) is revoked") }
        if let replacement = old.replacedBy { throw StoreError.conflict("key \(keyID) was rotated already (replaced by \(replacement))") }
        if let expiry = old.expiresAt, expiry <= Clock.millis() { throw StoreError.conflict("key \(keyID) has expired") }
        let (text, lookupID, display) = newKey(environment: old.environment)
        let record = APIKeyRecord(
            id: Identifier.random("key"), appID: old.appID, lookupID: lookupID, keyHash: hash(text),
            environment: old.environment, name: old.name, display: display, scopes: scopes ?? old.scopes, expiresAt: old.expiresAt,
            revokedAt: nil, replacedBy: nil, createdAt: Clock.millis())
        let now = Clock.millis()
        let graceEnd = now + Int64(graceSeconds) * 1000
        let oldExpiry = min(old.expiresAt ?? .max, graceEnd)
        try await change([.key(lookupID: old.lookupID), .key(lookupID: lookupID)]) { db in
            // Checked again where it is written: of two rotations (or a rotation and a revocation)
            // at the same moment, one wins and the other is a conflict.
            let claimed = try await db.raw("""
                UPDATE api_keys SET expires_at = \(bind: oldExpiry), replaced_by = \(bind: record.id)
                WHERE id = \(bind: keyID) AND replaced_by IS NULL AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > \(bind: now))
                RETURNING id
                """).all()
            guard !claimed.isEmpty else { throw StoreError.conflict("key \(keyID) was rotated, revoked or expired meanwhile") }
            try await insert(record, db: db)
        }
        return IssuedKey(record: record, key: text)
    }

    /// Revokes a key; an unknown one changes nothing (and drops no instance's cached credentials).
    public func revoke(keyID: String) async throws {
        guard let key = try await key(id: keyID) else { return }
        try await change([.key(lookupID: key.lookupID)]) { db in
            try await db.raw("UPDATE api_keys SET revoked_at = \(bind: Clock.millis()) WHERE id = \(bind: keyID) AND revoked_at IS NULL").run()
        }
    }
}
