import CaregateStore
// The cache's eviction and invalidation are checked on the cache itself: the server tests see
// only their effect (MultiInstanceTests.granular).
@testable import CaregateServer
import Foundation
import Testing

@Suite struct CredentialCacheTests {
    static func credential(app: String, organization: String, family: String? = nil) -> Credential {
        Credential(
            keyID: "key_test", type: .apiKey, keyDigest: [], expiresAt: nil, appID: app, appSlug: app, liveVersionID: "apv_test",
            organizationID: organization, effective: [], decisionSets: [], person: nil, family: family, meBody: [], scopeHeader: [])
    }

    static func key(_ n: Int, organization: UInt8 = 1) -> CredentialCache.Key {
        CredentialCache.Key(lookupID: "lookup\(n)", organization: OrganizationBits(clientForm: "00000000-0000-0000-0000-0000000000\(String(format: "%02x", organization))")!)
    }

    @Test("full, the cache drops its oldest credential for each new one, never everything")
    func eviction() {
        let cache = CredentialCache(capacity: 3)
        for n in 1...3 { cache.put(Self.key(n), Self.credential(app: "app_a", organization: "org_1"), ifEpoch: cache.epoch) }
        // Replacing an entry takes no new place.
        cache.put(Self.key(2), Self.credential(app: "app_a", organization: "org_1"), ifEpoch: cache.epoch)
        #expect(cache.count == 3)
        cache.put(Self.key(4), Self.credential(app: "app_a", organization: "org_1"), ifEpoch: cache.epoch)
        #expect(cache.count == 3)
        #expect(cache.get(Self.key(1)) == nil)
        #expect([2, 3, 4].allSatisfy { cache.get(Self.key($0)) != nil })
        for n in 5...10 { cache.put(Self.key(n), Self.credential(app: "app_a", organization: "org_1"), ifEpoch: cache.epoch) }
        #expect(cache.count == 3 && [8, 9, 10].allSatisfy { cache.get(Self.key($0)) != nil })
    }

    @Test("a change drops exactly the credentials it touched; a resolution begun before it is not stored")
    func invalidation() {
        let cache = CredentialCache()
        let entries: [(CredentialCache.Key, Credential)] = [
            (Self.key(1), Self.credential(app: "app_a", organization: "org_1")),
            (Self.key(1, organization: 2), Self.credential(app: "app_a", organization: "org_2")),
            (Self.key(2), Self.credential(app: "app_b", organization: "org_1")),
            (Self.key(3), Self.credential(app: "app_b", organization: "org_2", family: "fam_1")),
            (Self.key(4), Self.credential(app: "app_c", organization: "org_3")),
        ]
        func fill() { for (key, credential) in entries { cache.put(key, credential, ifEpoch: cache.epoch) } }
        func held() -> Set<Int> { Set(entries.indices.filter { cache.get(entries[$0].0) != nil }) }
        for (change, left) in [
            (GrantChange.key(lookupID: "lookup1"), Set([2, 3, 4])),  // the key, in every clinic
            (.token(id: "lookup2"), [0, 1, 3, 4]),
            (.tokenFamily("fam_1"), [0, 1, 2, 4]),
            (.app("app_b"), [0, 1, 4]),
            (.installation(appID: "app_a", organizationID: "org_2"), [0, 2, 3, 4]),
            (.organization("org_1"), [1, 3, 4]),
            (.signingKeys, [0, 1, 2, 3, 4]),
            (.everything, []),
        ] {
            fill()
            #expect(held() == [0, 1, 2, 3, 4])
            let epoch = cache.epoch
            cache.invalidate([change])
            #expect(held() == left, "\(change)")
            // Resolved from what the database said before the change: not kept.
            cache.put(Self.key(9), Self.credential(app: "app_z", organization: "org_9"), ifEpoch: epoch)
            #expect(cache.get(Self.key(9)) == nil)
        }
    }
}
