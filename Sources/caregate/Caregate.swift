import ArgumentParser
import CaregateServer
import CaregateStore
import Foundation
import Logging
import Scopes

@main
struct Caregate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "caregate",
        abstract: "Scope-based permission system for healthcare partner APIs.",
        subcommands: [ServeCommand.self, DemoCommand.self, ScopesCommand.self, CheckCommand.self])
}

/// Where to find catalogs, shared by the commands.
struct CatalogOptions: ParsableArguments {
    @Option(
        name: .customLong("catalogs"),
        help: "A directory of catalogs that add surfaces to the built-in ones or replace them by surface (default: $CAREGATE_CATALOGS).")
    var directory: String?

    func load() throws -> [CompiledCatalog] {
        try CatalogLoader.load(overriding: directory.map { URL(fileURLWithPath: $0) } ?? CatalogLoader.configuredDirectory())
    }

    func load(surface: String) throws -> CompiledCatalog {
        let catalogs = try load()
        guard let catalog = catalogs.first(where: { $0.surface == surface }) else {
            throw ValidationError("unknown surface \"\(surface)\"; known: \(catalogs.map(\.surface).joined(separator: ", "))")
        }
        return catalog
    }
}

struct ScopesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scopes", abstract: "List or validate scope catalogs.",
        subcommands: [List.self, Validate.self], defaultSubcommand: List.self)

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List a catalog's scopes (name, category, credential types, endpoints).")
        @OptionGroup var catalogs: CatalogOptions
        @Option(help: "Surface to list (default: every catalog).") var surface: String?
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            let selected = try surface.map { [try catalogs.load(surface: $0)] } ?? catalogs.load()
            let reports = selected.map(CatalogReport.init)
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                let data = surface == nil ? try encoder.encode(reports) : try encoder.encode(reports[0])
                print(String(decoding: data, as: UTF8.self))
            } else {
                print(reports.map(\.text).joined(separator: "\n"))
            }
        }
    }

    struct Validate: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Validate catalog files; exit 1 when any has a problem.")
        @Argument(help: "Catalog files.") var files: [String]

        func run() throws {
            var failed = false
            for file in files {
                do {
                    let catalog = try CatalogLoader.load(file: URL(fileURLWithPath: file))
                    let s = catalog.stats
                    print("ok  \(file): \(catalog.surface), \(s.scopes) scopes, \(catalog.routes.count) routes, \(catalog.atomCount)/\(ScopeSet.capacity) permission atoms")
                } catch {
                    failed = true
                    print("bad \(error)")
                }
            }
            if failed { throw ExitCode(1) }
        }
    }
}

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "May this scope set call this route? Prints allow or deny with the reason; exit 0 (allow), 1 (deny), 2 (bad input).")
    @OptionGroup var catalogs: CatalogOptions
    @Option(help: "Surface (catalog) to check against.") var surface: String
    @Option(help: "Space-separated scopes the credential holds.") var scopes: String
    @Option(help: "Credential type: api_key, oauth2, service_key, smart_on_fhir (default: no restriction).")
    var credentialType: String?
    @Argument(help: "HTTP method.") var method: String
    @Argument(help: "Request path, with the query if any (/v3/notes?includeSoapNote=true).") var path: String

    func run() throws {
        let catalog = try catalogs.load(surface: surface)
        var type: CredentialType?
        if let credentialType {
            guard let t = CredentialType(rawValue: credentialType) else {
                throw ValidationError("unknown credential type \"\(credentialType)\"")
            }
            type = t
        }
        let set: ScopeSet
        do {
            set = try catalog.resolve(scopes, credentialType: type)
        } catch {
            print("error: \(error)")
            throw ExitCode(2)
        }
        let effective = catalog.applyingDependencies(type.map { catalog.restricted(set, to: $0) } ?? set)
        let explanation = catalog.explain(effective, method: method.uppercased() == method ? method : method.uppercased(), target: path)
        if explanation.decision.isAllowed {
            print("allow: \(explanation.reason)")
        } else {
            if case .insufficientScope(_, let required) = explanation.decision {
                print("deny: Insufficient scope. Required: \(required)")
            } else {
                print("deny")
            }
            print("reason: \(explanation.reason)")
            throw ExitCode(1)
        }
    }
}

