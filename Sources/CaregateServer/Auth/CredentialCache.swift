import CaregateStore
import NIOCore
import Scopes
import Synchronization

/// What a credential (API key or access token) may do in one clinic, as computed from the
/// grant chain. Immutable and shared: a request holds one reference, not a copy of each field.
final class Credential: Sendable {
    /// The key id (`key_…`) or the OAuth client id (`cli_…`).
    let keyID: String
    let type: CredentialType
    /// The key's stored HMAC-SHA-256, as bytes (empty for access tokens).
    let keyDigest: [UInt8]
    let expiresAt: Int64?
    let appID: String
    let appSlug: String
    let liveVersionID: String
    let organizationID: String
    /// The effective set on each served surface, by surface index (empty on the surfaces
    /// that are not the app's).
    let effective: [ScopeSet]
    /// The set `decide` reads, by ``Surface/decisionIndex``: an effective set, or one adjusted
    /// to what the surface's backend enforces itself (``Surface/DecisionRule``).
    let decisionSets: [ScopeSet]
    /// Who a SMART launch token acts for (nil for API keys and backend tokens).
    let person: LaunchPerson?
    /// `/marketplace/me`'s answer on each marketplace surface (empty elsewhere): it depends on
    /// nothing but the credential, so it is built once, when the credential is resolved.
    let meBody: [ByteBuffer]
    /// `X-Caregate-Scopes` on each gateway surface: the effective scope names, space-separated.
    let scopeHeader: [String]

    init(
        keyID: String, type: CredentialType, keyDigest: [UInt8], expiresAt: Int64?, appID: String, appSlug: String, liveVersionID: String,
        organizationID: String, effective: [ScopeSet], decisionSets: [ScopeSet], person: LaunchPerson?, meBody: [ByteBuffer], scopeHeader: [String]
    ) {
        self.keyID = keyID
        self.type = type
        self.keyDigest = keyDigest
        self.expiresAt = expiresAt
        self.appID = appID
        self.appSlug = appSlug
        self.liveVersionID = liveVersionID
        self.organizationID = organizationID
        self.effective = effective
        self.decisionSets = decisionSets
        self.person = person
        self.meBody = meBody
        self.scopeHeader = scopeHeader
    }
}

/// The SMART launch context of a token: what `patient/` and `user/` scopes are confined to.
struct LaunchPerson: Sendable, Equatable {
    /// The patient in context (`patient` of the token answer), if any.
    var patient: String?
    /// The signed-in person as a relative FHIR reference (`Practitioner/prv_…`, `Patient/pat_…`).
    var fhirUser: String?
    /// Whether the token carries any `patient/` scope (such a token without a patient is refused).
    var holdsPatientScopes: Bool
}

/// Resolved credentials by (key lookup id or token id, clinic), so that the hot path does no
/// database work. Any grant-chain change empties it; a resolution that started before the
/// change is not stored (the epoch moved on).
final class CredentialCache: Sendable {
    struct Key: Hashable, Sendable {
        var lookupID: String
        var organization: OrganizationBits
    }

    /// An API key row as found by its lookup id, or its absence (with a digest nothing matches).
    struct KeyLookup: Sendable {
        var key: APIKeyRecord?
        var digest: [UInt8]
        static let absent = [UInt8](repeating: 0, count: 32)
    }

    private struct State {
        var entries: [Key: Credential] = [:]
        var keyLookups: [String: KeyLookup] = [:]
        var epoch: UInt64 = 0
        var databaseLookups = 0
    }

    private let state = Mutex(State())
    /// Bounded so that a flood of distinct valid keys cannot grow memory without limit.
    let capacity: Int

    init(capacity: Int = 100_000) { self.capacity = capacity }

    func get(_ key: Key) -> Credential? { state.withLock { $0.entries[key] } }

    var epoch: UInt64 { state.withLock { $0.epoch } }

    func put(_ key: Key, _ credential: Credential, ifEpoch epoch: UInt64) {
        state.withLock { state in
            guard state.epoch == epoch else { return }
            if state.entries.count >= capacity { state.entries.removeAll(keepingCapacity: true) }
            state.entries[key] = credential
        }
    }

    func keyLookup(_ lookupID: String) -> KeyLookup? { state.withLock { $0.keyLookups[lookupID] } }

    /// Stores what the database said about a lookup id (counted: see ``databaseLookups``).
    func putKeyLookup(_ lookupID: String, _ lookup: KeyLookup, ifEpoch epoch: UInt64) {
        state.withLock { state in
            state.databaseLookups += 1
            guard state.epoch == epoch else { return }
            if state.keyLookups.count >= capacity { state.keyLookups.removeAll(keepingCapacity: true) }
            state.keyLookups[lookupID] = lookup
        }
    }

    /// How many API key rows were read from the database (each lookup id once per cache generation).
    var databaseLookups: Int { state.withLock { $0.databaseLookups } }

    func invalidateAll() {
        state.withLock { state in
            state.entries.removeAll(keepingCapacity: true)
            state.keyLookups.removeAll(keepingCapacity: true)
            state.epoch &+= 1
        }
    }
}
