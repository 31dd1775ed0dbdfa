import AsyncHTTPClient
import Foundation
import Scopes

/// Every surface Caregate knows, described once: which catalogs are served by the clinic
/// data API, which stand in front of an upstream, which are only known to the grant chain,
/// the path prefixes each owns, and which surfaces share apps. Nothing else in the server
/// names a surface.
struct SurfaceRegistry: Sendable {
    /// The clinic data API's surfaces and their prefixes. They form one app group: an app of
    /// either holds scopes on both, with the same keys (seeds 000–002).
    static let clinicAPISurfaces: [(surface: String, prefix: String)] = [("marketplace-v3", "/v3"), ("marketplace-v1", "/v1")]
    static let clinicAPIGroup = "marketplace"
    /// The surface of an app created without one.
    static let defaultAppSurface = "marketplace-v3"

    /// The catalog whose `/fhir/R4` routes the built-in FHIR API serves (SPEC §8).
    static let fhirSurface = "platform"

    /// In the order of ``Credential/effective``.
    let surfaces: [Surface]
    /// The surface of `/fhir/R4`: the built-in FHIR API over the clinic database, or the
    /// platform's upstream behind the same confinement (it shares the platform catalog's
    /// effective set; its own decision set lifts query constraints, which it applies itself).
    let fhir: Surface?
    /// What each of ``Credential/decisionSets`` is: an effective set's index and its rule.
    let decisionSlots: [(index: Int, rule: Surface.DecisionRule)]
    /// Path prefix (as bytes) → surface, longest prefix first.
    private let prefixes: [(prefix: [UInt8], surface: Surface)]

    /// - Throws: ``GatewayConfigurationError`` for an upstream of an unknown surface, of a
    ///   surface Caregate serves itself, or a second upstream of one surface.
    static func check(upstreams: [UpstreamConfiguration], catalogs: [CompiledCatalog], fhirBackend: FHIRBackend = .builtIn) throws(GatewayConfigurationError) {
        if fhirBackend == .upstream, !upstreams.contains(where: { $0.surface == fhirSurface }) {
            throw GatewayConfigurationError("--fhir upstream needs an upstream for the \(fhirSurface) surface (--upstream \(fhirSurface)=URL)")
        }
        for upstream in upstreams {
            guard catalogs.contains(where: { $0.surface == upstream.surface }) else {
                throw GatewayConfigurationError(
                    "upstream for unknown surface \"\(upstream.surface)\" (known: \(catalogs.map(\.surface).joined(separator: ", ")))")
            }
            guard !clinicAPISurfaces.contains(where: { $0.surface == upstream.surface }) else {
                throw GatewayConfigurationError("\(upstream.surface) is served by Caregate itself; it cannot have an upstream")
            }
        }
        guard Set(upstreams.map(\.surface)).count == upstreams.count else { throw GatewayConfigurationError("a surface may have one upstream") }
    }

    /// `upstreams` must have passed ``check(upstreams:catalogs:fhirBackend:)``. `/fhir/R4` is a
    /// surface of its own over the platform catalog: with `fhirBackend` `.builtIn` the clinic
    /// database's FHIR API, even when the platform has an upstream (its other routes go there);
    /// with `.upstream` the platform's upstream behind the same confinement (``FHIRGateway``).
    init(
        catalogs: [CompiledCatalog], upstreams: [UpstreamConfiguration], fhirBackend: FHIRBackend = .builtIn,
        clinicAPI: (CompiledCatalog, String) -> ClinicAPI, forwarder: (CompiledCatalog, UpstreamConfiguration) -> UpstreamForwarder,
        fhir: (CompiledCatalog) -> FHIRAPI, fhirGateway: (CompiledCatalog, UpstreamForwarder, _ clinicWideIndex: Int) -> FHIRGateway
    ) {
        let builtIn = Dictionary(uniqueKeysWithValues: Self.clinicAPISurfaces.map { ($0.surface, $0.prefix) })
        let fhirBase = Discovery.fhirBasePath
        var fhirForwarder: UpstreamForwarder?
        surfaces = catalogs.enumerated().map { index, catalog in
            if let prefix = builtIn[catalog.surface] {
                return Surface(
                    catalog: catalog, index: index, group: Self.clinicAPIGroup, prefixes: [prefix], backend: .clinicAPI(clinicAPI(catalog, prefix)))
            }
            if let upstream = upstreams.first(where: { $0.surface == catalog.surface }) {
                var owned = Self.ownedPrefixes(of: catalog)
                let forwarder = forwarder(catalog, upstream)
                if catalog.surface == Self.fhirSurface {
                    owned.remove(fhirBase)
                    if fhirBackend == .upstream { fhirForwarder = forwarder }
                }
                return Surface(
                    catalog: catalog, index: index, decisionRule: .clinicWide, group: catalog.surface, prefixes: owned.sorted(),
                    backend: .upstream(forwarder))
            }
            return Surface(catalog: catalog, index: index, group: catalog.surface, prefixes: [], backend: .notServed)
        }
        var slots = surfaces.map { (index: $0.index, rule: $0.decisionRule) }
        if let platform = surfaces.first(where: { $0.name == Self.fhirSurface }), Self.ownedPrefixes(of: platform.catalog).contains(fhirBase),
           fhirBackend == .builtIn || fhirForwarder != nil {
            let backend: Surface.Backend = if let fhirForwarder {
                .fhirGateway(fhirGateway(platform.catalog, fhirForwarder, platform.decisionIndex))
            } else {
                .fhir(fhir(platform.catalog))
            }
            self.fhir = Surface(
                catalog: platform.catalog, index: platform.index, decisionIndex: slots.count, decisionRule: .constraintsLifted, group: platform.group,
                prefixes: [fhirBase], backend: backend)
            slots.append((platform.index, .constraintsLifted))
        } else {
            self.fhir = nil
        }
        decisionSlots = slots
        prefixes = (surfaces + [self.fhir].compactMap { $0 }).flatMap { surface in surface.prefixes.map { (Array($0.utf8), surface) } }
            .sorted { $0.prefix.count > $1.prefix.count }
    }

