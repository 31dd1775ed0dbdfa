import NIOCore
import NIOHTTP1

/// Reads a client's request head from the bytes of its connection, for ``DirectByteIntake``,
/// in a grammar narrower than HTTP/1.1's: a bodiless `GET`, `HEAD`, `DELETE` or `OPTIONS`, an
/// origin-form target of RFC 3986 characters, `HTTP/1.1`, header lines of token names and
/// visible-ASCII values, CRLF line ends, no body, no `Upgrade`, no closing `Connection`.
///
/// Everything outside it (another method or version, a body, a folded line, a bare LF, a
/// control or non-ASCII byte, a head over ``maxHeadBytes``) is `other`: the connection's
/// bytes then go to NIO's HTTP/1 parser, which reads (or refuses) them as it always did. So
/// this reader only ever accepts what that parser would accept too, and reads it the same way.
enum DirectRequestReader {
    enum Outcome: Equatable {
        /// Every byte so far fits the grammar; the head has not ended yet.
        case incomplete
        /// A whole head in the grammar, `length` bytes long (its empty line included).
        case bodiless(Head)
        case other
    }

    /// Where a head's parts are, as offsets into the bytes read.
    struct Head: Equatable {
        var method: HTTPMethod
        var target: Range<Int>
        var length: Int
    }

    /// The largest head read here; a longer one is the parser's (which allows 80 KiB).
    static let maxHeadBytes = 16 * 1024
    /// The most header lines read here.
    static let maxFields = 64

    private static let version: StaticString = "HTTP/1.1\r\n"

    /// Checks the head at the start of `bytes`; builds nothing.
    static func read(_ bytes: UnsafeRawBufferPointer) -> Outcome {
        // The table read once per head, not once per byte (a global's lazy initialisation is
        // checked on every access: 2 % of a forwarded request's CPU, perf 2026-12-04).
        let outcome = classes.withUnsafeBufferPointer { classes -> Outcome in scan(bytes, classes) }
        return switch outcome {
        case .incomplete where bytes.count >= maxHeadBytes: .other
        case .bodiless(let head) where head.length > maxHeadBytes: .other
        case let outcome: outcome
        }
    }

    private static func scan(_ bytes: UnsafeRawBufferPointer, _ classes: UnsafeBufferPointer<UInt8>) -> Outcome {
        let count = bytes.count
        // The method and the space after it.
        var index = 0
        while index < count, index < 8, bytes[index] != 32 { index += 1 }
        guard index < count else {
            let seen = UnsafeRawBufferPointer(rebasing: bytes[0..<index])
            return Self.methods.contains { $0.name.starts(with: seen) } && index < 8 ? .incomplete : .other
        }
        let name = UnsafeRawBufferPointer(rebasing: bytes[0..<index])
        guard let method = Self.methods.first(where: { $0.name.elementsEqual(name) })?.method else { return .other }
        index += 1
        // The target, up to the next space.
        let targetStart = index
        guard index < count else { return .incomplete }
        guard bytes[index] == UInt8(ascii: "/") else { return .other }
        while index < count, bytes[index] != 32 {
            guard classes[Int(bytes[index])] & targetByte != 0 else { return .other }
            index += 1
        }
        guard index < count else { return .incomplete }
        let target = targetStart..<index
        index += 1
        // The version and the line's end.
        let version = UnsafeRawBufferPointer(start: Self.version.utf8Start, count: Self.version.utf8CodeUnitCount)
        for expected in version {
            guard index < count else { return .incomplete }
            guard bytes[index] == expected else { return .other }
            index += 1
        }
        // Header lines, to the empty one.
        var fields = 0
        while true {
            guard index < count else { return .incomplete }
            guard index < maxHeadBytes else { return .other }
            if bytes[index] == 13 {
                guard index + 1 < count else { return .incomplete }
                guard bytes[index + 1] == 10 else { return .other }
                return .bodiless(Head(method: method, target: target, length: index + 2))
            }
            fields += 1
            guard fields <= maxFields else { return .other }
            let nameStart = index
            while index < count, bytes[index] != UInt8(ascii: ":") {
                guard classes[Int(bytes[index])] & tokenByte != 0 else { return .other }
                index += 1
            }
            guard index < count else { return .incomplete }
            guard index > nameStart else { return .other }
            let name = UnsafeRawBufferPointer(rebasing: bytes[nameStart..<index])
            index += 1
            let valueStart = index
            while index < count, bytes[index] != 13 {
                guard classes[Int(bytes[index])] & valueByte != 0 else { return .other }
                index += 1
            }
            guard index + 1 < count else { return .incomplete }
            guard bytes[index + 1] == 10 else { return .other }
            if !Self.keepsBodiless(name, UnsafeRawBufferPointer(rebasing: bytes[valueStart..<index])) { return .other }
            index += 2
        }
    }

