import Foundation
import Testing

/// Runs the built `caregate` executable, as a user would.
func caregate(_ arguments: [String]) throws -> (status: Int32, output: String) {
    let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("caregate")
    let candidates = [binary, repositoryRoot.appendingPathComponent(".build/debug/caregate")]
    guard let executable = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
        throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: binary.path])
    }
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    process.currentDirectoryURL = repositoryRoot
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

@Suite("caregate CLI")
struct CLITests {
    @Test("check denies includeSoapNote=true with read:notes alone, naming read:soap_notes")
    func checkDeny() throws {
        let result = try caregate(["check", "--surface", "marketplace-v3", "--scopes", "read:notes", "GET", "/v3/notes?includeSoapNote=true"])
        #expect(result.status == 1)
        #expect(result.output.hasPrefix("deny: Insufficient scope. Required: read:soap_notes\n"))
    }

    @Test("check allows a bill with the legacy read:encounters")
    func checkAllow() throws {
        let result = try caregate(["check", "--surface", "marketplace-v3", "--scopes", "read:encounters", "GET", "/v3/bills/b1"])
        #expect(result.status == 0)
        #expect(result.output.hasPrefix("allow: GET /v3/bills/{id} requires read:bills"))
    }

    @Test("check: bad scopes exit 2 naming the scope")
    func checkBadInput() throws {
        let result = try caregate(["check", "--surface", "marketplace-v3", "--scopes", "read:patients read:nothing", "GET", "/v3/patients"])
        #expect(result.status == 2)
        #expect(result.output.contains("unknown scope \"read:nothing\""))
        let type = try caregate(["check", "--surface", "platform", "--scopes", "identity.merge", "--credential-type", "api_key", "POST", "/api/identity/merge"])
        #expect(type.status == 2)
        #expect(type.output.contains("cannot be carried by a credential of type API Key"))
    }

    @Test("scopes --surface platform shows the seed's counts")
    func listPlatform() throws {
        let result = try caregate(["scopes", "--surface", "platform"])
        #expect(result.status == 0)
        #expect(result.output.contains("40 scopes, 10 categories, 12 SMART, 11 self-service"))
        #expect(result.output.contains("identity.merge"))
        #expect(result.output.contains("[Service Key, OAuth 2.0]"))
        let json = try caregate(["scopes", "--surface", "platform", "--json"])
        let object = try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any]
        let stats = object?["stats"] as? [String: Int]
        #expect(stats == ["scopes": 40, "categories": 10, "smart": 12, "selfService": 11])
    }

    @Test("scopes validate: exit 0 for the shipped catalogs, 1 with file and entry for a bad one")
    func validate() throws {
        let files = ["marketplace-v3", "marketplace-v1", "platform", "practice-api"].map { "Catalogs/\($0).json" }
        let ok = try caregate(["scopes", "validate"] + files)
        #expect(ok.status == 0)
        #expect(ok.output.split(separator: "\n").filter { $0.hasPrefix("ok ") }.count == 4)

        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let bad = dir.appendingPathComponent("bad.json")
        let json = #"{"format":1,"surface":"bad","title":"Bad","categories":["A"],"defaultCredentialTypes":["api_key"],"scopes":[{"name":"read:a","category":"A","description":"a","aliasOf":"read:zz"}],"routes":[{"method":"GET","path":"/a"}]}"#
        try Data(json.utf8).write(to: bad)
        let result = try caregate(["scopes", "validate", bad.path])
        #expect(result.status == 1)
        #expect(result.output.contains(bad.path))
        #expect(result.output.contains(#"scopes[0] "read:a": aliasOf "read:zz" is not a scope of this catalog"#))
        #expect(result.output.contains("routes[0] GET /a: a route needs a scope, anyOf or public: true"))
    }
}
