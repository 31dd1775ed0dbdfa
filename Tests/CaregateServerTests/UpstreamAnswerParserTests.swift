import NIOCore
import NIOHTTP1
import Testing

@testable import CaregateServer

/// The direct path's reader of upstream answers: framing as RFC 9112 §6.3 has it, whatever the
/// reads' boundaries, and a refusal of anything that could frame an answer two ways.
@Suite("Upstream answer parser")
struct UpstreamAnswerParserTests {
    /// What an answer came to: its head, its body's bytes, whether it ended, and what was left.
    struct Read: Equatable {
        var status: Int?
        var reason: String?
        var headers: [String] = []
        var keepAlive: Bool?
        var body: [UInt8] = []
        var ended = false
        var left = 0
    }

    /// Feeds `text` to a parser in pieces of `step` bytes (all at once for 0).
    static func read(_ text: String, head: Bool = false, step: Int = 0, closeAtEnd: Bool = false) throws -> Read {
        var parser = UpstreamAnswerParser()
        parser.expectAnswer(toHead: head)
        var result = Read()
        let bytes = Array(text.utf8)
        let pieces = step == 0 ? [bytes[...]] : stride(from: 0, to: bytes.count, by: step).map { bytes[$0..<min($0 + step, bytes.count)] }
        for piece in pieces where !result.ended {
            var buffer = ByteBuffer(bytes: piece)
            while !result.ended, let part = try parser.next(&buffer) {
                switch part {
                case .head(let upstream, let keepAlive):
                    let answer = upstream.response
                    #expect(result.status == nil, "a second head")
                    result.status = Int(answer.status.code)
                    result.reason = answer.status.reasonPhrase
                    result.headers = answer.headers.map { "\($0.name): \($0.value)" }
                    result.keepAlive = keepAlive
                case .body(let part): result.body += part.readableBytesView
                case .end: result.ended = true
                }
            }
            result.left += buffer.readableBytes
        }
        if closeAtEnd, !result.ended, parser.closed() != nil { result.ended = true }
        return result
    }

    static func body(_ read: Read) -> String { String(decoding: read.body, as: UTF8.self) }

    @Test("a Content-Length answer, read whole and byte by byte")
    func contentLength() throws {
        let text = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nX-Empty:\r\n\r\nhello world"
        for step in [0, 1, 2, 3, 7] {
            let read = try Self.read(text, step: step)
            #expect(read.status == 200 && read.reason == "OK" && read.keepAlive == true && read.ended && read.left == 0, "step \(step)")
            #expect(read.headers == ["Content-Type: text/plain", "Content-Length: 11", "X-Empty: "], "step \(step)")
            #expect(Self.body(read) == "hello world", "step \(step)")
        }
        // A status line without a reason, with or without its space; a zero length.
        #expect(try Self.read("HTTP/1.1 204\r\n\r\n").ended)
        let empty = try Self.read("HTTP/1.1 299 \r\nContent-Length: 0\r\n\r\n")
        #expect(empty.status == 299 && empty.reason == "" && empty.ended && empty.body.isEmpty)
        // Repeated, equal lengths are one length.
        #expect(Self.body(try Self.read("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\n\r\nab")) == "ab")
    }

    @Test("a chunked answer with extensions and trailers, whatever the reads' boundaries")
    func chunked() throws {
        let text = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n5;name=value\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n"
        for step in [0, 1, 2, 5, 13] {
            let read = try Self.read(text, step: step)
            #expect(read.ended && read.keepAlive == true && read.left == 0, "step \(step)")
            #expect(Self.body(read) == "hello 0123456789", "step \(step)")
        }
    }

    @Test("generated answers, cut at random places, read back to the bytes sent")
    func generated() throws {
        var random = SeededGenerator(seed: 0x5EED)
        for round in 0..<300 {
            let body = (0..<Int.random(in: 0...3000, using: &random)).map { _ in UInt8.random(in: 32...126, using: &random) }
            var text = "HTTP/1.1 200 OK\r\nX-Round: \(round)\r\n"
            if Bool.random(using: &random) {
                text += "Transfer-Encoding: chunked\r\n\r\n"
                var rest = body[...]
                while !rest.isEmpty {
                    let size = min(rest.count, Int.random(in: 1...700, using: &random))
                    text += String(size, radix: 16, uppercase: Bool.random(using: &random)) + "\r\n" + String(decoding: rest.prefix(size), as: UTF8.self) + "\r\n"
                    rest = rest.dropFirst(size)
                }
                text += "0\r\n\r\n"
            } else {
                text += "Content-Length: \(body.count)\r\n\r\n" + String(decoding: body, as: UTF8.self)
            }
            let read = try Self.read(text, step: Int.random(in: 1...512, using: &random))
            #expect(read.ended && read.body == body && read.left == 0 && read.headers.first == "X-Round: \(round)", "round \(round)")
        }
    }