    /// Whether a field leaves the request bodiless on a connection that stays open: a body
    /// (`Content-Length` other than 0, any `Transfer-Encoding`), an `Upgrade` or a closing
    /// `Connection` are the parser's to read.
    private static func keepsBodiless(_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) -> Bool {
        if UpstreamAnswerParser.equalsLowercased(name, "content-length") {
            return trimmed(value).elementsEqual(CollectionOfOne(UInt8(ascii: "0")))
        }
        if UpstreamAnswerParser.equalsLowercased(name, "transfer-encoding") || UpstreamAnswerParser.equalsLowercased(name, "upgrade") {
            return false
        }
        if UpstreamAnswerParser.equalsLowercased(name, "connection") {
            return !contains(value, "close") && !contains(value, "upgrade")
        }
        return true
    }

    /// Whether `value` holds `lowercase` in any letter case.
    private static func contains(_ value: UnsafeRawBufferPointer, _ lowercase: StaticString) -> Bool {
        let length = lowercase.utf8CodeUnitCount
        guard value.count >= length else { return false }
        return (0...(value.count - length)).contains { start in
            UpstreamAnswerParser.equalsLowercased(UnsafeRawBufferPointer(rebasing: value[start..<(start + length)]), lowercase)
        }
    }

    /// A value without the spaces and tabs around it (RFC 9110 §5.5).
    static func trimmed(_ value: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        var from = 0
        var to = value.count
        while from < to, value[from] == 32 || value[from] == 9 { from += 1 }
        while to > from, value[to - 1] == 32 || value[to - 1] == 9 { to -= 1 }
        return UnsafeRawBufferPointer(rebasing: value[from..<to])
    }

    /// The target of `head` in `bytes` (the bytes ``read(_:)`` checked).
    static func target(_ head: Head, _ bytes: UnsafeRawBufferPointer) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: bytes[head.target]), as: UTF8.self)
    }

    /// Each field of `head` in `bytes` (the bytes ``read(_:)`` checked), in order: its name, and
    /// its value without the spaces around it, until `body` returns false.
    static func forEachField(_ head: Head, _ bytes: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Bool) {
        var index = head.target.upperBound + 1 + version.utf8CodeUnitCount
        let end = head.length - 2
        while index < end {
            var colon = index
            while bytes[colon] != UInt8(ascii: ":") { colon += 1 }
            var lineEnd = colon
            while bytes[lineEnd] != 13 { lineEnd += 1 }
            let name = UnsafeRawBufferPointer(rebasing: bytes[index..<colon])
            guard body(name, trimmed(UnsafeRawBufferPointer(rebasing: bytes[(colon + 1)..<lineEnd]))) else { return }
            index = lineEnd + 2
        }
    }

    /// The request head of `head` read from `bytes` (the bytes ``read(_:)`` checked), with its
    /// `target`: each field as strings, values without the spaces around them.
    static func requestHead(_ head: Head, target: String, _ bytes: UnsafeRawBufferPointer) -> HTTPRequestHead {
        var fields: [(String, String)] = []
        forEachField(head, bytes) { name, value in
            fields.append((String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self)))
            return true
        }
        return HTTPRequestHead(version: .http1_1, method: head.method, uri: target, headers: HTTPHeaders(fields))
    }

    private static let methods: [(name: [UInt8], method: HTTPMethod)] = [
        (Array("GET".utf8), .GET), (Array("HEAD".utf8), .HEAD), (Array("DELETE".utf8), .DELETE), (Array("OPTIONS".utf8), .OPTIONS),
    ]

    private static func isAlphanumeric(_ byte: UInt8) -> Bool {
        (48...57).contains(byte) || (65...90).contains(byte) || (97...122).contains(byte)
    }

    /// RFC 3986 unreserved, sub-delims, `:`, `@`, `/`, `?` and `%`: a path and a query, no fragment.
    private static let targetByte: UInt8 = 1
    /// RFC 9110 tchar.
    private static let tokenByte: UInt8 = 2
    /// Visible ASCII, space and tab (no obs-text, no control byte).
    private static let valueByte: UInt8 = 4

    /// Each byte's classes, as bits (`targetByte`, `tokenByte`, `valueByte`).
    private static let classes: [UInt8] = (0...255).map { value in
        let byte = UInt8(value)
        var classes: UInt8 = 0
        if isAlphanumeric(byte) || "-._~!$&'()*+,;=:@/?%".utf8.contains(byte) { classes |= targetByte }
        if isAlphanumeric(byte) || "!#$%&'*+-.^_`|~".utf8.contains(byte) { classes |= tokenByte }
        if (32...126).contains(byte) || byte == 9 { classes |= valueByte }
        return classes
    }
}
