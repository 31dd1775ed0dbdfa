@testable import CaregateServer
import NIOHTTP1
import Testing

/// `DirectRequestReader`: the narrow grammar of request heads the gateway's direct path reads
/// itself. Whatever it does not accept goes to NIO's parser, so a test here fails when it takes
/// more than it should, or reads a head differently from that parser.
@Suite("Direct request reader")
struct DirectRequestReaderTests {
    static func read(_ text: String) -> DirectRequestReader.Outcome {
        Array(text.utf8).withUnsafeBytes { DirectRequestReader.read($0) }
    }

    static func head(_ text: String) -> HTTPRequestHead? {
        Array(text.utf8).withUnsafeBytes { raw in
            guard case .bodiless(let head) = DirectRequestReader.read(raw) else { return nil }
            return DirectRequestReader.requestHead(head, target: DirectRequestReader.target(head, raw), raw)
        }
    }

    static let usual = "GET /api/2.0/patients/17?x=1&y=%20 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer a.b.c\r\nX-Spaced:  a  b \t\r\nEmpty:\r\n\r\n"

    @Test("a usual head: its length, target and fields as NIO's parser reads them (values without the spaces around them)")
    func usualHead() throws {
        let next = "GET /next HTTP/1.1\r\n\r\n"
        guard case .bodiless(let head) = Self.read(Self.usual + next) else {
            Issue.record("not read: \(Self.read(Self.usual))")
            return
        }
        #expect(head.length == Self.usual.utf8.count && head.method == .GET)
        let request = try #require(Self.head(Self.usual))
        #expect(request.uri == "/api/2.0/patients/17?x=1&y=%20" && request.version == .http1_1)
        #expect(request.headers.map { "\($0.name)=\($0.value)" } == ["Host=gw", "Authorization=Bearer a.b.c", "X-Spaced=a  b", "Empty="])
        for method in ["HEAD", "DELETE", "OPTIONS"] {
            #expect(Self.head("\(method) / HTTP/1.1\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n")?.method.rawValue == method)
        }
    }

    @Test("every prefix of a head is incomplete, never refused")
    func prefixes() {
        let bytes = Array(Self.usual.utf8)
        for end in 1..<bytes.count {
            let outcome = bytes[0..<end].withUnsafeBytes { DirectRequestReader.read($0) }
            #expect(outcome == .incomplete, "prefix of \(end) bytes: \(outcome)")
        }
    }

    @Test("anything outside the grammar is the parser's", arguments: [
        "POST / HTTP/1.1\r\n\r\n", "PUT / HTTP/1.1\r\n\r\n", "get / HTTP/1.1\r\n\r\n", "GET / HTTP/1.0\r\n\r\n", "GET / HTTP/2.0\r\n\r\n",
        "GET  / HTTP/1.1\r\n\r\n", "GET * HTTP/1.1\r\n\r\n", "GET http://a/ HTTP/1.1\r\n\r\n", "GET /a#b HTTP/1.1\r\n\r\n",
        "GET /a\"b HTTP/1.1\r\n\r\n", "GET /a\u{7F} HTTP/1.1\r\n\r\n", "\r\nGET / HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\n\r\n", "GET / HTTP/1.1\r\nHost: a\r\n\n", "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
        "GET / HTTP/1.1\r\nA: 1\r\n folded\r\n\r\n", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", "GET / HTTP/1.1\r\n: a\r\n\r\n",
        "GET / HTTP/1.1\r\nA\u{1}: b\r\n\r\n", "GET / HTTP/1.1\r\nA: b\u{0}\r\n\r\n", "GET / HTTP/1.1\r\nA: caf\u{E9}\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", "GET / HTTP/1.1\r\nContent-Length: 00\r\n\r\n",
        "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "GET / HTTP/1.1\r\ntransfer-encoding: identity\r\n\r\n",
        "GET / HTTP/1.1\r\nConnection: Close\r\n\r\n", "GET / HTTP/1.1\r\nConnection: keep-alive, upgrade\r\nUpgrade: websocket\r\n\r\n",
        "GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n",
    ])
    func outside(_ text: String) {
        #expect(Self.read(text) == .other, "\(text.debugDescription)")
    }

    @Test("heads over the size or field limits are the parser's, even before they end")
    func limits() {
        let long = "GET /" + String(repeating: "a", count: DirectRequestReader.maxHeadBytes) + " HTTP/1.1\r\n\r\n"
        #expect(Self.read(long) == .other)
        #expect(Self.read(String(long.prefix(DirectRequestReader.maxHeadBytes + 10))) == .other)
        let fields = (0...DirectRequestReader.maxFields).map { "F\($0): v\r\n" }.joined()
        #expect(Self.read("GET / HTTP/1.1\r\n" + fields + "\r\n") == .other)
        let allowed = (1..<DirectRequestReader.maxFields).map { "F\($0): v\r\n" }.joined()
        #expect(Self.head("GET / HTTP/1.1\r\n" + allowed + "\r\n")?.headers.count == DirectRequestReader.maxFields - 1)
    }
}
