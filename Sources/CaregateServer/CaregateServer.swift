import AsyncHTTPClient
public import CaregateStore
public import Foundation
import Hummingbird
import HummingbirdCore
public import Logging
import Metrics
import NIOCore
import NIOPosix
import Prometheus
public import Scopes
import ServiceLifecycle
import Synchronization

/// How to run a Caregate server.
public struct ServerOptions: Sendable {
    public var host = "127.0.0.1"
    public var port = 8080
    public var database: DatabaseLocation = .sqlite(path: "caregate.sqlite")
    /// Catalogs that add surfaces to the built-in ones or replace them by surface (`--catalogs`).
    public var catalogDirectory: URL?
    /// Catalogs already compiled, served in place of the built-in ones and `catalogDirectory`:
    /// an embedder that starts many servers (a test suite) compiles them once.
    public var catalogs: [CompiledCatalog]?
    /// `CAREGATE_ADMIN_TOKEN`: the operator token (stored hashed).
    public var adminToken: String?
    /// `CAREGATE_SECRET` (or the contents of `CAREGATE_SECRET_FILE`): the key of every keyed hash
    /// and of the sealed token-signing keys (at least 32 bytes); generated and kept in the
    /// database when absent, which protects nothing at rest.
    public var secret: String?
    /// The `iss` of access tokens (default `http://<host>:<port>`; set it to the public URL).
    public var issuer: String?
    /// How often each instance looks for grant-chain changes made by other instances.
    public var changePollInterval: Duration = .milliseconds(250)
    /// The algorithm of token-signing keys generated from now on (at first start and on rotation).
    public var tokenAlgorithm: TokenAlgorithm = .es256
    /// A client JWKS URL is refetched for an unknown `kid` at most this often.
    public var jwksRefetchInterval: Duration = .seconds(30)
    /// Gateway mode: surfaces enforced here and forwarded to these upstreams.
    public var upstreams: [UpstreamConfiguration] = []
    /// What serves `/fhir/R4`: the FHIR API over the clinic database (the default, also when
    /// the platform has an upstream, which then serves the platform's other routes), or the
    /// platform's upstream.
    public var fhirBackend: FHIRBackend = .builtIn
    /// Addresses of proxies in front of Caregate: only their `X-Forwarded-For` and
    /// `X-Forwarded-Proto` reach an upstream (extended with the caller); anyone else's are replaced.
    public var trustedProxies: Set<String> = []
    /// Hosts (names or addresses) a client's `jwksUri` may name although they are loopback,
    /// private or link-local (`--allow-outbound-host`); everything else must be public.
    public var allowedOutboundHosts: Set<String> = []
    /// How host names are resolved for that check (the system resolver when nil).
    public var hostResolver: HostResolver?
    /// A connection is closed when a request head has not arrived complete this long after the
    /// connection opened or the previous answer ended, or when a request body stalls this long
    /// (`--idle-timeout`): slow clients cannot hold connections open.
    public var idleTimeout: Duration = .seconds(30)
    /// Connections held open from one address (`--max-connections-per-peer`); trusted proxies
    /// are not capped.
    public var maxConnectionsPerPeer = 1_024
    /// Connections held open in all (`--max-connections`); never within 256 of the process's
    /// descriptor limit, which is also the default.
    public var maxConnections: Int?
    /// Audit events older than this many days are deleted (`--audit-retention-days`; 0 keeps
    /// them all). `GET /manage/audit/export` streams the log for those who must keep more.
    public var auditRetentionDays = 90
    /// Forward what the gateway may forward, and answer `/healthz` and a cached credential's
    /// `…/marketplace/me`, on the connection's event loop (``DirectForwarding``); off
    /// (`--no-direct-forwarding`), every request takes the pipeline, to compare the two.
    public var directForwarding = true
    /// How often the housekeeping job runs (the first time at start-up): expired audit events,
    /// ended console sessions, SMART state that can no longer be used.
    public var auditPruneInterval: Duration = .seconds(3_600)

    public init() {}
}

/// A running Caregate: the HTTP application and the services beside it.
public final class CaregateServer: Sendable {
    public static let version = "0.1.0"

