import CaregateServer
import CaregateStore
import Crypto
import Foundation
import Logging
import Testing

/// Token-signing keys at rest: with the server secret supplied from outside the database,
/// the database alone signs nothing.
@Suite struct SecretsAtRestTests {
    static let secret = "an-operator-supplied-secret-of-40-bytes!!"

    @Test("the keyed hash of keys and tokens is HMAC-SHA-256 under the server secret, for secrets shorter than, equal to and longer than a block")
    func keyedHashIsHMAC() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let logger = quietLogger
        let database = try await Database.open(.sqlite(path: directory.appendingPathComponent("hash.sqlite").path), logger: logger)
        var generator = SystemRandomNumberGenerator()
        for secretLength in [32, 63, 64, 65, 100, 200] {
            let secret = SymmetricKey(data: (0..<secretLength).map { _ in UInt8.random(in: 0...255, using: &generator) })
            let store = GrantStore(database: database, secret: secret)
            for valueLength in [0, 1, 55, 56, 62, 64, 119, 120, 300] {
                let value = String((0..<valueLength).map { _ in "abcXYZ019_é".randomElement(using: &generator)! })
                let expected = Secrets.hex(HMAC<SHA256>.authenticationCode(for: Data(value.utf8), using: secret))
                #expect(store.hash(value) == expected, "secret \(secretLength) bytes, value \(valueLength) characters")
                #expect(Secrets.constantTimeEquals(Array(HMAC<SHA256>.authenticationCode(for: Data(value.utf8), using: secret)), store.digest(value[...])))
            }
        }
        await database.shutdown()
    }

    @Test("with CAREGATE_SECRET set the stored signing keys are ciphertext; a database from before sealing is sealed in place and its tokens still verify")
    func sealedSigningKeys() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("caregate.sqlite").path
        func configure(_ options: inout ServerOptions) {
            options.database = .sqlite(path: path)
            options.secret = Self.secret
        }
        var token = ""
        var clinicUUID = ""
        try await withServer(.sqlite, configure: configure) { s in
            let (dev, clinic, app, _) = try await s.installedApp(scopes: ["read:patients"], patients: 1)
            let client = try await OAuthTests.client(s, dev: dev.token, app: app.id, scopes: ["read:patients"])
            let issued = try await OAuthTests.form(s, "grant_type=client_credentials&scope=read:patients", basic: client)
            try expectStatus(issued, 200)
            token = issued.json!.string("access_token")
            clinicUUID = clinic.uuid
            let status = try await s.status("GET", "/v3/patients", key: token, clinic: clinic)
            #expect(status == 200)
        }

        let logger = quietLogger
        let database = try await Database.open(.sqlite(path: path), logger: logger)
        func storedKeys() async throws -> [(kid: String, stored: String)] {
            try await database.sql.raw("SELECT kid, private_pem FROM signing_keys").all().map {
                (try $0.decode(column: "kid", as: String.self), try $0.decode(column: "private_pem", as: String.self))
            }
        }
        do {
            // What a backup holds: no usable key.
            let sealed = try await storedKeys()
            #expect(!sealed.isEmpty)
            for key in sealed { #expect(key.stored.hasPrefix("sealed:v1:") && !key.stored.contains("PRIVATE KEY"), "\(key.kid)") }
            // A wrong secret opens nothing.
            let wrong = OAuthStore(grants: GrantStore(
                database: database, secret: try await GrantStore.serverSecret(database: database, configured: String(repeating: "x", count: 40))))
            await #expect(throws: StoreError.self) { _ = try await wrong.allSigningKeys() }

            // A database from before sealing: the same keys in plain PEM.
            let right = OAuthStore(grants: GrantStore(database: database, secret: try await GrantStore.serverSecret(database: database, configured: Self.secret)))
            for key in try await right.allSigningKeys() {
                #expect(key.privatePEM.contains("PRIVATE KEY"))
                try await database.sql.raw("UPDATE signing_keys SET private_pem = \(bind: key.privatePEM) WHERE kid = \(bind: key.kid)").run()
            }
            let plain = try await storedKeys().allSatisfy { $0.stored.contains("PRIVATE KEY") }
            #expect(plain)
        } catch {
            await database.shutdown()
            throw error
        }
        await database.shutdown()

        try await withServer(.sqlite, configure: configure) { s in
            // The token signed before the keys were sealed still verifies.
            let reply = try await s.request("GET", "/v3/patients", token: token, organization: clinicUUID)
            #expect(reply.status == 200)
        }
        let reopened = try await Database.open(.sqlite(path: path), logger: logger)
        let resealed = try await reopened.sql.raw("SELECT private_pem FROM signing_keys").all().map { try $0.decode(column: "private_pem", as: String.self) }
        await reopened.shutdown()
        let allSealed = resealed.allSatisfy { $0.hasPrefix("sealed:v1:") && !$0.contains("PRIVATE KEY") }
        #expect(!resealed.isEmpty && allSealed)
    }
}
