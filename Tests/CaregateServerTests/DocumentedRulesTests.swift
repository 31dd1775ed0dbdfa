import Foundation
import Testing

@testable import CaregateServer

/// What the document says of a query value is what the server accepts: a schema-valid value is
/// never refused, and nothing the server refuses is schema-valid.
@Suite struct DocumentedRulesTests {
    /// Whether a value matches the string schema's pattern.
    static func documented(by schema: Schema) throws -> (String) -> Bool {
        guard case .string(_, _, let pattern?, _) = schema else { throw CocoaError(.formatting) }
        let regex = try NSRegularExpression(pattern: pattern)
        return { text in regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil }
    }

    @Test("a date's documented pattern accepts exactly the days the server does, 1899 to 2201, leap days included")
    func dates() throws {
        let rule = ValueRule.date
        let documented = try Self.documented(by: rule.schema)
        func served(_ text: String) -> Bool { (try? rule.check(text, name: "since")) != nil }
        var accepted = 0
        for year in 1899...2201 {
            for month in 0...13 {
                for day in 0...32 {
                    let text = String(format: "%04d-%02d-%02d", year, month, day)
                    let (inDocument, byServer) = (documented(text), served(text))
                    if inDocument != byServer { Issue.record("\(text): document \(inDocument), server \(byServer)") }
                    if byServer { accepted += 1 }
                }
            }
        }
        // 301 years of 365 days, and the leap days: 1904–2196 every four years but 2100.
        #expect(accepted == 301 * 365 + 73)
        for text in ["2024-02-29 ", "2024-2-29", "02024-02-29", "2024-02-29\n"] {
            #expect(!documented(text) && !served(text), "\(text)")
        }
    }

    @Test("a required text field's documented pattern accepts exactly what the server does: white space as it trims it, no control characters", arguments: [Backend.sqlite])
    func requiredText(_ backend: Backend) async throws {
        let documented = try Self.documented(by: Schema.requiredText(max: 200))
        // Every character the server trims as white space, alone and around a letter, and the ones
        // ECMA's or Python's `\s` counts and it does not (U+FEFF), or the other way round.
        let spaces: [Unicode.Scalar] = ["\t", "\n", "\r", " ", "\u{85}", "\u{A0}", "\u{1680}", "\u{2000}", "\u{2007}", "\u{200A}", "\u{200B}",
                                        "\u{2028}", "\u{2029}", "\u{202F}", "\u{205F}", "\u{3000}"]
        var texts = spaces.flatMap { space in [String(space), "\(space)a", "a\(space)", "\(space)\(space)"] }
        texts += ["\u{FEFF}", "\u{200C}", "\u{301}", " \u{301}", "\u{B}", " \u{C}", "a\u{0}", "a\u{1F}", "a\u{7F}", "\u{1F600}", "é", ""]
        try await withServer(backend) { s in
            for text in texts {
                let reply = try await s.request("POST", "/manage/organizations", token: s.operatorToken, json: ["name": text])
                #expect(reply.status == 201 || reply.status == 400, "\(text.unicodeScalars.map { String($0.value, radix: 16) }): \(reply.status)")
                #expect(documented(text) == (reply.status == 201),
                        "\(text.unicodeScalars.map { String($0.value, radix: 16) }): document \(documented(text)), server \(reply.status)")
            }
        }
    }

    @Test("a FHIR id's documented pattern leaves out . and .., which the path rules refuse")
    func fhirIDs() throws {
        let documented = try Self.documented(by: FHIROperations.id)
        for text in [".", "..", "", String(repeating: "a", count: 65), "a/b", "a b"] { #expect(!documented(text), "\(text)") }
        for text in ["...", ".a", "a.", "pat-0a1b", "pat_0a1b", String(repeating: "a", count: 64)] { #expect(documented(text), "\(text)") }
    }
}
