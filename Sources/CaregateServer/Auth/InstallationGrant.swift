import CaregateStore
import NIOCore
import Scopes
import Synchronization

/// What every credential of one app in one clinic shares, read once from the grant chain: the
/// app, its installation there, the clinic's environment and the app's declared scopes in
/// effect; and, memoized, the views computed from them for each scope list a credential
/// selects. A new key of an app already in use in a clinic then costs one database read (its
/// own row), and its credential shares its sets and answers with every key of the same scopes.
final class InstallationGrant: Sendable {
    struct Key: Hashable, Sendable {
        var appID: String
        var organizationID: String
    }

    let app: AppRecord
    let installation: InstallationRecord
    let environment: String
    let declared: [String]
    private let views = Mutex<[ViewKey: GrantView]>([:])

    /// Views kept per installation; past this (keys of many different selections) they are computed each time.
    static let maxViews = 64

    private struct ViewKey: Hashable {
        var scopes: [String]
        var type: CredentialType
    }

    init(app: AppRecord, installation: InstallationRecord, environment: String, declared: [String]) {
        self.app = app
        self.installation = installation
        self.environment = environment
        self.declared = declared
    }

    /// The view for a credential of `type` selecting `scopes`, made once by `make`.
    func view(scopes: [String], type: CredentialType, make: () -> GrantView) -> GrantView {
        let key = ViewKey(scopes: scopes, type: type)
        if let known = views.withLock({ $0[key] }) { return known }
        let made = make()
        views.withLock { views in
            if views.count < Self.maxViews { views[key] = made }
        }
        return made
    }
}

/// What a credential may do, apart from who it is: its sets on every surface and the answers
/// built from them (see ``Credential``). Arrays, so that credentials made from one view share
/// their storage.
struct GrantView: Sendable {
    var effective: [ScopeSet]
    var decisionSets: [ScopeSet]
    var meBody: [ByteBuffer]
    var scopeHeader: [String]
}