/// Options shared by `serve` and `demo`.
struct ServerArguments: ParsableArguments {
    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port to listen on (0: any free port).") var port = 8080
    @Option(help: "SQLite file path or postgres://… URL (default: $DATABASE_URL, else caregate.sqlite).") var database: String?
    @OptionGroup var catalogs: CatalogOptions
    @Option(help: "Log level: trace, debug, info, notice, warning, error.") var logLevel = "info"
    @Option(help: "Issuer (iss) of access tokens: the server's public URL (default $CAREGATE_ISSUER, else http://<host>:<port>).")
    var issuer: String?
    @Option(help: "Algorithm of token-signing keys generated from now on: ES256 or RS256.") var tokenAlgorithm = "ES256"
    @Option(name: .customLong("upstream"), help: ArgumentHelp(
        "Gateway mode: enforce a surface and forward it to an upstream (repeatable).", valueName: "SURFACE=URL"))
    var upstreams: [String] = []
    @Option(help: ArgumentHelp(
        "What serves /fhir/R4: builtin (FHIR R4 over the clinic database, also when the platform has an upstream) or upstream (the platform's upstream, behind the same confinement).",
        valueName: "builtin|upstream"))
    var fhir = "builtin"
    @Option(help: ArgumentHelp(
        "Gateway configuration file: {\"upstreams\": [{\"surface\", \"url\", \"timeoutSeconds\"?}]}.", valueName: "FILE"))
    var gatewayConfig: String?
    @Option(name: .customLong("trusted-proxy"), help: ArgumentHelp(
        "Address of a proxy in front of Caregate whose X-Forwarded-For/-Proto the gateway keeps (repeatable; anyone else's are replaced).",
        valueName: "IP"))
    var trustedProxies: [String] = []
    @Option(name: .customLong("allow-outbound-host"), help: ArgumentHelp(
        "A host (name or address) a client's jwksUri may name although it is loopback, private or link-local (repeatable).",
        valueName: "HOST"))
    var allowedOutboundHosts: [String] = []
    @Option(help: "Seconds a connection may wait for a complete request head, or stall in a body, before it is closed.")
    var idleTimeout = 30.0
    @Option(help: "Connections held open from one address (trusted proxies are not capped).") var maxConnectionsPerPeer = 1_024
    @Option(help: "Connections held open in all (default and ceiling: the descriptor limit less 256).") var maxConnections: Int?
    @Option(help: "Days audit events are kept (0: forever); GET /manage/audit/export streams them for longer keeping.")
    var auditRetentionDays = 90
    @Option(help: "Event-loop threads serving connections (default: one per core).") var eventLoops: Int?
    @Flag(
        inversion: .prefixedNo,
        help: "Forward what the gateway may forward, and answer /healthz and a cached credential's /marketplace/me, on the connection's event loop, without the request pipeline.")
    var directForwarding = true

