import CaregateStore
import Crypto
import NIOCore
import Scopes

/// API key or access token + clinic → what the credential may do there: cached, verified in
/// constant time on every request, expiry checked on every request (rotation grace ends on time).
struct CredentialResolver: Sendable {
    enum Outcome: Sendable {
        case ok(Credential)
        case invalidKey
        case notInstalled
        /// The credential does not name a clinic and the request did not either.
        case organizationRequired
        /// `X-Organization-Id` is not an organization id in either accepted form.
        case invalidOrganization
    }

    let grants: GrantStore
    let oauth: OAuthStore
    let smart: SMARTStore
    let tokens: TokenService
    let cache: CredentialCache
    /// Every surface, in the order of ``Credential/effective``.
    let registry: SurfaceRegistry

    /// `organizationHeader` is the caller's `X-Organization-Id` as sent; it may be absent only
    /// for an access token whose client is bound to a clinic. A cached API key costs a parse
    /// of the header (no allocation), one keyed hash and one dictionary lookup.
    func resolve(key presented: Substring, organizationHeader: String?) async throws -> Outcome {
        guard let lookupID = grants.lookupID(ofPresentedKey: presented) else {
            return try await resolve(token: String(presented), organizationHeader: organizationHeader)
        }
        guard let organizationHeader else { return .organizationRequired }
        guard let organization = OrganizationBits(clientForm: organizationHeader) else { return .invalidOrganization }
        let presentedDigest = grants.digest(presented)
        let cacheKey = CredentialCache.Key(lookupID: lookupID, organization: organization)
        if let cached = cache.get(cacheKey) { return Self.isValid(cached, presentedDigest) ? .ok(cached) : .invalidKey }
        let organizationID = organization.id
        let epoch = cache.epoch
        // The key row by lookup id, found or not, is cached too: an unknown id then costs what a
        // wrong secret for a known one does (a lookup and a constant-time comparison), and
        // repeating it costs no database query.
        let lookup: CredentialCache.KeyLookup
        if let known = cache.keyLookup(lookupID) {
            lookup = known
        } else {
            lookup = CredentialCache.KeyLookup(key: try await grants.presentedKey(lookupID: lookupID))
            cache.putKeyLookup(lookupID, lookup, ifEpoch: epoch)
        }
        guard Secrets.constantTimeEquals(lookup.digest, presentedDigest), let key = lookup.key, key.revokedAt == nil
        else { return .invalidKey }
        if let expiry = key.expiresAt, expiry <= Clock.millis() { return .invalidKey }
        // A sandbox key never reaches a production clinic (nor the reverse): answered as a clinic without the app.
        guard let grant = try await installationGrant(appID: key.appID, organizationID: organizationID, epoch: epoch),
              grant.environment == key.environment
        else { return .notInstalled }
        let scopes = key.scopes ?? grant.installation.approvedScopes
        let view = grant.view(scopes: scopes, type: .apiKey) { makeView(grant, credentialScopes: scopes, type: .apiKey) }
        // The installation's string for the clinic (found by this very id): every credential of the
        // installation then shares one, which the audit writer compares by identity, not by bytes.
        let credential = Credential(
            keyID: key.id, type: .apiKey, keyDigest: lookup.digest, expiresAt: key.expiresAt, app: grant.app,
            organizationID: grant.installation.organizationID, view: view)
        cache.put(cacheKey, credential, ifEpoch: epoch)
        return .ok(credential)
    }

    /// The credential when it is cached and valid, without waiting for anything: nil for
    /// anything else (unknown, not cached yet, invalid, expired), which ``resolve(key:organizationHeader:)``
    /// then answers. The direct gateway path (``DirectForwarding``) asks this on its event loop,
    /// with the credential and `X-Organization-Id` as bytes: an API key's costs no string but its
    /// lookup id's, held inline.
    func cached(presented: UnsafeRawBufferPointer, organization organizationHeader: UnsafeRawBufferPointer?) -> Credential? {
        if let lookupID = grants.lookupID(ofPresentedKey: presented) {
            guard let organizationHeader, let organization = OrganizationBits(clientForm: organizationHeader),
                  let cached = cache.get(CredentialCache.Key(lookupID: lookupID, organization: organization)),
                  Self.isValid(cached, grants.digest(presented))
            else { return nil }
            return cached
        }
        var requested: OrganizationBits?
        if let organizationHeader {
            guard let bits = OrganizationBits(clientForm: organizationHeader) else { return nil }
            requested = bits
        }
        guard let claims = tokens.alreadyVerified(String(decoding: presented, as: UTF8.self)), case .clinic(let organization) = Self.clinic(of: claims, requested: requested)
        else { return nil }
        return cache.get(CredentialCache.Key(lookupID: claims.jti.value, organization: organization))
    }

