import CaregateServer
import Foundation
import Scopes
import Testing

let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
let catalogDirectory = repositoryRoot.appendingPathComponent("Catalogs")

/// A fresh temporary directory, removed by the caller.
func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("caregate-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

@Suite("Catalog loader")
struct CatalogLoaderTests {
    @Test("the four shipped catalogs load and validate")
    func shipped() throws {
        let catalogs = try CatalogLoader.loadDirectory(catalogDirectory)
        #expect(catalogs.map(\.surface).sorted() == ["marketplace-v1", "marketplace-v3", "platform", "practice-api"])
        let platform = try #require(catalogs.first { $0.surface == "platform" })
        #expect(platform.stats == CatalogStats(scopes: 40, categories: 10, smart: 12, selfService: 11))
    }

    @Test("unknown keys, wrong types and bad JSON are reported with file and entry")
    func decodingErrors() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let cases: [(String, String)] = [
            (#"{"format":1,"surface":"x","title":"X","categories":["A"],"defaultCredentialTypes":["api_key"],"scopes":[{"name":"read:a","category":"A","description":"a","aliasof":"read:b"}]}"#,
             #"scopes[0]: unknown key "aliasof""#),
            (#"{"format":1,"surface":"x","title":"X","categories":["A"],"defaultCredentialTypes":["api-key"]}"#,
             #"defaultCredentialTypes[0]: unknown credential type "api-key""#),
            (#"{"format":1,"surface":"x","title":"X","categories":["A"]}"#, #"missing key "defaultCredentialTypes""#),
            (#"{"format":1,"#, "not valid JSON"),
        ]
        for (i, (json, expected)) in cases.enumerated() {
            let file = dir.appendingPathComponent("bad\(i).json")
            try Data(json.utf8).write(to: file)
            do {
                _ = try CatalogLoader.load(file: file)
                Issue.record("expected \(file.lastPathComponent) to be refused")
            } catch {
                #expect(error.file == file.path)
                #expect(error.description.contains(expected) || (expected == "not valid JSON" && !error.problems.isEmpty),
                        "\(error.description) should mention \(expected)")
            }
        }
    }

    @Test("a directory with one bad file names that file and keeps the others' problems apart")
    func directory() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.copyItem(at: catalogDirectory.appendingPathComponent("marketplace-v3.json"), to: dir.appendingPathComponent("a.json"))
        try FileManager.default.copyItem(at: catalogDirectory.appendingPathComponent("marketplace-v3.json"), to: dir.appendingPathComponent("b.json"))
        do {
            _ = try CatalogLoader.loadDirectory(dir)
            Issue.record("expected a duplicate surface")
        } catch {
            #expect(error.problems.count == 1)
            #expect(error.problems[0].contains("b.json") && error.problems[0].contains("already defined"))
        }
    }

    @Test("oversized files are refused before reading")
    func oversized() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("big.json")
        try Data(repeating: 0x20, count: CatalogLoader.maxFileBytes + 1).write(to: file)
        #expect(throws: CatalogLoadError.self) { try CatalogLoader.load(file: file) }
    }

    @Test("20k mutated catalog files: a clean error or a valid catalog, never a crash")
    func fuzz() throws {
        let original = Array(try Data(contentsOf: catalogDirectory.appendingPathComponent("marketplace-v1.json")))
        var rng = SystemRandomNumberGenerator()
        let bytes: [UInt8] = Array(#"{}[]",:0123456789abcdefghijklmnopqrstuvwxyz/._-*?&={} truefalsenull\"#.utf8) + [0, 0xFF, 0xC3]
        var loaded = 0, refused = 0
        for _ in 0..<20_000 {
            var data = original
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                let at = Int.random(in: 0..<data.count, using: &rng)
                switch Int.random(in: 0..<3, using: &rng) {
                case 0: data[at] = bytes.randomElement(using: &rng)!
                case 1: data.remove(at: at)
                default: data.insert(bytes.randomElement(using: &rng)!, at: at)
                }
            }
            do {
                _ = try CatalogLoader.compile(Data(data), file: "fuzz.json")
                loaded += 1
            } catch {
                #expect(!error.problems.isEmpty)
                refused += 1
            }
        }
        #expect(refused > 1_000)
        #expect(loaded + refused == 20_000)
    }
}