    /// How many event-loop threads serve connections: those of NIO's shared group, which the
    /// HTTP server, the gateway's upstream connections and the database's connections use
    /// together. One per core unless set (or `NIO_SINGLETON_GROUP_LOOP_COUNT` says otherwise).
    /// Set it at most once, before the first server starts: NIO reads it when the group is made.
    public static func useEventLoops(_ count: Int) {
        precondition(count > 0, "at least one event loop")
        NIOSingletons.groupLoopCountSuggestion = count
    }

    public let options: ServerOptions
    public let catalogs: [CompiledCatalog]
    /// Every surface: what serves it, the prefixes it owns, which share apps.
    let registry: SurfaceRegistry
    public let database: Database
    public let grants: GrantStore
    public let clinic: ClinicStore
    /// The operator token when it was generated at this start (print it once).
    public let generatedOperatorToken: String?
    let cache: CredentialCache
    let oauth: OAuthStore
    let smart: SMARTStore
    let auditWriter: AuditWriter
    let tokens: TokenService
    let logger: Logger
    /// Outbound HTTP (pooled connections): gateway upstreams and clients' JWKS URLs.
    let httpClient: HTTPClient
    let clientKeySets: ClientKeySets
    /// Which hosts a client's URL may make the server connect to.
    let outbound: OutboundAddressPolicy
    /// Keep-alive connections to plain-http upstreams, by surface (the pipeline's).
    let upstreamPools: [String: UpstreamConnectionPool]
    /// Keep-alive connections to plain-http upstreams, by event loop (the direct path's).
    let loopUpstreams: LoopUpstreams
    /// Requests counted and timed under Hummingbird's metric names, on the pipeline and the direct path.
    let requestMetrics = RequestMetrics()
    let forwardingMetrics: ForwardingMetrics
    /// The page layer (templates, cookies, security headers) of the console and the scope reference.
    let pages: WebPages
    /// Open connections per peer address.
    let connectionLimits: ConnectionLimits
    /// The FHIR bulk exports this instance runs (stopped, and failed, at shutdown).
    let exportRuns: ExportRuns
    private let listening = ListeningPort()
    /// The services of `run`, while it runs.
    private let running = Mutex<ServiceGroup?>(nil)