    /// A cached API key presented with its secret, not expired (rotation grace ends on time).
    private static func isValid(_ cached: Credential, _ presentedDigest: SHA256Digest) -> Bool {
        guard let stored = cached.keyDigest, Secrets.constantTimeEquals(stored, presentedDigest) else { return false }
        if let expiry = cached.expiresAt, expiry <= Clock.millis() { return false }
        return true
    }

    private enum TokenClinic {
        case clinic(OrganizationBits)
        case refused(Outcome)
    }

    /// The clinic an access token acts for: the one it is bound to, or the one the request
    /// names (`requested`, its `X-Organization-Id` already read).
    private static func clinic(of claims: AccessTokenClaims, requested: OrganizationBits?) -> TokenClinic {
        var bound: OrganizationBits?
        if let org = claims.org {
            guard let bits = OrganizationBits(clientForm: org) else { return .refused(.invalidKey) }
            bound = bits
        }
        if let bound, let requested, bound != requested { return .refused(.notInstalled) }
        guard let organization = requested ?? bound else { return .refused(.organizationRequired) }
        return .clinic(organization)
    }

    /// The app's installation in a clinic with what every credential there shares, cached
    /// until a change touches the app, the installation or the clinic; nil when the app is not
    /// installed there.
    func installationGrant(appID: String, organizationID: String, epoch: UInt64) async throws -> InstallationGrant? {
        let key = InstallationGrant.Key(appID: appID, organizationID: organizationID)
        if let known = cache.installationGrant(key) { return known }
        guard let app = try await grants.app(appID), let installation = try await grants.installation(appID: appID, organizationID: organizationID),
              let organization = try await grants.organization(organizationID)
        else { return nil }
        let grant = InstallationGrant(app: app, installation: installation, environment: organization.environment, declared: try await declaredInEffect(app))
        cache.putInstallationGrant(key, grant, ifEpoch: epoch)
        return grant
    }

    /// An OAuth access token: verified (signature, type, issuer, audience, expiry), not revoked,
    /// its client active; effective = the token's scopes ∩ the clinic's grants ∩ declared.
    func resolve(token: String, organizationHeader: String?) async throws -> Outcome {
        var requested: OrganizationBits?
        if let organizationHeader {
            guard let bits = OrganizationBits(clientForm: organizationHeader) else { return .invalidOrganization }
            requested = bits
        }
        guard let claims = await tokens.verify(token) else { return .invalidKey }
        let organization: OrganizationBits
        switch Self.clinic(of: claims, requested: requested) {
        case .clinic(let bits): organization = bits
        case .refused(let outcome): return outcome
        }
        let organizationID = organization.id
        let cacheKey = CredentialCache.Key(lookupID: claims.jti.value, organization: organization)
        if let cached = cache.get(cacheKey) { return .ok(cached) }
        let epoch = cache.epoch
        guard try await !oauth.isRevoked(jti: claims.jti.value), let client = try await oauth.client(claims.client_id), client.revokedAt == nil
        else { return .invalidKey }
        // A SMART launch token lives as long as its authorization's family (revoked on a refresh
        // token's reuse or revocation, a replayed code, or the person's removal).
        if let family = claims.fam, try await !smart.isFamilyActive(family) { return .invalidKey }
        guard let grant = try await installationGrant(appID: client.appID, organizationID: organizationID, epoch: epoch) else {
            return try await grants.app(client.appID) == nil ? .invalidKey : .notInstalled
        }
        let type = CredentialType(rawValue: client.credentialType) ?? .oauth2
        let scopes = claims.scope.split(separator: " ").map(String.init)
        let holdsPatientScopes = scopes.contains { $0.hasPrefix("patient/") }
        let person = claims.patient != nil || claims.fhirUser != nil || holdsPatientScopes
            ? LaunchPerson(patient: claims.patient.map(FHIRID.fhir), fhirUser: claims.fhirUser.map(FHIRID.fhir), holdsPatientScopes: holdsPatientScopes)
            : nil
        // Who the token acts for changes what it reaches: only a token for no one shares a view.
        let view = person == nil
            ? grant.view(scopes: scopes, type: type) { makeView(grant, credentialScopes: scopes, type: type) }
            : makeView(grant, credentialScopes: scopes, type: type, person: person)
        let credential = Credential(
            keyID: client.clientID, type: type, keyDigest: [], expiresAt: Int64(claims.exp.value.timeIntervalSince1970 * 1000), app: grant.app,
            organizationID: grant.installation.organizationID, view: view, person: person, family: claims.fam)
        cache.put(cacheKey, credential, ifEpoch: epoch)
        return .ok(credential)
    }

