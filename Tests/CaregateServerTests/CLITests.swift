import Foundation
import Testing

/// Runs the built `caregate` executable, as a user would.
func caregate(_ arguments: [String]) async throws -> (status: Int32, output: String) {
    let executable = try builtProduct("caregate")
    return try await runProgram(executable.path, arguments, in: repositoryRoot)
}

/// `caregate demo` started as a user starts it, from the repository, on its own port; its standard
/// output read until it serves ("Stop with Ctrl-C."). `stop()` sends SIGTERM (the graceful path)
/// and waits for it to exit.
struct DemoProcess {
    let process = Process()
    let output: String

    init(_ arguments: [String]) throws {
        process.executableURL = try builtProduct("caregate")
        process.arguments = ["demo", "--port", "0", "--log-level", "error"] + arguments
        process.currentDirectoryURL = repositoryRoot
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        var text = ""
        while !text.contains("Stop with Ctrl-C.") {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
        }
        output = text
    }

    func stop() {
        process.terminate()
        process.waitUntilExit()
    }
}

@Suite("caregate CLI")
struct CLITests {
    @Test("check denies includeSoapNote=true with read:notes alone, naming read:soap_notes")
    func checkDeny() async throws {
        let result = try await caregate(["check", "--surface", "marketplace-v3", "--scopes", "read:notes", "GET", "/v3/notes?includeSoapNote=true"])
        #expect(result.status == 1)
        #expect(result.output.hasPrefix("deny: Insufficient scope. Required: read:soap_notes\n"))
    }

    @Test("check allows a bill with the legacy read:encounters")
    func checkAllow() async throws {
        let result = try await caregate(["check", "--surface", "marketplace-v3", "--scopes", "read:encounters", "GET", "/v3/bills/b1"])
        #expect(result.status == 0)
        #expect(result.output.hasPrefix("allow: GET /v3/bills/{id} requires read:bills"))
    }

    @Test("check: bad scopes exit 2 naming the scope")
    func checkBadInput() async throws {
        let result = try await caregate(["check", "--surface", "marketplace-v3", "--scopes", "read:patients read:nothing", "GET", "/v3/patients"])
        #expect(result.status == 2)
        #expect(result.output.contains("unknown scope \"read:nothing\""))
        let type = try await caregate(["check", "--surface", "platform", "--scopes", "identity.merge", "--credential-type", "api_key", "POST", "/api/identity/merge"])
        #expect(type.status == 2)
        #expect(type.output.contains("cannot be carried by a credential of type API Key"))
    }

    @Test("scopes --surface platform shows the seed's counts")
    func listPlatform() async throws {
        let result = try await caregate(["scopes", "--surface", "platform"])
        #expect(result.status == 0)
        #expect(result.output.contains("40 scopes, 10 categories, 12 SMART, 11 self-service"))
        #expect(result.output.contains("identity.merge"))
        #expect(result.output.contains("[Service Key, OAuth 2.0]"))
        let json = try await caregate(["scopes", "--surface", "platform", "--json"])
        let object = try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any]
        let stats = object?["stats"] as? [String: Int]
        #expect(stats == ["scopes": 40, "categories": 10, "smart": 12, "selfService": 11])
    }

    @Test("scopes validate: exit 0 for the shipped catalogs, 1 with file and entry for a bad one")
    func validate() async throws {
        let files = ["marketplace-v3", "marketplace-v1", "platform", "practice-api"].map { "Catalogs/\($0).json" }
        let ok = try await caregate(["scopes", "validate"] + files)
        #expect(ok.status == 0)
        #expect(ok.output.split(separator: "\n").filter { $0.hasPrefix("ok ") }.count == 4)

        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let bad = dir.appendingPathComponent("bad.json")
        let json = #"{"format":1,"surface":"bad","title":"Bad","categories":["A"],"defaultCredentialTypes":["api_key"],"scopes":[{"name":"read:a","category":"A","description":"a","aliasOf":"read:zz"}],"routes":[{"method":"GET","path":"/a"}]}"#
        try Data(json.utf8).write(to: bad)
        let result = try await caregate(["scopes", "validate", bad.path])
        #expect(result.status == 1)
        #expect(result.output.contains(bad.path))
        #expect(result.output.contains(#"scopes[0] "read:a": aliasOf "read:zz" is not a scope of this catalog"#))
        #expect(result.output.contains("routes[0] GET /a: a route needs a scope, anyOf or public: true"))
    }

    @Test("serve refuses a bad gateway configuration with a clear message")
    func badGatewayConfiguration() async throws {
        let noEquals = try await caregate(["serve", "--port", "0", "--upstream", "practice-api"])
        #expect(noEquals.status != 0 && noEquals.output.contains("--upstream takes SURFACE=URL"))
        let badURL = try await caregate(["serve", "--port", "0", "--upstream", "practice-api=ftp://127.0.0.1:1"])
        #expect(badURL.status != 0 && badURL.output.contains("is not an http(s)://host[:port][/path] URL"))
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("caregate-gateway-\(UUID().uuidString).json")
        try Data(#"{"upstreams": [{"surface": "practice-api"}]}"#.utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let incomplete = try await caregate(["serve", "--port", "0", "--gateway-config", file.path])
        #expect(incomplete.status != 0 && incomplete.output.contains(file.path) && incomplete.output.contains("url"))
    }

    @Test("--event-loops sets how many event-loop threads serve; 0 is refused with a clear message")
    func eventLoops() async throws {
        let refused = try await caregate(["serve", "--port", "0", "--event-loops", "0"])
        #expect(refused.status != 0 && refused.output.contains("--event-loops must be between 1 and 256"))

        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        // Five: a count no default of the machines this runs on gives (one per core).
        let demo = try DemoProcess(["--patients", "1", "--event-loops", "5", "--database", dir.appendingPathComponent("loops.sqlite").path])
        defer { demo.stop() }
        #expect(demo.output.contains("Stop with Ctrl-C."))
        // NIO names the shared group's threads NIO-SGLTN-<group>-#<loop>.
        let pid = demo.process.processIdentifier
        let tasks = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")
        let loops = tasks.filter { task in
            let name = (try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/comm", encoding: .utf8)) ?? ""
            return name.hasPrefix("NIO-SGLTN-")
        }
        #expect(loops.count == 5)
    }
}
