import CaregateServer
import CaregateStore
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import Synchronization
import Testing

/// The storage backends every server test runs on.
enum Backend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite, postgres
    var testDescription: String { rawValue }

    /// A fresh SQLite file, or the PostgreSQL server that `scripts/test` started.
    func location() throws -> DatabaseLocation {
        switch self {
        case .sqlite:
            return .sqlite(path: FileManager.default.temporaryDirectory.appendingPathComponent("caregate-test-\(UUID().uuidString).sqlite").path)
        case .postgres:
            guard let url = ProcessInfo.processInfo.environment["CAREGATE_TEST_POSTGRES_URL"], !url.isEmpty else {
                throw TestSetupError("CAREGATE_TEST_POSTGRES_URL is not set: run ./scripts/test, which starts a PostgreSQL server")
            }
            return .postgres(url: url)
        }
    }
}

struct TestSetupError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A real Caregate server on a loopback port, talked to over HTTP.
final class TestServer: Sendable {
    let server: CaregateServer
    let base: String
    let operatorToken: String
    private let task: Task<Void, any Error>

    static let adminToken = "test-operator-token-0123456789"
    /// Catalogs/*.json compiled once for every server of the run: compiling them is about a second
    /// of CPU in a debug build, and a run starts well over a hundred servers on two cores.
    static let catalogs = Result { () throws(CatalogLoadError) in try CatalogLoader.load(overriding: catalogDirectory) }

    init(_ backend: Backend, configure: (inout ServerOptions) -> Void = { _ in }) async throws {
        var options = ServerOptions()
        options.port = 0
        options.database = try backend.location()
        options.catalogDirectory = catalogDirectory
        options.adminToken = Self.adminToken
        options.changePollInterval = .milliseconds(100)
        configure(&options)
        if options.catalogDirectory == catalogDirectory { options.catalogs = try Self.catalogs.get() }
        let logger = quietLogger
        let server = try await CaregateServer(options: options, logger: logger)
        self.server = server
        task = Task { try await server.run() }
        guard let port = await server.port() else { throw TestSetupError("server did not start") }
        base = "http://127.0.0.1:\(port)"
        operatorToken = Self.adminToken
    }

    /// Stops the server as SIGTERM does; cancels it if that takes more than 10 s, and gives up
    /// waiting 10 s later (a server that will not stop must not hang the whole suite).
    func stop() async {
        await server.shutdown()
        if await Self.finishes(task, within: .seconds(10)) { return }
        task.cancel()
        _ = await Self.finishes(task, within: .seconds(10))
    }

