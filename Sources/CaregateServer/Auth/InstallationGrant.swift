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
/// built from them (see ``Credential``). One object, so that credentials made from one view
/// share it: a request then reads these through a reference every credential of its
/// installation holds, which stays in cache however many keys are in use.
final class GrantView: Sendable {
    /// The effective set on each served surface, by surface index (empty on the surfaces
    /// that are not the app's).
    let effective: [ScopeSet]
    /// The set `decide` reads, by ``Surface/decisionIndex``: an effective set, or one adjusted
    /// to what the surface's backend enforces itself (``Surface/DecisionRule``).
    let decisionSets: [ScopeSet]
    /// `/marketplace/me`'s answer on each marketplace surface (empty elsewhere): it depends on
    /// nothing but the credential's view, so it is built once, with the view.
    let meBody: [ByteBuffer]
    /// `X-Caregate-Scopes` on each gateway surface: the effective scope names, space-separated.
    let scopeHeader: [String]
    /// The clinic and app of the installation the view was made for, as audit events name them
    /// (nil when either is not an id of ours).
    let auditPlace: (organization: CompactID, app: CompactID)?

    init(effective: [ScopeSet], decisionSets: [ScopeSet], meBody: [ByteBuffer], scopeHeader: [String], organizationID: String, appID: String) {
        self.effective = effective
        self.decisionSets = decisionSets
        self.meBody = meBody
        self.scopeHeader = scopeHeader
        if let organization = CompactID(organizationID), let app = CompactID(appID) {
            auditPlace = (organization, app)
        } else {
            auditPlace = nil
        }
    }
}