    public init(options: ServerOptions, logger: Logger) async throws {
        self.options = options
        self.logger = logger
        catalogs = try options.catalogs ?? CatalogLoader.load(overriding: options.catalogDirectory ?? CatalogLoader.configuredDirectory())
        try SurfaceRegistry.check(upstreams: options.upstreams, catalogs: catalogs, fhirBackend: options.fhirBackend)
        logger.info("catalogs loaded", metadata: ["surfaces": "\(catalogs.map(\.surface).joined(separator: ","))"])
        let database = try await Database.open(options.database, logger: logger)
        let baseline: Int64
        do {
            let secret = try await GrantStore.serverSecret(database: database, configured: options.secret)
            if options.secret == nil {
                logger.warning(
                    "the server secret is kept in the database: token-signing keys and key hashes at rest are not protected from anyone who can read it (a backup, a replica); set CAREGATE_SECRET or CAREGATE_SECRET_FILE (at least 32 bytes) from outside the database")
            }
            grants = GrantStore(database: database, secret: secret)
            generatedOperatorToken = try await grants.ensureOperatorToken(configured: options.adminToken)
            // Where the change log stands before anything a change could make stale is read (the
            // signing keys below, any credential once serving): the change watcher applies every
            // change after it, and the cache starts empty, so nothing needs dropping at its start.
            baseline = try await grants.generation()
        } catch {
            await database.shutdown()
            throw error
        }
        self.database = database
        clinic = ClinicStore(database: database)
        oauth = OAuthStore(grants: grants)
        smart = SMARTStore(grants: grants)
        do {
            tokens = try await TokenService(
                oauth: oauth, issuer: options.issuer ?? "http://\(options.host):\(options.port)", algorithm: options.tokenAlgorithm)
        } catch {
            await database.shutdown()
            throw error
        }
        let cache = CredentialCache()
        self.cache = cache
        appliedGeneration = AppliedGeneration(baseline)
        // The one place the cache learns of this instance's grant-chain changes (the change
        // watcher in `run` covers the other instances').
        grants.changes.listen { cache.invalidate($0) }
        auditWriter = AuditWriter(store: AuditStore(database: database), logger: logger)
        var pool = HTTPClient.Configuration.ConnectionPool(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 128)
        // A refused connection is a 502 now, not a retry until the deadline.
        pool.retryConnectionEstablishment = false
        httpClient = HTTPClient(
            eventLoopGroupProvider: .singleton,
            configuration: .init(redirectConfiguration: .disallow, timeout: .init(connect: .seconds(5), read: .seconds(300)), connectionPool: pool))
        outbound = OutboundAddressPolicy(
            allowedHosts: options.allowedOutboundHosts, resolve: options.hostResolver ?? OutboundAddressPolicy.systemResolve)
        clientKeySets = ClientKeySets(client: httpClient, policy: outbound, logger: logger, minimumRefetchInterval: options.jwksRefetchInterval)
        var pools: [String: UpstreamConnectionPool] = [:]
        for upstream in options.upstreams {
            pools[upstream.surface] = UpstreamConnectionPool(upstream: upstream, bufferLimit: UpstreamForwarder.bufferedResponseLimit)
            logger.info("gateway", metadata: ["surface": "\(upstream.surface)", "upstream": "\(upstream.url)"])
        }
        upstreamPools = pools
        loopUpstreams = LoopUpstreams(group: MultiThreadedEventLoopGroup.singleton, surfaces: catalogs.count)
        forwardingMetrics = ForwardingMetrics(shared: requestMetrics)
        connectionLimits = ConnectionLimits(perPeer: options.maxConnectionsPerPeer, exempt: options.trustedProxies)
        pages = try WebPages(secureCookies: tokens.issuer.lowercased().hasPrefix("https://"))
        let clinic = self.clinic
        let client = httpClient
        let trustedProxies = options.trustedProxies
        let fhirStore = FHIRStore(database: database)
        let exportRuns = ExportRuns(store: fhirStore)
        self.exportRuns = exportRuns
        let issuer = tokens.issuer
        registry = SurfaceRegistry(
            catalogs: catalogs, upstreams: options.upstreams, fhirBackend: options.fhirBackend,
            clinicAPI: { catalog, prefix in ClinicAPI(catalog: catalog, prefix: prefix, store: clinic) },
            forwarder: { catalog, upstream in
                UpstreamForwarder(
                    surface: catalog.surface, upstream: upstream, pool: pools[upstream.surface], client: client, trustedProxies: trustedProxies)
            },
            fhir: { catalog in FHIRAPI(catalog: catalog, store: fhirStore, issuer: issuer, exports: exportRuns, logger: logger) },
            fhirGateway: { catalog, forwarder, clinicWideIndex in
                FHIRGateway(catalog: catalog, forwarder: forwarder, issuer: issuer, clinicWideIndex: clinicWideIndex)
            })
        Self.bootstrapMetrics()
    }

    /// The `iss` of access tokens and the base of the token endpoint URL that client
    /// assertions must name as `aud` (with `--port 0`, set `issuer` to the real address).
    public var issuer: String { tokens.issuer }

    /// How many API key rows this instance has read from the database: once per lookup id (found
    /// or not) while it stays cached (until a change touches that key, or the cache lets it go),
    /// however often a key is presented.
    public var keyDatabaseLookups: Int { cache.databaseLookups }

    /// The last grant-chain change generation this instance's watcher has applied (at first, the one read at start-up).
    public var appliedChangeGeneration: Int64 { appliedGeneration.value.withLock { $0 } }
    private let appliedGeneration: AppliedGeneration

    private final class AppliedGeneration: Sendable {
        let value: Mutex<Int64>
        /// Set when a change rotated the signing keys, until they have been read again.
        let signingKeysStale = Atomic<Bool>(false)

        init(_ generation: Int64) { value = Mutex(generation) }
    }

    /// How many requests the gateway forwarded on its direct path (``DirectForwarding``).
    public var forwardedDirectly: Int { forwardingMetrics.forwardedDirectly }
    /// Of those, the requests read from the connection's bytes rather than by NIO's HTTP/1 parser.
    public var forwardedFromBytes: Int { forwardingMetrics.readAsBytes }
    /// How many requests the direct path answered itself (`/healthz`, `…/marketplace/me`).
    public var answeredDirectly: Int { forwardingMetrics.answeredLocally }

