import CaregateStore
import NIOCore
import Scopes
import Synchronization

/// What a credential (API key or access token) may do in one clinic, as computed from the
/// grant chain. Immutable and shared: a request holds one reference, not a copy of each field.
///
/// The fields a request on the direct path reads come first, together, in about 100 bytes: with
/// many keys in use each request finds its credential out of cache, and a field read is a
/// wait for memory. Spread over the object (after the 48 bytes of an audit subject it used to
/// inherit), they cost four such waits where these cost one or two.
final class Credential: @unchecked Sendable {
    /// What it may do, shared with every credential of its installation that selects the same scopes.
    let view: GrantView
    let expiresAt: Int64?
    /// The key's stored HMAC-SHA-256 (nil for access tokens). Held in the credential itself,
    /// not in an array of its own: it is compared on every request, and over many keys the
    /// array was one more cold cache line to fetch.
    let keyDigest: InlineArray<32, UInt8>?
    /// The key as its requests' audit events name it, with the clinic and app of ``view``
    /// (nil when it is not an id of ours).
    private let auditKey: CompactID?
    /// The key id (`key_…`) or the OAuth client id (`cli_…`).
    let keyID: String
    let type: CredentialType
    let appID: String
    let appSlug: String
    let liveVersionID: String
    let organizationID: String
    /// Who a SMART launch token acts for (nil for API keys and backend tokens).
    let person: LaunchPerson?
    /// The SMART token family of a launch token (nil otherwise): revoking it ends the token.
    let family: String?
    /// What its requests' audit events name when one of its ids is not ours, such as a client
    /// id a clinic chose (nil otherwise: they hold ``auditIDs``). Made once, so its events share it.
    let auditSubject: AuditEvent.Subject?

    init(
        keyID: String, type: CredentialType, keyDigest: [UInt8], expiresAt: Int64?, appID: String, appSlug: String, liveVersionID: String,
        organizationID: String, view: GrantView, person: LaunchPerson?, family: String? = nil
    ) {
        self.view = view
        self.expiresAt = expiresAt
        self.keyDigest = keyDigest.count == 32 ? InlineArray { keyDigest[$0] } : nil
        // The view names the clinic and app it was made for, which are this credential's.
        auditKey = view.auditPlace == nil ? nil : CompactID(keyID)
        self.keyID = keyID
        self.type = type
        self.appID = appID
        self.appSlug = appSlug
        self.liveVersionID = liveVersionID
        self.organizationID = organizationID
        self.person = person
        self.family = family
        auditSubject = auditKey == nil ? AuditEvent.Subject(organizationID: organizationID, appID: appID, keyID: keyID) : nil
    }

    /// A credential of `app` in a clinic with what its view says it may do there.
    convenience init(
        keyID: String, type: CredentialType, keyDigest: [UInt8], expiresAt: Int64?, app: AppRecord, organizationID: String, view: GrantView,
        person: LaunchPerson? = nil, family: String? = nil
    ) {
        self.init(
            keyID: keyID, type: type, keyDigest: keyDigest, expiresAt: expiresAt, appID: app.id, appSlug: app.slug, liveVersionID: app.liveVersionID,
            organizationID: organizationID, view: view, person: person, family: family)
    }

    /// The effective set on each served surface, by surface index (empty on the surfaces
    /// that are not the app's).
    var effective: [ScopeSet] { view.effective }
    /// The set `decide` reads, by ``Surface/decisionIndex`` (see ``GrantView/decisionSets``).
    var decisionSets: [ScopeSet] { view.decisionSets }
    /// `/marketplace/me`'s answer on each marketplace surface (empty elsewhere).
    var meBody: [ByteBuffer] { view.meBody }
    /// `X-Caregate-Scopes` on each gateway surface: the effective scope names, space-separated.
    var scopeHeader: [String] { view.scopeHeader }

