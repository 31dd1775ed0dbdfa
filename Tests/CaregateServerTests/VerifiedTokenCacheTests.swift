@testable import CaregateServer
import CaregateStore
import Crypto
import Foundation
import Testing

/// The cache of tokens whose signature was checked: full, it drops its oldest token for each new
/// one. Emptied at once instead, every token in use would go back to a signature check together.
@Suite struct VerifiedTokenCacheTests {
    @Test("a full cache of verified tokens drops its oldest one for each new one, never all of them; a token issued here counts as verified")
    func dropsOldest() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let database = try await Database.open(.sqlite(path: directory.appendingPathComponent("tokens.sqlite").path), logger: quietLogger)
        let oauth = OAuthStore(grants: GrantStore(database: database, secret: SymmetricKey(size: .bits256)))
        let tokens = try await TokenService(oauth: oauth, issuer: "http://127.0.0.1", verifiedCapacity: 3)
        var issued: [String] = []
        for n in 0..<4 {
            issued.append(try await tokens.issue(clientID: "cli_\(n)", scope: "read:patients", organizationID: nil).token)
        }
        // Issued here: in the cache already, the fourth having pushed out the first.
        #expect(tokens.alreadyVerified(issued[0]) == nil)
        #expect(issued[1...].allSatisfy { tokens.alreadyVerified($0) != nil })
        // The first is checked again when it comes back, and then the second is the oldest.
        #expect(await tokens.verify(issued[0])?.client_id == "cli_0")
        #expect(tokens.alreadyVerified(issued[1]) == nil)
        #expect([issued[0], issued[2], issued[3]].allSatisfy { tokens.alreadyVerified($0) != nil })
        // What issuance put in the cache is what checking the signature reads from the token:
        // another instance (an empty cache, the same keys) verifies it.
        let other = try await TokenService(oauth: oauth, issuer: "http://127.0.0.1", verifiedCapacity: 3)
        #expect(other.alreadyVerified(issued[3]) == nil)
        let seeded = try #require(tokens.alreadyVerified(issued[3]))
        let checked = try #require(await other.verify(issued[3]))
        #expect(seeded.jti.value == checked.jti.value && seeded.client_id == checked.client_id && seeded.scope == checked.scope)
        #expect(seeded.exp.value == checked.exp.value && seeded.iat.value == checked.iat.value && seeded.aud.value == checked.aud.value)
        #expect(seeded.iss.value == checked.iss.value && seeded.sub.value == checked.sub.value && seeded.org == checked.org && seeded.fam == checked.fam)
        // A token altered after issuance is no token issued here.
        #expect(await tokens.verify(issued[3] + "x") == nil)
        await database.shutdown()
    }
}
