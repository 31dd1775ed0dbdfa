import CaregateStore
import Crypto
import Scopes

/// API key + clinic → what the key may do there: cached, verified in constant time on
/// every request, expiry checked on every request (rotation grace ends on time).
struct CredentialResolver: Sendable {
    enum Outcome: Sendable {
        case ok(Credential)
        case invalidKey
        case notInstalled
    }

    let grants: GrantStore
    let cache: CredentialCache
    /// The surfaces an API key is used on, in the order of ``Credential/effective``.
    let catalogs: [CompiledCatalog]

    func resolve(key presented: String, organizationID: String) async throws -> Outcome {
        guard let lookupID = grants.lookupID(ofPresentedKey: presented) else { return .invalidKey }
        let presentedHash = grants.hash(presented)
        let cacheKey = CredentialCache.Key(lookupID: lookupID, organizationID: organizationID)
        if let cached = cache.get(cacheKey) {
            guard Secrets.constantTimeEquals(cached.keyHash, presentedHash) else { return .invalidKey }
            if let expiry = cached.expiresAt, expiry <= Clock.millis() { return .invalidKey }
            return .ok(cached)
        }
        let epoch = cache.epoch
        guard let key = try await grants.key(lookupID: lookupID),
              Secrets.constantTimeEquals(key.keyHash, presentedHash), key.revokedAt == nil
        else { return .invalidKey }
        if let expiry = key.expiresAt, expiry <= Clock.millis() { return .invalidKey }
        guard let app = try await grants.app(key.appID),
              let installation = try await grants.installation(appID: app.id, organizationID: organizationID)
        else { return .notInstalled }

        let effective = catalogs.map { catalog in
            let credential = Self.known(key.scopes ?? installation.approvedScopes, in: catalog)
            let granted = Self.known(installation.approvedScopes, in: catalog).intersection(Self.known(app.scopes, in: catalog))
            return catalog.effectiveSet(credential: credential, grants: granted, credentialType: .apiKey)
        }
        let names = zip(catalogs, effective).map { $0.scopeNames(in: $1) }
        let credential = Credential(
            keyID: key.id, keyHash: key.keyHash, expiresAt: key.expiresAt, appID: app.id, appSlug: app.slug,
            liveVersionID: app.liveVersionID, organizationID: organizationID, effective: effective, scopeNames: names,
            meBody: names.map { scopes in
                let data: JSONValue = [
                    "app": ["id": .string(app.id), "slug": .string(app.slug), "liveVersionId": .string(app.liveVersionID)],
                    "organization": ["id": .string(organizationID)],
                    "scopes": .array(scopes.map { .string($0) }),
                ]
                return (["code": "success", "data": data] as JSONValue).serialized()
            })
        cache.put(cacheKey, credential, ifEpoch: epoch)
        return .ok(credential)
    }

    /// The scopes of `names` that this catalog knows (v1 and v3 share keys, not every scope).
    static func known(_ names: [String], in catalog: CompiledCatalog) -> ScopeSet {
        names.reduce(ScopeSet.empty) { set, name in
            (try? catalog.resolve(names: [name])).map { set.union($0) } ?? set
        }
    }
}
