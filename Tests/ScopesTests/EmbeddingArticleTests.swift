import Foundation
import Scopes
import Testing

/// The DocC article "Embed Caregate's engine in your server" shows this code; the second
/// test keeps the article's code block and the marked region below identical, so the
/// article always shows code that compiles and does what it says.
@Suite("Embedding article")
struct EmbeddingArticleTests {
    @Test("the article's code runs: 403 naming read:history, allowed without the query")
    func articleCodeRuns() throws {
        // BEGIN ARTICLE
        let json = #"""
        {"format": 1, "surface": "notes", "title": "Notes API", "categories": ["Notes"],
         "defaultCredentialTypes": ["api_key"],
         "scopes": [{"name": "read:notes", "category": "Notes", "description": "Read notes"},
                    {"name": "read:history", "category": "Notes", "description": "Read a note's edits"}],
         "routes": [{"method": "GET", "path": "/notes/{id}", "scope": "read:notes",
                     "when": [{"query": "includeHistory", "scope": "read:history"}]}]}
        """#
        let catalog = try CompiledCatalog(JSONDecoder().decode(CatalogDefinition.self, from: Data(json.utf8)))
        let key = try catalog.resolve(names: ["read:notes", "read:history"], credentialType: .apiKey)
        let grants = try catalog.resolve("read:notes")  // what the clinic approved for the app
        let effective = catalog.effectiveSet(credential: key, grants: grants, credentialType: .apiKey)
        let decision = catalog.decide(effective, method: .get, path: "/notes/n1", query: "includeHistory=true")
        switch decision {
        case .allowed(let route): print("200, forward to", catalog.routes[route.index].template)
        case .insufficientScope(_, let required): print("403 Insufficient scope. Required: \(required)")
        default: print("404, 405 or 400: \(decision)")  // notFound, methodNotAllowed, invalidPath
        }
        // END ARTICLE

        guard case .insufficientScope(let route, let required) = decision else {
            Issue.record("expected a refusal for scope, got \(decision)")
            return
        }
        #expect(required == "read:history")
        #expect(catalog.routes[route.index].template == "GET /notes/{id}")
        #expect(catalog.scopeNames(in: effective) == ["read:notes"])
        #expect(catalog.decide(effective, method: .get, path: "/notes/n1", query: nil) == .allowed(route))
    }

    @Test("the article's code block is the code the first test runs")
    func articleMatchesTest() throws {
        let here = URL(fileURLWithPath: #filePath)
        let article = here.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Sources/Scopes/Scopes.docc/EmbeddingTheEngine.md")
        let articleLines = try String(contentsOf: article, encoding: .utf8).components(separatedBy: "\n")
        let testLines = try String(contentsOf: here, encoding: .utf8).components(separatedBy: "\n")

        let block = try #require(Self.region(of: articleLines, from: { $0 == "```swift" }, to: { $0 == "```" }))
        let marked = try #require(Self.region(of: testLines, from: { $0 == "// BEGIN ARTICLE" }, to: { $0 == "// END ARTICLE" }))
        #expect(!block.isEmpty)
        #expect(block == marked)
    }

    /// The lines strictly between the first line matching `from` and the next matching `to`,
    /// each without its leading whitespace, blank lines dropped (indentation differs between
    /// a Markdown block and a function body).
    static func region(of lines: [String], from: (String) -> Bool, to: (String) -> Bool) -> [String]? {
        let trimmed = lines.map { String($0.drop(while: { $0 == " " || $0 == "\t" })) }
        guard let start = trimmed.firstIndex(where: from),
              let end = trimmed[(start + 1)...].firstIndex(where: to)
        else { return nil }
        return trimmed[(start + 1)..<end].filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
    }
}
