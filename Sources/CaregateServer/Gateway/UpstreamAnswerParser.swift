import NIOCore
import NIOHTTP1

/// Reads an upstream's HTTP/1.1 answers from the bytes of its connection, for the direct path:
/// the head checked and handed on as it came (``UpstreamHead``), the body as slices of what was read, framed
/// as RFC 9112 §6.3 says (no body for `HEAD`, 204 and 304; chunked; `Content-Length`; else to
/// the end of the connection). Interim answers (1xx) are read and left out.
///
/// It is stricter than the upstream may be lenient: whatever could frame an answer two ways
/// (`Content-Length` beside `Transfer-Encoding`, differing lengths, a folded or malformed header
/// line, a control character) fails the answer (the gateway's 502) rather than being guessed at,
/// so that no answer's bytes are ever taken for the next one's.
struct UpstreamAnswerParser {
    enum Event {
        /// The final answer's head; `keepAlive`: the connection can carry another exchange after it.
        case head(UpstreamHead, keepAlive: Bool)
        case body(ByteBuffer)
        case end
    }

    struct Malformed: Error, CustomStringConvertible {
        var description: String
    }

    /// The largest head (status line and header lines) read.
    static let maxHeadBytes = 64 * 1024
    /// The largest chunk-size line (with its extensions) or trailer line read.
    static let maxChunkLineBytes = 4 * 1024

    private enum State {
        /// Between exchanges: bytes now are nobody's.
        case idle
        /// Reading a head (of an interim or the final answer).
        case head
        case fixedBody(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        /// The CRLF after a chunk's data.
        case chunkDataEnd
        case trailers
        /// Until the connection closes.
        case untilClose
        /// The answer has ended; its end is the next part.
        case ending
    }

    private var state = State.idle
    /// A line or head split across reads, kept until it is whole.
    private var pending: ByteBuffer?
    private var answeringHead = false

    /// An exchange's request was written: its answer is read next. `head`: the request was `HEAD`.
    mutating func expectAnswer(toHead head: Bool) {
        state = .head
        pending = nil
        answeringHead = head
    }

    /// The next part of the answer that `buffer` holds, or nil when it needs more bytes. After
    /// the answer's end, bytes left in `buffer` are not read (the caller decides what they are).
    /// One part at a time, so that the caller hands each on outside the parser (whoever gets the
    /// end may start the next exchange on this connection).
    mutating func next(_ buffer: inout ByteBuffer) throws -> Event? {
        while true {
            switch state {
            case .idle:
                guard buffer.readableBytes == 0 else { throw Malformed(description: "bytes from the upstream with no request waiting") }
                return nil
            case .ending:
                state = .idle
                pending = nil
                return .end
            case .head:
                guard let head = try take(through: Self.headEnd, limit: Self.maxHeadBytes, what: "a head", from: &buffer) else { return nil }
                if let answer = try answerHead(head) { return answer }
            case .fixedBody(let remaining):
                guard buffer.readableBytes > 0 else { return nil }
                let part = buffer.readSlice(length: min(remaining, buffer.readableBytes))!
                state = remaining == part.readableBytes ? .ending : .fixedBody(remaining: remaining - part.readableBytes)
                return .body(part)
            case .chunkSize:
                guard var line = try take(through: Self.lineEnd, limit: Self.maxChunkLineBytes, what: "a chunk-size line", from: &buffer)
                else { return nil }
                let size = try Self.chunkSize(&line)
                state = size == 0 ? .trailers : .chunkData(remaining: size)
            case .chunkData(let remaining):
                guard buffer.readableBytes > 0 else { return nil }
                let part = buffer.readSlice(length: min(remaining, buffer.readableBytes))!
                state = remaining == part.readableBytes ? .chunkDataEnd : .chunkData(remaining: remaining - part.readableBytes)
                return .body(part)
            case .chunkDataEnd:
                // Exactly CRLF: anything before it means the chunk was longer than its size said.
                guard try take(through: Self.lineEnd, limit: 0, what: "a chunk's data", from: &buffer) != nil else { return nil }
                state = .chunkSize
            case .trailers:
                // Trailer fields are not passed on (nor were they by NIO's decoder); they end at an empty line.
                guard let line = try take(through: Self.lineEnd, limit: Self.maxChunkLineBytes, what: "a trailer line", from: &buffer)
                else { return nil }
                if line.readableBytes == 2 { state = .ending }
            case .untilClose:
                guard buffer.readableBytes > 0 else { return nil }
                return .body(buffer.readSlice(length: buffer.readableBytes)!)
            }
        }
    }

