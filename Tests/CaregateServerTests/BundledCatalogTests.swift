import CaregateServer
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing

/// The shipped catalogs travel inside the binary.
@Suite struct BundledCatalogTests {
    @Test("the catalogs in the binary are Catalogs/*.json, byte for byte (scripts/bundle-catalogs writes them)")
    func bundledMatchesTheDirectory() throws {
        let directory = repositoryRoot.appendingPathComponent("Catalogs")
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".json") }.sorted()
        #expect(CatalogLoader.bundledFiles.map(\.name) == files)
        for file in CatalogLoader.bundledFiles {
            let onDisk = try String(contentsOf: directory.appendingPathComponent(file.name), encoding: .utf8)
            #expect(file.json == onDisk.trimmingCharacters(in: .newlines), "\(file.name): run scripts/bundle-catalogs")
        }
    }

    @Test("a copy of caregate outside the repository, started in an empty directory without CAREGATE_CATALOGS, serves /v3/marketplace/me")
    func binaryRunsAnywhere() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let binary = directory.appendingPathComponent("caregate")
        // Copied by cp, not in this process: a file this process holds open for writing leaks into
        // any child another test spawns meanwhile, and executing it then fails (ETXTBSY).
        let copied = try await runSpawned("/bin/cp", [try builtProduct("caregate").path, binary.path])
        try #require(copied.status == 0, "cp: \(copied.output)")
        let work = directory.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)

        let process = Process()
        process.executableURL = binary
        process.arguments = ["demo", "--port", "0", "--patients", "1", "--log-level", "error"]
        process.currentDirectoryURL = work
        var environment = ProcessInfo.processInfo.environment
        environment["CAREGATE_CATALOGS"] = nil
        process.environment = environment
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        defer {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        // The demo prints its address and a ready-to-paste /v3/marketplace/me command.
        var text = ""
        while !text.contains("Stop with Ctrl-C.") {
            let data = out.fileHandleForReading.availableData
            guard !data.isEmpty else { throw TestSetupError("caregate demo exited: \(text)") }
            text += String(decoding: data, as: UTF8.self)
        }
        let command = try #require(text.split(separator: "\n").first { $0.hasPrefix("curl") && $0.contains("/v3/marketplace/me") })
        let url = try #require(command.split(separator: " ").first { $0.hasPrefix("http") }).description
        let key = try #require(command.firstMatch(of: /Bearer ([^"]+)"/)).1
        let organization = try #require(command.firstMatch(of: /X-Organization-Id: ([^"]+)"/)).1
        var request = URLRequest(url: URL(string: url)!)
        request.setValue("Bearer \(key)", forHTTPHeaderField: "Authorization")
        request.setValue(String(organization), forHTTPHeaderField: "X-Organization-Id")
        let (data, response) = try await URLSession.shared.data(for: request)
        #expect((response as? HTTPURLResponse)?.statusCode == 200)
        let body = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let me = try #require(body["data"] as? [String: Any])
        #expect(me["scopes"] is [String])
    }
}