    /// The app's declared scopes that are in effect: on a reviewed surface (the platform), a
    /// scope that is not self-service counts only once an operator approved it.
    func declaredInEffect(_ app: AppRecord) async throws -> [String] {
        try await Self.declaredInEffect(app, grants: grants, registry: registry)
    }

    static func declaredInEffect(_ app: AppRecord, grants: GrantStore, registry: SurfaceRegistry) async throws -> [String] {
        let needing = Set(registry.scopesNeedingReview(app.scopes, ofApp: app.surface))
        guard !needing.isEmpty else { return app.scopes }
        let approved = try await grants.approvedReviewScopes(appID: app.id)
        return app.scopes.filter { !needing.contains($0) || approved.contains($0) }
    }

    /// A credential's sets on every surface and the answers built from them: the credential's
    /// scopes ∩ the installation's grants ∩ the app's declared scopes in effect, per surface.
    func makeView(_ grant: InstallationGrant, credentialScopes: [String], type: CredentialType, person: LaunchPerson? = nil) -> GrantView {
        let app = grant.app, approved = grant.installation.approvedScopes, declared = grant.declared
        // An app's scopes count only on its own surfaces: a platform app's `system/*.read`
        // must not open the practice API, whose grammar happens to accept it.
        let group = registry.surface(named: app.surface)?.group
        func effectiveSets(_ credentialScopes: [String]) -> [ScopeSet] {
            registry.surfaces.map { surface in
                guard surface.group == group else { return ScopeSet.empty }
                let catalog = surface.catalog
                let credential = Self.known(credentialScopes, in: catalog)
                let granted = Self.known(approved, in: catalog).intersection(Self.known(declared, in: catalog))
                return catalog.effectiveSet(credential: credential, grants: granted, credentialType: type)
            }
        }
        let effective = effectiveSets(credentialScopes)
        // What an upstream sees and decides with: the scopes that reach the whole clinic. A
        // `patient/` scope, or a `user/` scope of anyone but a signed-in clinician, opens nothing
        // there, as no upstream confines a request to one patient (fail closed, SPEC §8).
        let clinician = person?.fhirUser?.hasPrefix("Practitioner/") == true
        let confinedScopes = credentialScopes.filter { $0.hasPrefix("patient/") || (!clinician && $0.hasPrefix("user/")) }
        let clinicWide = confinedScopes.isEmpty ? effective : effectiveSets(credentialScopes.filter { !confinedScopes.contains($0) })
        let decisionSets = registry.decisionSlots.map { slot in
            switch slot.rule {
            case .effective: effective[slot.index]
            case .clinicWide: clinicWide[slot.index]
            case .constraintsLifted: effective[slot.index].liftingConstraints
            }
        }
        let names = zip(registry.surfaces, clinicWide).map { $0.catalog.scopeNames(in: $1) }
        return GrantView(
            effective: effective, decisionSets: decisionSets,
            meBody: zip(registry.surfaces, names).map { surface, scopes in
                guard surface.answersMe else { return ByteBuffer() }
                let data: JSONValue = [
                    "app": ["id": .string(app.id), "slug": .string(app.slug), "liveVersionId": .string(app.liveVersionID)],
                    "organization": ["id": .string(grant.installation.organizationID)],
                    "scopes": .array(scopes.map { .string($0) }),
                ]
                return ByteBuffer(bytes: (["code": "success", "data": data] as JSONValue).serialized())
            },
            scopeHeader: names.map { $0.joined(separator: " ") }, organizationID: grant.installation.organizationID, appID: app.id)
    }

    /// The scopes of `names` that this catalog knows (v1 and v3 share keys, not every scope).
    static func known(_ names: [String], in catalog: CompiledCatalog) -> ScopeSet {
        names.reduce(ScopeSet.empty) { set, name in
            (try? catalog.resolve(names: [name])).map { set.union($0) } ?? set
        }
    }
}
