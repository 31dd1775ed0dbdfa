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
            organizationID: organization,
            view: GrantView(effective: [], decisionSets: [], meBody: [], scopeHeader: [], organizationID: organization, appID: app), person: nil,
            family: family)
    }

    static func key(_ n: Int, organization: UInt8 = 1) -> CredentialCache.Key {
        CredentialCache.Key(lookupID: "lookup\(n)", organization: OrganizationBits(clientForm: "00000000-0000-0000-0000-0000000000\(String(format: "%02x", organization))")!)
    }

    @Test("the Bearer scheme is read the same from a request's bytes as from its string: any letter case, then a credential")
    func bearerScheme() {
        let cases = ["Bearer k", "bearer k", "BEARER k", "BeArEr k", "Bearer ", "Bearer", "Basic k", "Bearerk", "Bearer\tk", "", "bearer  k", "Bëarer k"]
        let expected = [true, true, true, true, false, false, false, false, false, false, true, false]
        for (text, answer) in zip(cases, expected) {
            #expect(RequestAuthenticator.hasBearerScheme(text) == answer, "\(text)")
            #expect(text.utf8.withContiguousStorageIfAvailable { RequestAuthenticator.hasBearerScheme(UnsafeRawBufferPointer($0)) } == answer, "\(text)")
        }
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

    @Test("full, a credential dropped by a change and stored again stays: the slot it left drops nothing")
    func evictionAfterInvalidation() {
        let cache = CredentialCache(capacity: 3)
        for n in 1...3 { cache.put(Self.key(n), Self.credential(app: "app_a", organization: "org_1"), ifEpoch: cache.epoch) }
        cache.invalidate([.key(lookupID: "lookup1")])
        // Its old slot is the oldest: the ring's turn comes to it as the key is stored again.
        cache.put(Self.key(1), Self.credential(app: "app_a", organization: "org_1"), ifEpoch: cache.epoch)
        #expect([1, 2, 3].allSatisfy { cache.get(Self.key($0)) != nil })
        // The next new one drops the oldest live entry, key 2, and nothing else.
        cache.put(Self.key(4), Self.credential(app: "app_a", organization: "org_1"), ifEpoch: cache.epoch)
        #expect(cache.get(Self.key(2)) == nil && [1, 3, 4].allSatisfy { cache.get(Self.key($0)) != nil })
        #expect(cache.count == 3)
    }

    static let entries: [(CredentialCache.Key, Credential)] = [
        (key(1), credential(app: "app_a", organization: "org_1")),
        (key(1, organization: 2), credential(app: "app_a", organization: "org_2")),
        (key(2), credential(app: "app_b", organization: "org_1")),
        (key(3), credential(app: "app_b", organization: "org_2", family: "fam_1")),
        (key(4), credential(app: "app_c", organization: "org_3")),
    ]

    /// Each change, and which of ``entries`` it leaves.
    static let changes: [(GrantChange, Set<Int>)] = [
        (.key(lookupID: "lookup1"), [2, 3, 4]),  // the key, in every clinic
        (.token(id: "lookup2"), [0, 1, 3, 4]),
        (.tokenFamily("fam_1"), [0, 1, 2, 4]),
        (.app("app_b"), [0, 1, 4]),
        (.installation(appID: "app_a", organizationID: "org_2"), [0, 2, 3, 4]),
        (.organization("org_1"), [1, 3, 4]),
        (.signingKeys, [0, 1, 2, 3, 4]),
        (.everything, []),
    ]

    static func held(_ cache: CredentialCache) -> Set<Int> { Set(entries.indices.filter { cache.get(entries[$0].0) != nil }) }

    @Test("a change drops exactly the credentials it touched")
    func invalidation() {
        let cache = CredentialCache()
        for (change, left) in Self.changes {
            for (key, credential) in Self.entries { cache.put(key, credential, ifEpoch: cache.epoch) }
            #expect(Self.held(cache) == [0, 1, 2, 3, 4])
            cache.invalidate([change])
            #expect(Self.held(cache) == left, "\(change)")
        }
    }

    @Test("a resolution begun before a change is stored only if the change would not have dropped it")
    func resolutionUnderWay() {
        for (change, left) in Self.changes {
            let cache = CredentialCache()
            let started = cache.epoch
            cache.invalidate([change])
            for (key, credential) in Self.entries { cache.put(key, credential, ifEpoch: started) }
            #expect(Self.held(cache) == left, "\(change)")
            // The key row a resolution reads is held to the same rule: only a change to that key drops it.
            cache.putKeyLookup("lookup1", CredentialCache.KeyLookup(key: nil), ifEpoch: started)
            #expect((cache.keyLookup("lookup1") == nil) == [.key(lookupID: "lookup1"), .everything].contains(change), "\(change)")
        }
        // Among many changes, one that touched the credential is found; past what the cache
        // remembers, nothing begun that early is stored.
        let cache = CredentialCache()
        let started = cache.epoch
        cache.invalidate([.app("app_b")])
        for n in 1..<CredentialCache.remembered { cache.invalidate([.key(lookupID: "other\(n)")]) }
        cache.put(Self.entries[2].0, Self.entries[2].1, ifEpoch: started)
        cache.put(Self.entries[0].0, Self.entries[0].1, ifEpoch: started)
        #expect(Self.held(cache) == [0])
        cache.invalidate([.key(lookupID: "one more")])
        cache.put(Self.entries[4].0, Self.entries[4].1, ifEpoch: started)
        #expect(cache.get(Self.entries[4].0) == nil)
        cache.put(Self.entries[4].0, Self.entries[4].1, ifEpoch: cache.epoch)
        #expect(cache.get(Self.entries[4].0) != nil)
    }
}