    /// The direct path (``DirectForwarding``), unless it is turned off.
    func directForwarding() -> DirectForwarding? {
        guard options.directForwarding else { return nil }
        return DirectForwarding(
            registry: registry, resolver: resolver, audit: auditWriter, upstreams: loopUpstreams, metrics: forwardingMetrics, logger: logger,
            serverName: Self.serverName)
    }

    static let serverName = "caregate"
    /// `/healthz`'s body, made once: the router's answer and the direct path's.
    static let healthBody = JSONResponse.encode(["status": "ok"] as JSONValue)

    /// What turns a presented credential into a ``Credential``, for the pipeline and the direct path alike.
    var resolver: CredentialResolver {
        CredentialResolver(grants: grants, oauth: oauth, smart: smart, tokens: tokens, cache: cache, registry: registry)
    }

    /// How many resolved credentials this instance holds in its cache.
    public var cachedCredentials: Int { cache.count }

    /// Whether this instance holds the credential of a presented API key in a clinic (its
    /// `X-Organization-Id`), resolved: for diagnostics and tests of what a change drops.
    public func cachesCredential(key presented: String, organization: String) -> Bool {
        guard let lookupID = grants.lookupID(ofPresentedKey: presented[...]), let bits = OrganizationBits(clientForm: organization) else { return false }
        return cache.get(CredentialCache.Key(lookupID: lookupID, organization: bits)) != nil
    }

    /// How many client JWK Sets this instance has parsed: once per distinct set while cached,
    /// however many assertions it verifies.
    public var clientKeySetParses: Int { clientKeySets.parses }

    /// The port the server listens on, once it does.
    public func port() async -> Int? { await listening.wait() }

    static let registry = PrometheusCollectorRegistry()
    private static let metricsBootstrapped = Mutex(false)

    static func bootstrapMetrics() {
        metricsBootstrapped.withLock { done in
            guard !done else { return }
            MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
            done = true
        }
    }

    /// The whole HTTP surface: the middleware in front (see ``CaregateResponder``), then the router.
    func makeResponder() -> CaregateResponder {
        let front: [any MiddlewareProtocol<Request, Response, CaregateContext>] = [
            TraceMiddleware(), RequestMetricsMiddleware(metrics: requestMetrics),
            EnforcementMiddleware(registry: registry, authenticator: RequestAuthenticator(resolver: resolver), audit: auditWriter),
        ]
        return CaregateResponder(front: front, router: makeRouter())
    }

