/// Why a request path was refused before routing. Each rule closes a way in which
/// two spellings of a path could reach routes with different scopes:
///
/// - The path must start with `/` and be at most 4096 bytes and 64 segments.
/// - Segments are percent-decoded exactly once. A `%` not followed by two hex
///   digits is refused, and so is any decoded `/` or `\` (an encoded separator would
///   let one segment be read as two by an upstream server).
/// - `.` and `..` segments (raw or encoded) are refused, never resolved.
/// - Empty segments (`//`) are refused. One trailing `/` is ignored: `/v3/patients/`
///   is `/v3/patients` (the practice API's own paths end in `/`).
/// - `;` is refused (path parameters, which some servers strip, as in `..;/`).
/// - A double encoding (`%25` followed by two hex digits, as in `%252e%252e`) is refused:
///   an upstream that decodes once more would see another path than the one decided.
/// - Decoded bytes must be well-formed UTF-8: overlong forms (`%c0%ae` for `.`), surrogates
///   and stray continuation bytes are refused.
/// - Raw bytes outside printable ASCII, and decoded control characters, are refused.
/// - Literal segments match case-sensitively: `/V3/patients` is not `/v3/patients`.
///
/// A struct rather than an enum, so that a new rule is not a source-breaking change for a
/// server that switches over path errors: compare with `==`, or match the static members
/// in `case` patterns (`case .dotSegment:`) and keep a `default`.
public struct PathError: Error, Hashable, Sendable, CustomStringConvertible {
    enum Code: UInt8, Hashable, Sendable {
        case notAbsolute, tooLong, tooManySegments, emptySegment, dotSegment, invalidPercentEncoding
        case encodedSeparator, semicolon, invalidCharacter, doubleEncoding, invalidUTF8
    }

    let code: Code
    init(_ code: Code) { self.code = code }

    /// The path does not start with `/`.
    public static let notAbsolute = PathError(.notAbsolute)
    /// The path is longer than ``RequestPath/maxBytes``.
    public static let tooLong = PathError(.tooLong)
    /// The path has more than ``RequestPath/maxSegments`` segments.
    public static let tooManySegments = PathError(.tooManySegments)
    /// An empty segment (`//`), which some servers collapse and others do not.
    public static let emptySegment = PathError(.emptySegment)
    /// A `.` or `..` segment, raw or encoded: refused rather than resolved.
    public static let dotSegment = PathError(.dotSegment)
    /// A `%` not followed by two hex digits.
    public static let invalidPercentEncoding = PathError(.invalidPercentEncoding)
    /// A raw `\`, or an encoded `/` or `\`, which an upstream could read as a separator.
    public static let encodedSeparator = PathError(.encodedSeparator)
    /// A `;`, raw or encoded: path parameters that some servers strip (`..;/`).
    public static let semicolon = PathError(.semicolon)
    /// A raw byte outside printable ASCII, or a decoded control character.
    public static let invalidCharacter = PathError(.invalidCharacter)
    /// `%25` followed by two hex digits, which an upstream that decodes once more reads as another path.
    public static let doubleEncoding = PathError(.doubleEncoding)
    /// Decoded bytes that are not well-formed UTF-8 (overlong forms, surrogates, stray continuations).
    public static let invalidUTF8 = PathError(.invalidUTF8)

    /// The rule broken, as a phrase fit for a 400 answer.
    public var description: String {
        switch code {
        case .notAbsolute: "the path must start with /"
        case .tooLong: "the path is longer than \(RequestPath.maxBytes) bytes"
        case .tooManySegments: "the path has more than \(RequestPath.maxSegments) segments"
        case .emptySegment: "the path has an empty segment (//)"
        case .dotSegment: "the path has a . or .. segment"
        case .invalidPercentEncoding: "the path has an invalid percent-encoding"
        case .encodedSeparator: "the path has an encoded / or \\"
        case .semicolon: "the path has a ; (path parameters are not accepted)"
        case .invalidCharacter: "the path has a character that must be percent-encoded or is not allowed"
        case .doubleEncoding: "the path has a double percent-encoding (%25 followed by two hex digits)"
        case .invalidUTF8: "the path's percent-encoded bytes are not well-formed UTF-8"
        }
    }
}

/// Splits and decodes request paths into segments, into caller-provided buffers so
/// that the hot path does not allocate.
public enum RequestPath {
    /// The longest path accepted, in bytes; longer ones are ``PathError/tooLong``.
    public static let maxBytes = 4096
    /// The most segments accepted; they bound the stack buffer a decision uses.
    public static let maxSegments = 64