    /// Whether `task` ends within `limit` (it keeps running when it does not).
    static func finishes(_ task: Task<Void, any Error>, within limit: Duration) async -> Bool {
        let once = OnceFlag()
        return await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let answer: @Sendable (Bool) -> Void = { value in
                if once.claim() { continuation.resume(returning: value) }
            }
            Task { _ = try? await task.value; answer(true) }
            Task { try? await Task.sleep(for: limit); answer(false) }
        }
    }

    struct Reply: Sendable {
        var status: Int
        var headers: [String: String]
        var body: Data
        var json: JSONObject? { (try? JSONSerialization.jsonObject(with: body)).flatMap { $0 as? [String: Any] }.map(JSONObject.init) }
        var text: String { String(decoding: body, as: UTF8.self) }
        func header(_ name: String) -> String? { headers.first { $0.key.lowercased() == name.lowercased() }?.value }
    }

    func request(
        _ method: String, _ path: String, token: String? = nil, organization: String? = nil,
        json: Any? = nil, body: Data? = nil, headers: [String: String] = [:], timeout: TimeInterval = 30
    ) async throws -> Reply {
        try await httpRequest(
            base: base, method, path, token: token, organization: organization, json: json, body: body, headers: headers, timeout: timeout)
    }

    /// The status of a clinic API call made with `key` in `clinic`.
    func status(_ method: String, _ path: String, key: String, clinic: Clinic) async throws -> Int {
        try await request(method, path, token: key, organization: clinic.uuid).status
    }

    // MARK: Grant chain through the management API

    struct Clinic: Sendable {
        var id: String
        var uuid: String
        var adminToken: String
    }

    func createDeveloper() async throws -> (id: String, token: String) {
        let reply = try await request("POST", "/manage/developers", token: operatorToken, json: ["name": "Dev", "email": "dev@example.com"])
        try expectStatus(reply, 201)
        return (reply.json!.string("id"), reply.json!.string("token"))
    }

    func createClinic(patients: Int = 8) async throws -> Clinic {
        let reply = try await request("POST", "/manage/organizations", token: operatorToken, json: ["name": "Clinic"])
        try expectStatus(reply, 201)
        let clinic = Clinic(id: reply.json!.string("id"), uuid: reply.json!.string("uuid"), adminToken: reply.json!.string("adminToken"))
        if patients > 0 {
            // A large clinic takes a while on a machine the other suites load too.
            try expectStatus(try await request(
                "POST", "/manage/organizations/\(clinic.id)/sample-data", token: operatorToken, json: ["patients": patients],
                timeout: patients >= 500 ? 180 : 30), 201)
        }
        return clinic
    }

    /// An app; on the platform its scopes that are not self-service are approved through the
    /// operator's review queue, as an operator would (`approveReviews: false` leaves them pending).
    func createApp(
        developer: String, scopes: [String], surface: String = "marketplace-v3", approveReviews: Bool = true
    ) async throws -> (id: String, liveVersionId: String) {
        let slug = "app-" + UUID().uuidString.prefix(8).lowercased()
        let reply = try await request(
            "POST", "/manage/apps", token: developer, json: ["slug": slug, "name": "Test app", "scopes": scopes, "surface": surface])
        try expectStatus(reply, 201)
        let id = reply.json!.string("id")
        if approveReviews { try await approvePendingReviews(app: id) }
        return (id, reply.json!.string("liveVersionId"))
    }

    /// Approves every pending review of `app` through `POST /manage/scope-reviews/{id}/approve`.
    func approvePendingReviews(app: String) async throws {
        let queue = try await request("GET", "/manage/scope-reviews?status=pending", token: operatorToken)
        try expectStatus(queue, 200)
        let pending = (try JSONSerialization.jsonObject(with: queue.body) as? [[String: Any]] ?? []).filter { $0["appId"] as? String == app }
        for review in pending {
            try expectStatus(try await request("POST", "/manage/scope-reviews/\(review["id"] as! String)/approve", token: operatorToken), 200)
        }
    }

    func install(app: String, clinic: Clinic, scopes: [String]? = nil) async throws -> String {
        var body: [String: Any] = ["appId": app]
        if let scopes { body["scopes"] = scopes }
        let reply = try await request("POST", "/manage/installations", token: clinic.adminToken, json: body)
        try expectStatus(reply, 201)
        return reply.json!.string("id")
    }

    /// The usual start of a grant-chain test: a developer, a clinic with `patients` synthetic
    /// patients, an app declaring `scopes` on `surface`, installed there approving `approving`
    /// (all of the live version when `nil`).
    func installedApp(
        scopes: [String], approving: [String]? = nil, surface: String = "marketplace-v3", patients: Int = 2
    ) async throws -> (developer: (id: String, token: String), clinic: Clinic, app: (id: String, liveVersionId: String), installation: String) {
        let developer = try await createDeveloper()
        let clinic = try await createClinic(patients: patients)
        let app = try await createApp(developer: developer.token, scopes: scopes, surface: surface)
        let installation = try await install(app: app.id, clinic: clinic, scopes: approving)
        return (developer, clinic, app, installation)
    }

    func createKey(developer: String, app: String, scopes: [String]?, environment: String = "prd") async throws -> (id: String, key: String) {
        var body: [String: Any] = ["name": "key", "environment": environment]
        if let scopes { body["scopes"] = scopes }
        let reply = try await request("POST", "/manage/apps/\(app)/keys", token: developer, json: body)
        try expectStatus(reply, 201)
        return (reply.json!.string("id"), reply.json!.string("key"))
    }
}

/// A parsed JSON object with typed accessors that fail the test when a field is missing.
struct JSONObject: @unchecked Sendable {
    let raw: [String: Any]
    init(_ raw: [String: Any]) { self.raw = raw }
    func string(_ key: String) -> String { raw[key] as? String ?? "<missing \(key)>" }
    func object(_ key: String) -> JSONObject? { (raw[key] as? [String: Any]).map(JSONObject.init) }
    func array(_ key: String) -> [JSONObject] { (raw[key] as? [[String: Any]] ?? []).map(JSONObject.init) }
    func strings(_ key: String) -> [String] { raw[key] as? [String] ?? [] }
    subscript(key: String) -> Any? { raw[key] }
}