    func options(defaultDatabase: String) throws -> ServerOptions {
        var options = ServerOptions()
        options.host = host
        options.port = port
        let environment = ProcessInfo.processInfo.environment
        options.database = DatabaseLocation(database ?? environment["DATABASE_URL"] ?? defaultDatabase)
        if let directory = catalogs.directory { options.catalogDirectory = URL(fileURLWithPath: directory) }
        options.adminToken = environment["CAREGATE_ADMIN_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        options.secret = environment["CAREGATE_SECRET"].flatMap { $0.isEmpty ? nil : $0 }
        if options.secret == nil, let file = environment["CAREGATE_SECRET_FILE"], !file.isEmpty {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw ValidationError("CAREGATE_SECRET_FILE: cannot read \(file)")
            }
            options.secret = text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        options.issuer = issuer ?? environment["CAREGATE_ISSUER"].flatMap { $0.isEmpty ? nil : $0 }
        guard let algorithm = TokenAlgorithm(rawValue: tokenAlgorithm.uppercased()) else {
            throw ValidationError("--token-algorithm must be ES256 or RS256")
        }
        options.tokenAlgorithm = algorithm
        for proxy in trustedProxies where proxy.isEmpty || !proxy.allSatisfy({ $0.isHexDigit || $0 == "." || $0 == ":" }) {
            throw ValidationError("--trusted-proxy takes an IP address, got \"\(proxy)\"")
        }
        options.trustedProxies = Set(trustedProxies)
        options.allowedOutboundHosts = Set(allowedOutboundHosts)
        guard idleTimeout > 0, idleTimeout <= 3_600 else { throw ValidationError("--idle-timeout must be between 0 and 3600 seconds") }
        options.idleTimeout = .milliseconds(Int64(idleTimeout * 1_000))
        guard maxConnectionsPerPeer > 0 else { throw ValidationError("--max-connections-per-peer must be at least 1") }
        options.maxConnectionsPerPeer = maxConnectionsPerPeer
        if let maxConnections, maxConnections < 1 { throw ValidationError("--max-connections must be at least 1") }
        options.maxConnections = maxConnections
        guard auditRetentionDays >= 0 else { throw ValidationError("--audit-retention-days must be 0 (keep forever) or more") }
        options.auditRetentionDays = auditRetentionDays
        options.directForwarding = directForwarding
        if let eventLoops, !(1...256).contains(eventLoops) { throw ValidationError("--event-loops must be between 1 and 256") }
        do {
            if let gatewayConfig { options.upstreams = try UpstreamConfiguration.load(file: URL(fileURLWithPath: gatewayConfig)) }
            options.upstreams += try upstreams.map { argument throws(GatewayConfigurationError) in try UpstreamConfiguration(argument: argument) }
        } catch {
            throw ValidationError("\(error)")
        }
        guard let fhirBackend = FHIRBackend(rawValue: fhir) else { throw ValidationError("--fhir must be builtin or upstream") }
        options.fhirBackend = fhirBackend
        return options
    }

    /// Sets the event loops' count (`--event-loops`), once, before the server is made.
    func useEventLoops() {
        if let eventLoops { CaregateServer.useEventLoops(eventLoops) }
    }

    func logger() throws -> Logger {
        guard let level = Logger.Level(rawValue: logLevel) else { throw ValidationError("unknown log level \"\(logLevel)\"") }
        LoggingSystem.bootstrap { label in
            var handler = JSONLogHandler(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: "caregate")
        logger.logLevel = level
        return logger
    }
}

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve", abstract: "Run the Caregate server (SQLite by default; PostgreSQL with --database postgres://… or DATABASE_URL).")
    @OptionGroup var server: ServerArguments

    func run() async throws {
        let logger = try server.logger()
        let options = try server.options(defaultDatabase: "caregate.sqlite")
        server.useEventLoops()
        logger.info("opening database", metadata: ["database": "\(options.database)"])
        let caregate = try await CaregateServer(options: options, logger: logger)
        if let token = caregate.generatedOperatorToken {
            FileHandle.standardOutput.write(Data("Operator token (shown once; set CAREGATE_ADMIN_TOKEN to choose your own): \(token)\n".utf8))
        }
        try await caregate.run()
    }
}

struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Serve a demo clinic on SQLite: creates a developer, clinic, installed app, keys and synthetic data, then prints curl commands.")
    @OptionGroup var server: ServerArguments
    @Option(help: "How many synthetic patients.") var patients = 25

    func run() async throws {
        let logger = try server.logger()
        var options = try server.options(defaultDatabase: "caregate-demo.sqlite")
        server.useEventLoops()
        if server.database == nil, case .sqlite(let path) = options.database {
            // The demo database is the demo's own: start it fresh each time.
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
            options.database = .sqlite(path: path)
        }
        let caregate = try await CaregateServer(options: options, logger: logger)
        let demo = try await DemoSetup.create(on: caregate, patients: patients)
        let running = Task { try await caregate.run() }
        guard let port = await caregate.port() else { return }
        let base = "http://\(server.host):\(port)"
        var text = "\nCaregate demo on \(base) (database \(options.database))\n"
        if let token = caregate.generatedOperatorToken { text += "Operator token: \(token)\n" }
        text += "Developer token: \(demo.developerToken)\nClinic admin token: \(demo.clinicAdminToken)\n"
        text += "Clinic: \(demo.organizationID) (X-Organization-Id: \(demo.organizationUUID))\nApp: \(demo.appID)\n\n"
        for (title, command) in demo.curlCommands(baseURL: base) { text += "# \(title)\n\(command)\n\n" }
        text += "Stop with Ctrl-C.\n"
        FileHandle.standardOutput.write(Data(text.utf8))  // unbuffered: scripts read it while the server runs
        try await running.value
    }
}
