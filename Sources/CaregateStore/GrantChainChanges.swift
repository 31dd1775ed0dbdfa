import Synchronization

/// What one grant-chain change touched: the credentials a cache must stop trusting. Every
/// change records what it touched (``GrantStore/changes(since:)``), so that each instance drops
/// only those credentials, not every one it holds.
public enum GrantChange: Sendable, Hashable {
    /// One API key, by its lookup id (rotated, revoked, or newly created: a cached absence ends).
    case key(lookupID: String)
    /// One access token, by its id (`jti`).
    case token(id: String)
    /// A SMART token family: every access token of one authorization.
    case tokenFamily(String)
    /// An app: its live version or the review of its scopes (every credential of the app, every clinic).
    case app(String)
    /// An app in one clinic: its installation approved, changed or removed.
    case installation(appID: String, organizationID: String)
    /// A clinic's people (a clinic user removed: what they signed in to).
    case organization(String)
    /// The token signing keys (every instance reloads them; no credential changes).
    case signingKeys
    /// Anything: every cached credential (a change the log no longer holds, or one not described).
    case everything

    /// How the change is stored: a kind and up to two subjects.
    var stored: (kind: String, subject: String, detail: String) {
        switch self {
        case .key(let lookupID): ("key", lookupID, "")
        case .token(let id): ("token", id, "")
        case .tokenFamily(let id): ("family", id, "")
        case .app(let id): ("app", id, "")
        case .installation(let app, let organization): ("installation", app, organization)
        case .organization(let id): ("organization", id, "")
        case .signingKeys: ("signing-keys", "", "")
        case .everything: ("everything", "", "")
        }
    }

    init(kind: String, subject: String, detail: String) {
        switch kind {
        case "key": self = .key(lookupID: subject)
        case "token": self = .token(id: subject)
        case "family": self = .tokenFamily(subject)
        case "app": self = .app(subject)
        case "installation": self = .installation(appID: subject, organizationID: detail)
        case "organization": self = .organization(subject)
        case "signing-keys": self = .signingKeys
        default: self = .everything
        }
    }
}

/// Tells this process what a grant-chain change touched, once it has committed. Other
/// instances learn it from the change log instead (``GrantStore/changes(since:)``).
public final class GrantChainChanges: Sendable {
    private let listeners = Mutex<[@Sendable ([GrantChange]) -> Void]>([])

    public init() {}

    /// `listener` runs after every committed change, on the task that made it.
    public func listen(_ listener: @escaping @Sendable ([GrantChange]) -> Void) {
        listeners.withLock { $0.append(listener) }
    }

    func announce(_ touched: [GrantChange]) {
        for listener in listeners.withLock({ $0 }) { listener(touched) }
    }
}