    /// The leading literal segments (at most two) of each route: the paths an upstream surface owns.
    static func ownedPrefixes(of catalog: CompiledCatalog) -> Set<String> {
        Set(catalog.routes.compactMap { route in
            let literal = route.path.split(separator: "/").prefix { !$0.contains("{") && !$0.contains("*") }.prefix(2)
            return literal.isEmpty ? nil : "/" + literal.joined(separator: "/")
        })
    }

    /// The served surface that owns `path`, if any.
    func surface(for path: String) -> Surface? {
        // The prefixes are kept as bytes: on every request, comparing them as `String`s cost
        // about 0.1 µs here (perf, 2026-12-04).
        var path = path
        return path.withUTF8 { path in
            for (prefix, surface) in prefixes where prefix.withUnsafeBytes({ UnsafeRawBufferPointer(path).isPath(under: $0) }) { return surface }
            return nil
        }
    }

    func surface(named name: String) -> Surface? { surfaces.first { $0.name == name } }

    /// The catalogs whose scopes an app of `appSurface` holds (an app of a clinic API surface holds both).
    func catalogs(ofApp appSurface: String) -> [CompiledCatalog] {
        guard let group = surface(named: appSurface)?.group else { return [] }
        return surfaces.filter { $0.group == group }.map(\.catalog)
    }

    var catalogs: [CompiledCatalog] { surfaces.map(\.catalog) }

    /// Of the scopes an app of `appSurface` declares, those an operator must approve before they
    /// take effect: on surfaces whose catalogs mark scopes self-service (the platform), every
    /// scope that is not (SMART grammar scopes included); elsewhere none.
    func scopesNeedingReview(_ names: [String], ofApp appSurface: String) -> [String] {
        let catalogs = catalogs(ofApp: appSurface)
        guard catalogs.contains(where: { $0.scopes.contains(where: \.selfService) }) else { return [] }
        let selfService = Set(catalogs.flatMap { $0.scopes.filter(\.selfService).map(\.name) })
        return names.filter { !selfService.contains($0) }
    }

    /// The surfaces forwarded to an upstream.
    var gatewaySurfaces: [Surface] { surfaces.filter { if case .upstream = $0.backend { true } else { false } } }

    /// The clinic data API's surfaces.
    var clinicAPISurfaces: [Surface] { surfaces.filter { if case .clinicAPI = $0.backend { true } else { false } } }

    /// Every name of `names` that some catalog of the app's group knows (a key of `/v3` and
    /// `/v1` carries scopes of both), or why the first unknown one is refused.
    /// - Returns: the names, de-duplicated in order.
    func validateScopes(_ names: [String], ofApp appSurface: String, credentialType: CredentialType? = nil) -> Result<[String], ScopeRefusal> {
        let catalogs = catalogs(ofApp: appSurface)
        var seen = Set<String>()
        var result: [String] = []
        for name in names {
            var lastError: ScopeResolutionError?
            var known = false
            for catalog in catalogs {
                do {
                    _ = try catalog.resolve(names: [name], credentialType: credentialType)
                    known = true
                    break
                } catch {
                    lastError = error
                }
            }
            if !known { return .failure(ScopeRefusal(message: lastError?.description ?? "unknown scope \"\(Validate.safe(name))\"")) }
            if seen.insert(name).inserted { result.append(name) }
        }
        return .success(result)
    }
}

/// What serves `/fhir/R4`: the FHIR API over the clinic database, or the platform's upstream.
public enum FHIRBackend: String, Sendable, CaseIterable {
    case builtIn = "builtin"
    case upstream
}

/// Why a scope list was refused, in words a client can act on.
struct ScopeRefusal: Error {
    var message: String
}