    /// Its clinic, app and key as its requests' audit events name them (nil when one is not an
    /// id of ours: the events then name ``auditSubject``).
    var auditIDs: AuditEvent.IDs? {
        guard let auditKey, let place = view.auditPlace else { return nil }
        return AuditEvent.IDs(organization: place.organization, app: place.app, key: auditKey)
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
/// database work. A grant-chain change drops the credentials it touched (``invalidate(_:)``);
/// a resolution that started before a change is stored only if that change would not have
/// dropped it (so that changes elsewhere, however frequent, never keep a credential cold).
/// Full, it drops its oldest entry for each new one (first in, first out), never everything at once.
final class CredentialCache: Sendable {
    struct Key: Hashable, Sendable {
        var lookupID: String
        var organization: OrganizationBits
    }

    /// An API key row as found by its lookup id, or its absence (with a digest nothing matches).
    struct KeyLookup: Sendable {
        var key: PresentedKeyRecord?
        var digest: [UInt8] { key?.digest ?? PresentedKeyRecord.unmatchable }
    }

    private struct State {
        var entries: BoundedMap<Key, Credential>
        var keyLookups: BoundedMap<String, KeyLookup>
        var installations: BoundedMap<InstallationGrant.Key, InstallationGrant>
        /// Moves on with every change applied; a resolution notes it when it starts.
        var epoch: UInt64 = 0
        /// What the latest changes touched, oldest first: the last is `epoch`'s.
        var recent: [Touched] = []
        var databaseLookups = 0

        /// Whether nothing applied since `start` touched what `touches` looks for: false when
        /// the changes since then are more than ``CredentialCache/remembered``.
        func unchanged(since start: UInt64, _ touches: (Touched) -> Bool) -> Bool {
            let missed = epoch &- start
            guard missed > 0 else { return true }
            guard missed <= UInt64(recent.count) else { return false }
            return !recent.suffix(Int(missed)).contains { $0.everything || touches($0) }
        }

        mutating func applied(_ touched: Touched) {
            epoch &+= 1
            if recent.count == CredentialCache.remembered { recent.removeFirst() }
            recent.append(touched)
        }
    }

    /// How many changes the cache remembers for resolutions still under way; one that started
    /// before more changes than this is not stored.
    static let remembered = 64

    private let state: Mutex<State>
    /// `state.epoch`, readable without the lock (``epoch``).
    private let publishedEpoch = Atomic<UInt64>(0)
    /// Bounded so that a flood of distinct valid keys cannot grow memory without limit.
    let capacity: Int

    init(capacity: Int = 250_000) {
        self.capacity = capacity
        state = Mutex(State(
            entries: BoundedMap(capacity: capacity), keyLookups: BoundedMap(capacity: capacity),
            installations: BoundedMap(capacity: max(capacity / 10, 1))))
    }

    func get(_ key: Key) -> Credential? { state.withLock { $0.entries[key] } }

    /// Moves with every change applied, and is read without the lock: a resolution notes it
    /// when it starts, and a credential a connection remembers (``RememberedCredential``) holds
    /// while it has not moved. A credential read from the cache after this was loaded is at
    /// least as new.
    var epoch: UInt64 { publishedEpoch.load(ordering: .acquiring) }

    /// How many credentials are cached.
    var count: Int { state.withLock { $0.entries.count } }

    /// Stores a credential resolved from what the database said after `epoch`.
    func put(_ key: Key, _ credential: Credential, ifEpoch epoch: UInt64) {
        state.withLock { state in
            guard state.unchanged(since: epoch, { $0.touches(key, credential) }) else { return }
            state.entries[key] = credential
        }
    }

    func keyLookup(_ lookupID: String) -> KeyLookup? { state.withLock { $0.keyLookups[lookupID] } }

    /// Stores what the database said about a lookup id (counted: see ``databaseLookups``).
    func putKeyLookup(_ lookupID: String, _ lookup: KeyLookup, ifEpoch epoch: UInt64) {
        state.withLock { state in
            state.databaseLookups += 1
            guard state.unchanged(since: epoch, { $0.lookups.contains(lookupID) }) else { return }
            state.keyLookups[lookupID] = lookup
        }
    }

    func installationGrant(_ key: InstallationGrant.Key) -> InstallationGrant? { state.withLock { $0.installations[key] } }

    func putInstallationGrant(_ key: InstallationGrant.Key, _ grant: InstallationGrant, ifEpoch epoch: UInt64) {
        state.withLock { state in
            guard state.unchanged(since: epoch, { $0.touches(key) }) else { return }
            state.installations[key] = grant
        }
    }

    /// How many API key rows were read from the database (each lookup id once while it stays cached).
    var databaseLookups: Int { state.withLock { $0.databaseLookups } }

    /// Drops the credentials a change touched: one pass over the cache for the whole list.
    func invalidate(_ changes: [GrantChange]) {
        let touched = Touched(changes)
        if touched.everything { return invalidateAll() }
        state.withLock { state in
            applied(touched, to: &state)
            for id in touched.lookups { state.keyLookups.remove(id) }
            if touched.reachesInstallations { state.installations.removeAll { key, _ in touched.touches(key) } }
            state.entries.removeAll { key, credential in touched.touches(key, credential) }
        }
    }

    func invalidateAll() {
        state.withLock { state in
            state.entries.removeAll()
            state.keyLookups.removeAll()
            state.installations.removeAll()
            applied(Touched([.everything]), to: &state)
        }
    }

    /// Under the lock: the epoch moves on, and is published. A reader that still sees the old one
    /// reads the cache as it was before the change, or waits for the lock.
    private func applied(_ touched: Touched, to state: inout State) {
        state.applied(touched)
        publishedEpoch.store(state.epoch, ordering: .releasing)
    }

    /// What a list of changes touched, as sets a cached entry is checked against.
    struct Touched: Sendable {
        var everything = false
        var lookups = Set<String>(), families = Set<String>(), apps = Set<String>(), organizations = Set<String>()
        var installations = Set<InstallationGrant.Key>()

        init(_ changes: [GrantChange]) {
            for change in changes {
                switch change {
                case .key(let id), .token(let id): lookups.insert(id)
                case .tokenFamily(let id): families.insert(id)
                case .app(let id): apps.insert(id)
                case .installation(let app, let organization): installations.insert(InstallationGrant.Key(appID: app, organizationID: organization))
                case .organization(let id): organizations.insert(id)
                case .signingKeys: break
                case .everything: everything = true
                }
            }
        }

        /// Whether any installation grant can be touched.
        var reachesInstallations: Bool { !apps.isEmpty || !organizations.isEmpty || !installations.isEmpty }

        func touches(_ key: InstallationGrant.Key) -> Bool {
            apps.contains(key.appID) || organizations.contains(key.organizationID) || installations.contains(key)
        }

        func touches(_ key: Key, _ credential: Credential) -> Bool {
            lookups.contains(key.lookupID) || apps.contains(credential.appID) || organizations.contains(credential.organizationID)
                || credential.family.map(families.contains) == true
                || (!installations.isEmpty && installations.contains(InstallationGrant.Key(appID: credential.appID, organizationID: credential.organizationID)))
        }
    }
}

/// A dictionary of at most `capacity` entries that, full, drops its oldest entry for each new
/// one (first in, first out: O(1) per insertion, no sweep).
struct BoundedMap<Key: Hashable, Value> {
    /// Each value with its key's slot in ``order``.
    private var values: [Key: (value: Value, slot: Int)] = [:]
    /// Keys in insertion order, as a ring. A key removed meanwhile leaves a stale slot behind,
    /// which drops nothing when its turn comes: the key, if stored again, has a newer slot.
    private var order: [Key?]
    private var oldest = 0
    private var used = 0

    init(capacity: Int) {
        order = Array(repeating: nil, count: max(capacity, 1))
    }

    var count: Int { values.count }

    subscript(key: Key) -> Value? {
        get { values[key]?.value }
        set {
            guard let newValue else {
                values[key] = nil
                return
            }
            if let index = values.index(forKey: key) {
                values.values[index].value = newValue
            } else {
                let slot = remember(key)
                values[key] = (newValue, slot)
            }
        }
    }

    mutating func remove(_ key: Key) { values[key] = nil }

    mutating func removeAll() {
        values.removeAll(keepingCapacity: true)
        for i in order.indices { order[i] = nil }
        oldest = 0
        used = 0
    }

    /// Removes the entries `shouldRemove` picks.
    mutating func removeAll(where shouldRemove: (Key, Value) -> Bool) {
        let doomed = values.compactMap { shouldRemove($0.key, $0.value.value) ? $0.key : nil }
        for key in doomed { values[key] = nil }
    }

    /// Takes the next slot for `key` (the oldest, when the ring is full) and returns it.
    private mutating func remember(_ key: Key) -> Int {
        if used == order.count {
            // The oldest slot goes; its key with it, unless the key is gone or holds a newer slot.
            if let evicted = order[oldest], values[evicted]?.slot == oldest { values[evicted] = nil }
            order[oldest] = nil
            oldest = (oldest + 1) % order.count
            used -= 1
        }
        let slot = (oldest + used) % order.count
        order[slot] = key
        used += 1
        return slot
    }
}