    /// The connection closed: the end of an answer read to the close (nil for any other
    /// answer, which is cut, or when none was being read).
    mutating func closed() -> Event? {
        guard case .untilClose = state else { return nil }
        state = .idle
        return .end
    }

    private static let headEnd: [UInt8] = Array("\r\n\r\n".utf8)
    private static let lineEnd: [UInt8] = Array("\r\n".utf8)

    /// The bytes up to and including `end`, once they have all arrived (nil until then: what
    /// came so far is kept, joined with the next read's), at most `limit` bytes before `end`.
    private mutating func take(through end: [UInt8], limit: Int, what: String, from buffer: inout ByteBuffer) throws -> ByteBuffer? {
        guard var joined = pending else {
            if let at = Self.find(end, in: buffer, from: 0) {
                guard at <= limit else { throw Malformed(description: "\(what) longer than \(limit) bytes") }
                return buffer.readSlice(length: at + end.count)!
            }
            guard buffer.readableBytes <= limit + end.count else { throw Malformed(description: "\(what) longer than \(limit) bytes") }
            pending = buffer.readSlice(length: buffer.readableBytes)!
            return nil
        }
        let kept = joined.readableBytes
        joined.writeImmutableBuffer(buffer.readSlice(length: buffer.readableBytes)!)
        // The end may straddle the reads: looked for from its length before the new bytes.
        if let at = Self.find(end, in: joined, from: max(0, kept - (end.count - 1))) {
            guard at <= limit else { throw Malformed(description: "\(what) longer than \(limit) bytes") }
            let whole = joined.readSlice(length: at + end.count)!
            // What followed the end goes back to be read next.
            buffer.moveReaderIndex(to: buffer.readerIndex - joined.readableBytes)
            pending = nil
            return whole
        }
        guard joined.readableBytes <= limit + end.count else { throw Malformed(description: "\(what) longer than \(limit) bytes") }
        pending = joined
        return nil
    }

    /// Where `needle` starts in `buffer`'s readable bytes at or after offset `from` (nil if not there).
    private static func find(_ needle: [UInt8], in buffer: ByteBuffer, from: Int) -> Int? {
        buffer.withUnsafeReadableBytes { bytes in
            guard bytes.count >= needle.count else { return nil }
            let first = needle[0]
            var index = from
            let last = bytes.count - needle.count
            while index <= last {
                if bytes[index] == first {
                    var match = true
                    for offset in 1..<needle.count where bytes[index + offset] != needle[offset] {
                        match = false
                        break
                    }
                    if match { return index }
                }
                index += 1
            }
            return nil
        }
    }

    // MARK: The head

    /// What a head says.
    struct Head {
        var version: HTTPVersion
        var code: Int
        var length: Int?
        /// A `Transfer-Encoding`, and whether its last coding is chunked.
        var transferEncoded = false
        var chunked = false
        var closes = false
        var keepsAlive = false
    }

    /// The final answer's head (nil for an interim one: another head follows).
    private mutating func answerHead(_ bytes: ByteBuffer) throws -> Event? {
        let head = try bytes.withUnsafeReadableBytes { try Self.parseHead($0) }
        if (100..<200).contains(head.code) {
            // 101 would switch protocols, which the gateway never asks for (`Upgrade` is not forwarded).
            guard head.code != 101 else { throw Malformed(description: "101 Switching Protocols") }
            return nil
        }
        var keepAlive = !head.closes && (head.version.minor >= 1 || head.keepsAlive)
        if head.transferEncoded && head.length != nil { throw Malformed(description: "both Content-Length and Transfer-Encoding") }
        if answeringHead || head.code == 204 || head.code == 304 {
            state = .ending
        } else if head.transferEncoded {
            state = head.chunked ? .chunkSize : .untilClose
        } else if let length = head.length {
            state = length == 0 ? .ending : .fixedBody(remaining: length)
        } else {
            state = .untilClose
        }
        if case .untilClose = state { keepAlive = false }
        return .head(UpstreamHead(version: head.version, code: head.code, bytes: bytes), keepAlive: keepAlive)
    }