    /// Decodes `path` into `out` (at least `path.count` bytes) and records each
    /// segment's start and end offsets in `bounds` (at least `2 * maxSegments`).
    /// Returns the number of segments.
    static func split(
        _ path: UnsafeBufferPointer<UInt8>,
        into out: UnsafeMutableBufferPointer<UInt8>,
        bounds: UnsafeMutableBufferPointer<Int>
    ) -> Result<Int, PathError> {
        var length = path.count
        if length == 0 || path[0] != UInt8(ascii: "/") { return .failure(.notAbsolute) }
        if length > maxBytes { return .failure(.tooLong) }
        if length > 1 && path[length - 1] == UInt8(ascii: "/") { length -= 1 }
        if length == 1 { return .success(0) }

        var segments = 0
        var written = 0
        var i = 1
        while i <= length {
            if segments == maxSegments { return .failure(.tooManySegments) }
            let start = written
            var rawDots = 0
            var rawOther = false
            var nonASCII = false
            while i < length && path[i] != UInt8(ascii: "/") {
                var byte = path[i]
                switch byte {
                case UInt8(ascii: "%"):
                    guard i + 2 < length, let hi = hex(path[i + 1]), let lo = hex(path[i + 2])
                    else { return .failure(.invalidPercentEncoding) }
                    byte = hi << 4 | lo
                    i += 2
                    switch byte {
                    case UInt8(ascii: "/"), UInt8(ascii: "\\"): return .failure(.encodedSeparator)
                    case UInt8(ascii: ";"): return .failure(.semicolon)
                    case 0..<0x20, 0x7F: return .failure(.invalidCharacter)
                    case UInt8(ascii: "%"):
                        if i + 2 < length, hex(path[i + 1]) != nil, hex(path[i + 2]) != nil { return .failure(.doubleEncoding) }
                    case 0x80...: nonASCII = true
                    default: break
                    }
                case UInt8(ascii: ";"): return .failure(.semicolon)
                case UInt8(ascii: "\\"): return .failure(.encodedSeparator)
                case 0...0x20, 0x7F...: return .failure(.invalidCharacter)
                default: break
                }
                if byte == UInt8(ascii: ".") { rawDots += 1 } else { rawOther = true }
                out[written] = byte
                written += 1
                i += 1
            }
            if written == start { return .failure(.emptySegment) }
            if nonASCII && !isWellFormedUTF8(UnsafeBufferPointer(rebasing: out[start..<written])) { return .failure(.invalidUTF8) }
            if !rawOther && rawDots <= 2 { return .failure(.dotSegment) }
            bounds[2 * segments] = start
            bounds[2 * segments + 1] = written
            segments += 1
            i += 1
        }
        return .success(segments)
    }

    /// RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF.
    static func isWellFormedUTF8(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var i = 0
        while i < bytes.count {
            let lead = bytes[i]
            let length: Int
            var low: UInt8 = 0x80, high: UInt8 = 0xBF  // allowed range of the second byte
            switch lead {
            case 0x00...0x7F: i += 1; continue
            case 0xC2...0xDF: length = 2
            case 0xE0: length = 3; low = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: length = 3
            case 0xED: length = 3; high = 0x9F
            case 0xF0: length = 4; low = 0x90
            case 0xF1...0xF3: length = 4
            case 0xF4: length = 4; high = 0x8F
            default: return false
            }
            guard i + length <= bytes.count, (low...high).contains(bytes[i + 1]) else { return false }
            for j in 2..<length where !(0x80...0xBF).contains(bytes[i + j]) { return false }
            i += length
        }
        return true
    }

    @inline(__always) static func hex(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// Splits and decodes a path exactly as ``CompiledCatalog/decide(_:method:path:query:)``
    /// does, so that a handler reads the same segments the decision was made on. Allocates;
    /// the decision itself does not.
    /// - Parameter path: The raw request path (percent-encoded, no query).
    /// - Returns: The decoded segments, or the ``PathError`` that refused the path.
    public static func segments(_ path: String) -> Result<[String], PathError> {
        var path = path
        return path.withUTF8 { bytes in
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: max(bytes.count, 1)) { out in
                withUnsafeTemporaryAllocation(of: Int.self, capacity: 2 * maxSegments) { bounds in
                    split(bytes, into: out, bounds: bounds).map { count in
                        (0..<count).map { s in
                            String(decoding: UnsafeBufferPointer(rebasing: out[bounds[2 * s]..<bounds[2 * s + 1]]), as: UTF8.self)
                        }
                    }
                }
            }
        }
    }
}