/// The logger of every server and database a test opens: the tests check behaviour, not log
/// lines, so only critical ones are written.
let quietLogger: Logger = {
    var logger = Logger(label: "caregate-test")
    logger.logLevel = .critical
    return logger
}()

func expectStatus(_ reply: TestServer.Reply, _ status: Int, sourceLocation: SourceLocation = #_sourceLocation) throws {
    if reply.status != status {
        Issue.record("expected \(status), got \(reply.status): \(reply.text.prefix(400))", sourceLocation: sourceLocation)
        throw TestSetupError("unexpected status \(reply.status)")
    }
}

/// Runs `body` against a fresh server on `backend`, then stops it.
func withServer(
    _ backend: Backend, configure: (inout ServerOptions) -> Void = { _ in }, _ body: (TestServer) async throws -> Void
) async throws {
    let server = try await TestServer(backend, configure: configure)
    do {
        try await body(server)
    } catch {
        await server.stop()
        throw error
    }
    await server.stop()
}

/// Runs a program to completion and returns its exit status and output (stdout and stderr).
/// It waits on a thread of its own: blocking a thread of the cooperative pool would starve
/// the server under test, which runs on that pool in this process.
func runProgram(_ executable: String, _ arguments: [String], in directory: URL? = nil) async throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let directory { process.currentDirectoryURL = directory }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    return await withCheckedContinuation { continuation in
        Thread {
            let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            continuation.resume(returning: (process.terminationStatus, output))
        }.start()
    }
}

/// Starts a helper process that keeps running (an upstream, a file server) and returns it
/// with the first line it prints on standard output, which announces where it listens.
func startHelper(_ executable: URL, _ arguments: [String], standardError: FileHandle? = nil) throws -> (process: Process, firstLine: String) {
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    let out = Pipe()
    process.standardOutput = out
    if let standardError { process.standardError = standardError }
    try process.run()
    var text = ""
    while !text.contains("\n") {
        let data = out.fileHandleForReading.availableData
        guard !data.isEmpty else { throw TestSetupError("\(executable.lastPathComponent) exited: \(text)") }
        text += String(decoding: data, as: UTF8.self)
    }
    return (process, String(text.prefix { $0 != "\n" }))
}

/// A helper server (an upstream) as a process on a loopback port, started by ``startHelper`` and
/// announcing itself with "listening on PORT"; stopped for good by ``stop()`` or when released.
final class ListeningHelper: Sendable {
    let port: Int
    private let process: Mutex<Process?>

    init(_ executable: URL, _ arguments: [String], name: String) throws {
        let (process, line) = try startHelper(executable, arguments)
        guard line.hasPrefix("listening on "), let port = Int(line.dropFirst("listening on ".count)) else {
            stopHelper(process)
            throw TestSetupError("\(name) said \(line)")
        }
        self.port = port
        self.process = Mutex(process)
    }

    var url: String { "http://127.0.0.1:\(port)" }

    func stop() {
        process.withLock { process in
            process.map(stopHelper)
            process = nil
        }
    }

    deinit { stop() }
}

/// Stops a helper for good (SIGKILL: the test runner's children may inherit an ignored SIGTERM).
func stopHelper(_ process: Process) {
    kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()
}

/// An executable of this package, built beside the test bundle (or in `.build/debug`).
func builtProduct(_ name: String) throws -> URL {
    let candidates = [
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(name),
        repositoryRoot.appendingPathComponent(".build/debug/\(name)"),
    ]
    guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
        throw TestSetupError("\(name) is not built (swift build --build-tests builds it)")
    }
    return found
}

