import CaregateStore
import Scopes

/// One protected surface: a catalog, the path prefixes it owns, and what answers the
/// requests its catalog allows. Built once, by ``SurfaceRegistry``; a reference, so that
/// finding a request's surface copies nothing.
final class Surface: Sendable {
    /// What answers an allowed request.
    enum Backend: Sendable {
        /// Caregate's own handlers (the clinic data API).
        case clinicAPI(ClinicAPI)
        /// An upstream service Caregate stands in front of (gateway mode).
        case upstream(UpstreamForwarder)
        /// An upstream FHIR server (`--fhir upstream`), with the built-in API's confinement
        /// applied around it.
        case fhirGateway(FHIRGateway)
        /// FHIR R4 over the clinic database (`/fhir/R4`), confining patient tokens itself.
        case fhir(FHIRAPI)
        /// Known to the grant chain (apps declare its scopes, keys carry them) but not served here.
        case notServed
    }

    /// Which of a credential's sets `decide` reads on a surface.
    enum DecisionRule: Sendable {
        /// The effective set as it is.
        case effective
        /// Only the scopes that reach the whole clinic: without `patient/` scopes, and without
        /// `user/` scopes unless a clinician signed in (a patient user's reach one compartment).
        /// A backend that cannot confine a request to one patient (an upstream) must not be
        /// opened by the others (fail closed, SPEC §8).
        case clinicWide
        /// With query constraints lifted: the backend narrows results by them itself.
        case constraintsLifted
    }

    let catalog: CompiledCatalog
    /// The index of this surface's effective set in ``Credential/effective``.
    let index: Int
    /// The index of the set `decide` reads in ``Credential/decisionSets``.
    let decisionIndex: Int
    let decisionRule: DecisionRule
    /// The surfaces with the same group share apps, keys and scopes (`/v3` and `/v1`).
    let group: String
    /// Path prefixes this surface owns (empty when it is not served).
    let prefixes: [String]
    let backend: Backend
    /// Route templates by route index, as metrics and the audit log name them (`/v3/patients/{id}`).
    let routeTemplates: [String]
    /// By route index: the route as an allowed request's audit event names it (template and requirement), made once.
    let auditRoutes: [AuditEvent.Route]
    /// The paths (without a trailing `/`) of a gateway surface's public routes: Caregate's own
    /// router answers them, with any method, without a credential (the practice API's token
    /// endpoint; a GET there is the router's 405). On the clinic data API a public route still
    /// needs a valid credential, only no scope (`/v3/marketplace/me`).
    private let routerPaths: [Substring]
    /// The route of `GET …/marketplace/me` on a clinic data API surface that has one: its
    /// credentials get its body precomputed, and the direct path answers it.
    let meRoute: Int?
    /// Whether this surface's credentials get `/marketplace/me`'s body precomputed.
    var answersMe: Bool { meRoute != nil }
    /// The plain-http upstream the gateway's direct path forwards to, when there is one.
    let directUpstream: DirectUpstream?

    var name: String { catalog.surface }

    init(
        catalog: CompiledCatalog, index: Int, decisionIndex: Int? = nil, decisionRule: DecisionRule = .effective, group: String, prefixes: [String],
        backend: Backend
    ) {
        self.catalog = catalog
        self.index = index
        self.decisionIndex = decisionIndex ?? index
        self.decisionRule = decisionRule
        self.group = group
        self.prefixes = prefixes
        self.backend = backend
        routeTemplates = catalog.routes.map(\.path)
        auditRoutes = catalog.routes.map { AuditEvent.Route(template: $0.template, requiredScope: $0.isPublic ? nil : $0.requirement) }
        // Caregate answers SMART discovery at the FHIR base itself, in front of any upstream.
        let discovery = Self.discoveryPaths.filter { path in prefixes.contains { path.isPath(under: $0) } }.map { $0[...] }
        switch backend {
        case .upstream: routerPaths = catalog.routes.filter(\.isPublic).map { Self.withoutTrailingSlash($0.path[...]) } + discovery
        case .fhir, .fhirGateway: routerPaths = discovery
        case .clinicAPI, .notServed: routerPaths = []
        }
        if case .clinicAPI(let api) = backend {
            meRoute = api.meRoute
        } else {
            meRoute = nil
        }
        if case .upstream(let forwarder) = backend, let target = forwarder.direct {
            directUpstream = DirectUpstream(forwarder: forwarder, target: target)
        } else {
            directUpstream = nil
        }
    }

    /// Whether Caregate's router answers this request itself (see ``routerPaths``): an exact
    /// match only, so that any other spelling of the path is enforced.
    func isRouterPath(_ path: String) -> Bool {
        guard !routerPaths.isEmpty else { return false }
        let path = Self.withoutTrailingSlash(path[...])
        return routerPaths.contains(path)
    }

    static let discoveryPaths = [Discovery.metadataPath, Discovery.fhirSMARTConfigurationPath]

    private static func withoutTrailingSlash(_ path: Substring) -> Substring {
        path.utf8.count > 1 && path.utf8.last == UInt8(ascii: "/") ? path.dropLast() : path
    }

    /// Why a credential of `type` cannot hold `scope`, when that is the reason it lacks it.
    func credentialTypeLimit(_ scope: String, _ type: CredentialType) -> String? {
        guard let definition = catalog.scope(named: scope), !definition.credentialTypes.contains(type) else { return nil }
        return "A credential of type \(type.rawValue) cannot carry \(scope) (allowed: \(definition.credentialTypes.map(\.rawValue).joined(separator: ", ")))."
    }
}