    /// SplitMix64: the same cases on every run.
    struct SeededGenerator: RandomNumberGenerator {
        var state: UInt64
        init(seed: UInt64) { state = seed }
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    @Test("no body after HEAD, 204 and 304; interim answers left out")
    func bodiless() throws {
        let head = try Self.read("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", head: true)
        #expect(head.status == 200 && head.ended && head.body.isEmpty && head.left == 0)
        let notModified = try Self.read("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n")
        #expect(notModified.ended && notModified.body.isEmpty)
        for step in [0, 1] {
            let interim = try Self.read(
                "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", step: step)
            #expect(interim.status == 201 && Self.body(interim) == "ok" && interim.ended && interim.headers == ["Content-Length: 2"], "step \(step)")
        }
    }

    @Test("an answer without a length runs to the connection's end, and the connection is not kept")
    func untilClose() throws {
        let read = try Self.read("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it", step: 4, closeAtEnd: true)
        #expect(read.keepAlive == false && read.ended && Self.body(read) == "all of it")
        let unknownCoding = try Self.read("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz", closeAtEnd: true)
        #expect(unknownCoding.keepAlive == false && unknownCoding.ended && Self.body(unknownCoding) == "zz")
        // Cut short: no end.
        #expect(try Self.read("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", closeAtEnd: true).ended == false)
        #expect(try Self.read("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", closeAtEnd: true).ended == false)
    }

    @Test("keep-alive as the version and Connection say")
    func keepAlive() throws {
        #expect(try Self.read("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").keepAlive == false)
        #expect(try Self.read("HTTP/1.1 200 OK\r\nConnection: Upgrade, CLOSE\r\nContent-Length: 0\r\n\r\n").keepAlive == false)
        #expect(try Self.read("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keepAlive == false)
        #expect(try Self.read("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n").keepAlive == true)
    }

    @Test("bytes after an answer's end are left to the caller, and bytes nobody asked for are refused")
    func afterTheEnd() throws {
        let read = try Self.read("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n")
        #expect(read.ended && Self.body(read) == "ok" && read.left == 17)
        var parser = UpstreamAnswerParser()
        var stray = ByteBuffer(string: "HTTP/1.1 200 OK\r\n\r\n")
        #expect(throws: UpstreamAnswerParser.Malformed.self) { try parser.next(&stray) }
        var nothing = ByteBuffer()
        #expect(try parser.next(&nothing) == nil)
    }

    @Test("whatever could frame an answer two ways, or smuggle a line, fails the answer", arguments: [
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 12a\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456789\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nNo colon\r\n\r\n",
        "HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A: 1\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A: a\u{0}b\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 O\u{7}K\r\nContent-Length: 0\r\n\r\n",
        "HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 099 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200OK\r\nContent-Length: 0\r\n\r\n",
        "http/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000\r\n",
    ])
    func malformed(_ text: String) throws {
        for step in [0, 1] {
            #expect(throws: UpstreamAnswerParser.Malformed.self, "step \(step)") { try Self.read(text, step: step) }
        }
    }

    @Test("a head or chunk line past its limit fails the answer, even while it is still arriving")
    func limits() throws {
        let long = "HTTP/1.1 200 OK\r\nX-Long: " + String(repeating: "a", count: UpstreamAnswerParser.maxHeadBytes) + "\r\n\r\n"
        #expect(throws: UpstreamAnswerParser.Malformed.self) { try Self.read(long, step: 4096) }
        #expect(throws: UpstreamAnswerParser.Malformed.self) { try Self.read(String(long.prefix(UpstreamAnswerParser.maxHeadBytes + 100))) }
        let line = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;" + String(repeating: "x", count: UpstreamAnswerParser.maxChunkLineBytes + 10)
        #expect(throws: UpstreamAnswerParser.Malformed.self) { try Self.read(line, step: 512) }
        // Just inside the limit is read.
        let fits = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Long: "
        let padded = fits + String(repeating: "a", count: UpstreamAnswerParser.maxHeadBytes - fits.utf8.count - 2) + "\r\n\r\n"
        #expect(try Self.read(padded, step: 1000).ended)
    }
}

extension UpstreamHead {
    /// The status line's reason phrase as it came.
    var reason: String {
        bytes.withUnsafeReadableBytes { raw in
            let lineEnd = raw.firstIndex(of: UInt8(ascii: "\r"))!
            return lineEnd > 13 ? String(decoding: UnsafeRawBufferPointer(rebasing: raw[13..<lineEnd]), as: UTF8.self) : ""
        }
    }

    /// The head in NIO's HTTP/1 types, every field as it came.
    var response: HTTPResponseHead {
        var fields: [(String, String)] = []
        forEachField { fields.append((String(decoding: $0, as: UTF8.self), String(decoding: $1, as: UTF8.self))) }
        return HTTPResponseHead(version: version, status: .init(statusCode: code, reasonPhrase: reason), headers: HTTPHeaders(fields))
    }
}