/// Runs a program to completion with `posix_spawn` and `waitpid` (output to a file), for
/// programs that leave a daemon behind (`pg_ctl start`): Foundation's `Process.waitUntilExit`
/// on Linux can spin forever on those.
func runSpawned(_ executable: String, _ arguments: [String]) async throws -> (status: Int32, output: String) {
    let output = FileManager.default.temporaryDirectory.appendingPathComponent("caregate-spawn-\(UUID().uuidString).log").path
    defer { try? FileManager.default.removeItem(atPath: output) }
    let child = try spawn(executable, arguments, output: output, append: false)
    let status: Int32 = await withCheckedContinuation { continuation in
        Thread {
            var status: Int32 = 0
            while waitpid(child, &status, 0) == -1 && errno == EINTR {}
            continuation.resume(returning: (status >> 8) & 0xff)
        }.start()
    }
    return (status, (try? String(contentsOfFile: output, encoding: .utf8)) ?? "")
}

/// Starts `executable` with `posix_spawn`: standard output and error to the file `output`
/// (truncated, or appended to), standard input from /dev/null, no other descriptor of this
/// process, this process's environment unless `environment` is given. The caller reaps it with `waitpid`.
func spawn(_ executable: String, _ arguments: [String], output: String, append: Bool, environment: [String: String]? = nil) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0o644)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    // Nothing else of this process's: an inherited descriptor (another child's pipe, Foundation's
    // socket that tells a Process its child exited) would keep that open for as long as this child lives.
    guard closeFrom(&actions, 3) == 0 else { throw TestSetupError("posix_spawn_file_actions_addclosefrom_np failed") }
    let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
    let envp: [UnsafeMutablePointer<CChar>?]? = environment.map { $0.map { strdup("\($0.key)=\($0.value)") } + [nil] }
    defer { for pointer in argv + (envp ?? []) { free(pointer) } }
    var pid: pid_t = 0
    let spawned = envp.map { envp in posix_spawn(&pid, executable, &actions, nil, argv, envp) } ?? posix_spawn(&pid, executable, &actions, nil, argv, environ)
    guard spawned == 0 else { throw TestSetupError("posix_spawn \(executable): \(spawned)") }
    return pid
}

/// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34 and later), which Swift's Glibc module
/// does not declare.
private let closeFrom: @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32 = {
    guard let symbol = dlsym(dlopen(nil, RTLD_NOW), "posix_spawn_file_actions_addclosefrom_np") else {
        fatalError("this glibc has no posix_spawn_file_actions_addclosefrom_np (2.34 and later have it)")
    }
    return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
}()

/// One HTTP request to a Caregate at `base` (a server of this process or another).
func httpRequest(
    base: String, _ method: String, _ path: String, token: String? = nil, organization: String? = nil,
    json: Any? = nil, body: Data? = nil, headers: [String: String] = [:], timeout: TimeInterval = 30
) async throws -> TestServer.Reply {
    var request = URLRequest(url: URL(string: base + path)!)
    request.timeoutInterval = timeout  // a hung request fails the test instead of the run
    request.httpMethod = method
    if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
    if let organization { request.setValue(organization, forHTTPHeaderField: "X-Organization-Id") }
    if let json {
        request.httpBody = try JSONSerialization.data(withJSONObject: json)
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
    }
    if let body { request.httpBody = body }
    for (k, v) in headers { request.setValue(v, forHTTPHeaderField: k) }
    let (data, response) = try await URLSession.shared.data(for: request)
    let http = response as! HTTPURLResponse
    var fields: [String: String] = [:]
    for (k, v) in http.allHeaderFields { fields["\(k)"] = "\(v)" }
    return TestServer.Reply(status: http.statusCode, headers: fields, body: data)
}

/// True for the first caller only.
final class OnceFlag: Sendable {
    private let done = Atomic(false)
    func claim() -> Bool { !done.exchange(true, ordering: .relaxed) }
}

/// Undoes migration 10 (SMART App Launch), for tests that simulate a database of an older version.
let undoSMARTLaunchSchema = [
    "DROP TABLE grant_change_log", "DROP TABLE clinical_resources", "DROP TABLE export_jobs", "DROP TABLE export_files",
    "DROP TABLE smart_launches", "DROP TABLE authorization_requests", "DROP TABLE authorization_codes", "DROP TABLE token_families",
    "DROP TABLE refresh_tokens", "DROP TABLE sign_in_failures", "DROP INDEX clinic_users_username",
    "ALTER TABLE oauth_clients DROP COLUMN redirect_uris", "ALTER TABLE oauth_clients DROP COLUMN launch_url",
    "ALTER TABLE oauth_clients DROP COLUMN is_public", "DELETE FROM caregate_schema WHERE version >= 10",
]