    /// Caregate's own routes (everything but the enforced surfaces).
    func makeRouter() -> Router<CaregateContext> {
        // HEAD on every GET route (RFC 9110 §9.3.2), as `Allow` already says; the clinic API and gateway surfaces answer it themselves.
        let router = Router(context: CaregateContext.self, options: .autoGenerateHeadEndpoints)
        let methods = RouterMethods()
        router.add(middleware: RouterErrorMiddleware(methods: methods))
        router.get("healthz") { _, _ in Response(status: .ok, headers: JSONResponse.headers, body: .init(byteBuffer: Self.healthBody)) }
        let database = self.database
        router.get("readyz") { _, _ in
            do {
                _ = try await database.sql.raw("SELECT 1 AS ok").first()
                return JSONResponse.make(["status": "ready"] as JSONValue)
            } catch {
                throw APIError(.serviceUnavailable, "not_ready", "the database is not reachable")
            }
        }
        router.get("metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: ByteBuffer(bytes: Self.registry.emitToBuffer())))
        }
        let document = JSONResponse.encode(OpenAPIDocument.build(registry: registry, version: Self.version))
        router.get("openapi.json") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: document))
        }
        let tokenEndpoint = TokenEndpoint(grants: grants, oauth: oauth, tokens: tokens, registry: registry, keySets: clientKeySets, smart: smart)
        router.post("oauth2/token") { request, context in try await tokenEndpoint.handle(request, context) }
        router.post("oauth2/introspect") { request, context in try await tokenEndpoint.introspect(request, context) }
        router.post("oauth2/revoke") { request, context in try await tokenEndpoint.revoke(request, context) }
        router.post("api/2.0/oauth2/token") { request, context in try await tokenEndpoint.handle(request, context) }
        let tokens = self.tokens
        router.get(".well-known/jwks.json") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: tokens.current.jwks)))
        }
        let discovery = Discovery.documents(
            issuer: tokens.issuer, scopeNames: Set(catalogs.flatMap { $0.scopes.map(\.name) }).sorted(), version: Self.version)
        router.get(".well-known/oauth-authorization-server") { _, _ in JSONResponse.make(discovery.authorizationServer) }
        router.get(".well-known/smart-configuration") { _, _ in JSONResponse.make(discovery.smart) }
        router.get(".well-known/openid-configuration") { _, _ in JSONResponse.make(discovery.openID) }
        router.get(RouterPath(String(Discovery.fhirSMARTConfigurationPath.dropFirst()))) { _, _ in JSONResponse.make(discovery.smart) }
        let capabilityStatement = ByteBuffer(bytes: discovery.capabilityStatement.serialized())
        router.get(RouterPath(String(Discovery.metadataPath.dropFirst()))) { _, _ in
            Response(status: .ok, headers: [.contentType: "application/fhir+json"], body: .init(byteBuffer: capabilityStatement))
        }
        router.get(RouterPath(String(SMARTStyle.path.dropFirst()))) { _, _ in JSONResponse.make(SMARTStyle.document) }
        AuthorizeEndpoint(pages: pages, grants: grants, oauth: oauth, smart: smart, clinic: clinic, tokens: tokens, registry: registry)
            .register(on: router)
        let management = ManagementRoutes(
            grants: grants, clinic: clinic, audit: AuditStore(database: database), auditWriter: auditWriter, tokens: tokens, registry: registry,
            oauth: oauth, smart: smart, outbound: outbound, auditRetentionDays: options.auditRetentionDays)
        management.register(on: router)
        ConsoleRoutes(
            pages: pages, grants: grants, management: management, scopeReference: ScopeReferencePage(catalogs: catalogs), registry: registry
        ).register(on: router)
        methods.set(router.routes.map { ($0.method.rawValue, $0.path.description) })
        return router
    }

    /// Method and path of every route of the HTTP router (the clinic API's routes are the catalogs').
    public func routes() -> [(method: String, path: String)] {
        makeRouter().routes.map { ($0.method.rawValue, $0.path.description) }
    }

    /// Stops `run` as SIGTERM does: the server stops accepting, in-flight requests finish, the
    /// audit log is flushed. (Cancelling the task of `run` also stops it, but connections
    /// accepted in that instant are dropped unserved, which NIO treats as a fatal error.)
    public func shutdown() async {
        guard let group = running.withLock({ $0 }) else { return }
        await group.triggerGracefulShutdown()
    }

    /// Serves until SIGTERM/SIGINT (or the task is cancelled): in-flight requests finish,
    /// the audit log is flushed, then the database closes.
    public func run() async throws {
        let maxConnections = ConnectionLimits.overallCap(requested: options.maxConnections)
        // One peer must never be able to take every place: past a quarter of the overall cap the
        // per-peer cap would not stop it before the server stops accepting for everyone.
        let quarter = max(1, maxConnections / 4)
        let limits = connectionLimits.perPeer <= quarter ? connectionLimits : ConnectionLimits(perPeer: quarter, exempt: connectionLimits.exempt)
        if limits !== connectionLimits {
            logger.warning(
                "--max-connections-per-peer lowered to a quarter of the overall cap",
                metadata: ["requested": "\(connectionLimits.perPeer)", "used": "\(quarter)", "maxConnections": "\(maxConnections)"])
        }
        let (seconds, attoseconds) = options.idleTimeout.components
        let app = Application(
            responder: makeResponder(),
            server: .limitedHTTP1(
                configuration: .init(
                    additionalChannelHandlers: [ParserErrorHandler()],
                    idleTimeout: .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)),
                limits: limits, direct: directForwarding()),
            configuration: .init(
                address: .hostname(options.host, port: options.port), serverName: Self.serverName, backlog: 1_024,
                availableConnectionsDelegate: MaximumAvailableConnections(maxConnections, logger: logger)),
            onServerRunning: { [listening, logger] channel in
                listening.set(channel.localAddress?.port ?? 0)
                logger.info(
                    "caregate listening",
                    metadata: [
                        "address": "\(channel.localAddress.map { "\($0)" } ?? "?")", "maxConnections": "\(maxConnections)",
                        "maxConnectionsPerPeer": "\(limits.perPeer)",
                    ])
            },
            logger: logger)
        let grants = self.grants
        let cache = self.cache
        let tokens = self.tokens
        // Other instances' changes: what each touched, from the change log. This process's own
        // were applied when they committed (`grants.changes`); applying them again only drops
        // what they dropped already.
        let applied = self.appliedGeneration
        let watcher = PollingService(name: "change watcher", interval: options.changePollInterval, logger: logger) {
            let last = applied.value.withLock { $0 }
            let (generation, touched) = try await grants.changes(since: last)
            if generation != last {
                applied.value.withLock { $0 = generation }
                if let touched {
                    cache.invalidate(touched)
                    if touched.contains(.signingKeys) || touched.contains(.everything) { applied.signingKeysStale.store(true, ordering: .relaxed) }
                } else {
                    cache.invalidateAll()
                    applied.signingKeysStale.store(true, ordering: .relaxed)
                }
            }
            // Until the keys are read, every poll tries again: a rotation made elsewhere is not lost
            // to one failed read (the change itself counts as applied once the cache has dropped
            // what it touched).
            if applied.signingKeysStale.load(ordering: .relaxed) {
                try await tokens.reload()
                applied.signingKeysStale.store(false, ordering: .relaxed)
            }
        }
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: auditWriter), .init(service: watcher)]
        // Housekeeping: the audit log past its retention (0 keeps it all), ended console sessions,
        // SMART state that can no longer be used, and bulk exports past their hour.
        let audit = AuditStore(database: database)
        let fhirStore = FHIRStore(database: database)
        let retention = Int64(options.auditRetentionDays) * 86_400_000
        let logger = self.logger
        let smart = self.smart
        services.append(.init(service: PollingService(name: "housekeeping", interval: options.auditPruneInterval, logger: logger) {
            if retention > 0 {
                let deleted = try await audit.prune(olderThan: Clock.millis() - retention)
                if deleted > 0 { logger.info("audit events past retention deleted", metadata: ["segments": "\(deleted)"]) }
            }
            try await grants.pruneWebSessions()
            // An instance that has not polled for an hour drops every cached credential instead.
            try await grants.pruneChangeLog(before: Clock.millis() - 3_600_000)
            try await smart.prune()
            try await fhirStore.pruneExports()
        }))
        let clinic = self.clinic
        let outbox = PollingService(name: "email outbox", interval: .seconds(1), logger: logger) {
            _ = try await clinic.drainOutbox()
        }
        // Shut down in reverse: the HTTP server first (finishing in-flight requests),
        // the audit writer last (writing everything they recorded).
        let group = ServiceGroup(
            configuration: .init(
                services: services + [.init(service: outbox), .init(service: app)],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        running.withLock { $0 = group }
        defer { running.withLock { $0 = nil } }
        do {
            try await group.run()
        } catch {
            await release()
            throw error
        }
        await release()
    }

    /// What outlives the services: bulk exports in progress (failed while the database is
    /// still open, so that their clients learn it), upstream connections, the database.
    private func release() async {
        let stopped = await exportRuns.stop()
        if stopped > 0 { logger.info("bulk exports in progress stopped", metadata: ["exports": "\(stopped)"]) }
        for pool in upstreamPools.values { pool.shutdown() }
        loopUpstreams.shutdown()
        try? await httpClient.shutdown()
        await database.shutdown()
    }
}

/// The port the server bound, for callers that wait for it (tests bind port 0).
final class ListeningPort: Sendable {
    private let state = Mutex<(port: Int?, waiters: [CheckedContinuation<Int?, Never>])>((nil, []))

    func set(_ port: Int) {
        let waiters = state.withLock { state in
            state.port = port
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: port) }
    }

    func wait() async -> Int? {
        await withCheckedContinuation { continuation in
            let port: Int? = state.withLock { state in
                if let port = state.port { return port }
                state.waiters.append(continuation)
                return nil
            }
            if let port { continuation.resume(returning: port) }
        }
    }
}