    private static let cr = UInt8(ascii: "\r")
    private static let lf = UInt8(ascii: "\n")

    /// Checks the status line and header lines of a head that ends in an empty line (CRLF CRLF),
    /// and reads what frames the answer; no string is made.
    static func parseHead(_ bytes: UnsafeRawBufferPointer) throws -> Head {
        // "HTTP/1.x 200 Reason\r\n" (the reason may be empty, with or without its space).
        guard bytes.count >= 14, bytes.starts(with: "HTTP/1.".utf8), bytes[7] == 48 || bytes[7] == 49, bytes[8] == UInt8(ascii: " "),
              (9...11).allSatisfy({ isDigit(bytes[$0]) }), bytes[9] != 48
        else { throw Malformed(description: "an invalid status line") }
        var head = Head(version: HTTPVersion(major: 1, minor: Int(bytes[7] - 48)), code: (9...11).reduce(0) { $0 * 10 + Int(bytes[$1] - 48) })
        guard var lineEnd = bytes[12...].firstIndex(of: lf), bytes[lineEnd - 1] == cr else { throw Malformed(description: "an invalid status line") }
        if lineEnd - 1 > 12 {
            guard bytes[12] == UInt8(ascii: " "), bytes[13..<(lineEnd - 1)].allSatisfy(isFieldValueByte) else {
                throw Malformed(description: "an invalid status line")
            }
        }
        while true {
            let start = lineEnd + 1
            guard let end = bytes[start...].firstIndex(of: lf), end > start, bytes[end - 1] == cr else {
                throw Malformed(description: "a header line not ending in CRLF")
            }
            lineEnd = end
            let content = start..<(end - 1)
            if content.isEmpty { break }  // the empty line that ends the head
            guard let colon = bytes[content].firstIndex(of: UInt8(ascii: ":")), colon > start, bytes[start..<colon].allSatisfy(isTokenByte)
            else { throw Malformed(description: "an invalid header line") }
            var from = colon + 1
            var to = content.upperBound
            while from < to, bytes[from] == 32 || bytes[from] == 9 { from += 1 }
            while to > from, bytes[to - 1] == 32 || bytes[to - 1] == 9 { to -= 1 }
            let value = UnsafeRawBufferPointer(rebasing: bytes[from..<to])
            guard value.allSatisfy(isFieldValueByte) else { throw Malformed(description: "a control character in a header value") }
            let name = UnsafeRawBufferPointer(rebasing: bytes[start..<colon])
            try frame(&head, name, value)
        }
        return head
    }

    /// Notes what the framing headers say.
    private static func frame(_ head: inout Head, _ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws {
        if equalsLowercased(name, "content-length") {
            for element in elements(value) {
                guard !element.isEmpty, element.count <= 18, element.allSatisfy(isDigit) else { throw Malformed(description: "an invalid Content-Length") }
                let length = element.reduce(0) { $0 * 10 + Int($1 - 48) }
                guard head.length == nil || head.length == length else { throw Malformed(description: "differing Content-Length values") }
                head.length = length
            }
        } else if equalsLowercased(name, "transfer-encoding") {
            for element in elements(value) {
                // Chunked must be the last coding, and only once (RFC 9112 §6.1).
                guard !head.chunked else { throw Malformed(description: "a coding after chunked") }
                head.chunked = equalsLowercased(element, "chunked")
                head.transferEncoded = true
            }
        } else if equalsLowercased(name, "connection") {
            for element in elements(value) {
                if equalsLowercased(element, "close") { head.closes = true }
                if equalsLowercased(element, "keep-alive") { head.keepsAlive = true }
            }
        }
    }

    /// The comma-separated elements of a value, without the spaces around them.
    private static func elements(_ value: UnsafeRawBufferPointer) -> [UnsafeRawBufferPointer] {
        value.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false).map { element in
            var from = element.startIndex
            var to = element.endIndex
            while from < to, value[from] == 32 || value[from] == 9 { from += 1 }
            while to > from, value[to - 1] == 32 || value[to - 1] == 9 { to -= 1 }
            return UnsafeRawBufferPointer(rebasing: value[from..<to])
        }
    }

    private static func isDigit(_ byte: UInt8) -> Bool { byte >= 48 && byte <= 57 }

    /// RFC 9110 §5.6.2 tchar.
    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
        default: "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }

    /// RFC 9110 §5.5 field-vchar, SP and HTAB (obs-text included); no other control character.
    static func isFieldValueByte(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: "\t") || (byte >= 0x20 && byte != 0x7F)
    }

    /// Whether `bytes` spell `lowercase` (lowercase ASCII) in any letter case, as header names
    /// and tokens compare.
    static func equalsLowercased(_ bytes: some Collection<UInt8>, _ lowercase: some Collection<UInt8>) -> Bool {
        bytes.count == lowercase.count && zip(bytes, lowercase).allSatisfy { $0 | ($0 &- 65 < 26 ? 0x20 : 0) == $1 }
    }

    static func equalsLowercased(_ bytes: UnsafeRawBufferPointer, _ lowercase: StaticString) -> Bool {
        equalsLowercased(bytes, UnsafeRawBufferPointer(start: lowercase.utf8Start, count: lowercase.utf8CodeUnitCount))
    }

    /// Whether `name` spells `lowercase` in any letter case, compared in place.
    static func equalsLowercased(_ name: String, _ lowercase: StaticString) -> Bool {
        guard name.utf8.count == lowercase.utf8CodeUnitCount else { return false }
        var name = name
        return name.withUTF8 { equalsLowercased(UnsafeRawBufferPointer($0), lowercase) }
    }

    /// A chunk-size line's size (its extensions ignored).
    private static func chunkSize(_ line: inout ByteBuffer) throws -> Int {
        try line.withUnsafeReadableBytes { bytes in
            var size = 0
            var digits = 0
            for byte in bytes.dropLast(2) {
                let value: Int
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): value = Int(byte - 48)
                case UInt8(ascii: "a")...UInt8(ascii: "f"): value = Int(byte - 87)
                case UInt8(ascii: "A")...UInt8(ascii: "F"): value = Int(byte - 55)
                case UInt8(ascii: ";"), UInt8(ascii: " "), UInt8(ascii: "\t"):
                    guard digits > 0, bytes.dropLast(2).allSatisfy(isFieldValueByte) else { throw Malformed(description: "an invalid chunk size") }
                    return size
                default:
                    throw Malformed(description: "an invalid chunk size")
                }
                digits += 1
                guard digits <= 15 else { throw Malformed(description: "a chunk size too large") }
                size = size * 16 + value
            }
            guard digits > 0 else { throw Malformed(description: "an empty chunk size") }
            return size
        }
    }
}

/// An answer's final head as the upstream sent it, checked by ``UpstreamAnswerParser``: the
/// answer written as bytes copies its fields from here, and strings are made only for an
/// answer that goes through NIO's HTTP/1 encoder.
struct UpstreamHead {
    var version: HTTPVersion
    var code: Int
    /// The status line, the header lines and the empty line, as they came.
    var bytes: ByteBuffer

    /// A head of Caregate's own (a 502 or 504 in place of the upstream's answer).
    init(code: Int, fields: [(String, String)]) {
        var bytes = ByteBuffer(string: "HTTP/1.1 \(code) \(HTTPResponseStatus(statusCode: code).reasonPhrase)\r\n")
        for (name, value) in fields { bytes.writeString("\(name): \(value)\r\n") }
        bytes.writeStaticString("\r\n")
        self.init(version: .http1_1, code: code, bytes: bytes)
    }

    init(version: HTTPVersion, code: Int, bytes: ByteBuffer) {
        self.version = version
        self.code = code
        self.bytes = bytes
    }

    /// Each field in order: its name, and its value without the spaces around it.
    func forEachField(_ body: (_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) -> Void) {
        bytes.withUnsafeReadableBytes { raw in
            // Checked lines: each ends in CRLF, and neither CR nor LF occurs inside one.
            var index = raw.firstIndex(of: UInt8(ascii: "\n"))! + 1
            while raw[index] != UInt8(ascii: "\r") {
                var colon = index
                while raw[colon] != UInt8(ascii: ":") { colon += 1 }
                var lineEnd = colon
                while raw[lineEnd] != UInt8(ascii: "\r") { lineEnd += 1 }
                body(
                    UnsafeRawBufferPointer(rebasing: raw[index..<colon]),
                    DirectRequestReader.trimmed(UnsafeRawBufferPointer(rebasing: raw[(colon + 1)..<lineEnd])))
                index = lineEnd + 2
            }
        }
    }
}
