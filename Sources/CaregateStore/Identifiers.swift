public import Crypto
import Foundation
import Synchronization

/// Milliseconds since 1970, the one time unit stored.
public enum Clock {
    public static func millis() -> Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded()) }
}

/// Opaque ids: `<prefix>_<32 hex>` from the system CSPRNG, or derived (stable) from a seed.
public enum Identifier {
    public static func random(_ prefix: String) -> String {
        "\(prefix)_\(Secrets.randomHex(bytes: 16))"
    }

    /// A stable id: the same seed always gives the same id (sample data per clinic).
    public static func derived(_ prefix: String, _ seed: String) -> String {
        let digest = SHA256.hash(data: Data(seed.utf8))
        return "\(prefix)_" + Secrets.hex(Array(digest.prefix(16)))
    }

    /// Time-ordered ids for audit events: 13 hex digits of milliseconds, then a random
    /// per-process prefix and a counter (8 + 8 hex digits), so ids are sortable, unique
    /// across instances, and cost no system call on the request path.
    public static func timeOrdered(_ prefix: String, millis: Int64) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(prefix.utf8.count + 30)
        let count = counter.add(1, ordering: .relaxed).newValue
        out.append(contentsOf: prefix.utf8)
        out.append(UInt8(ascii: "_"))
        appendHex(UInt64(max(millis, 0)), digits: 13, to: &out)
        appendHex(processTag, digits: 8, to: &out)
        appendHex(count, digits: 8, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Random per process, so that two instances never make the same id in the same millisecond.
    private static let processTag = UInt64(UInt32.random(in: .min ... .max))
    private static let counter = Atomic<UInt64>(0)

    /// The low `digits` hex digits of `value`, zero-padded.
    static func appendHex(_ value: UInt64, digits: Int, to out: inout [UInt8]) {
        for i in stride(from: digits - 1, through: 0, by: -1) {
            out.append(hexDigits[Int((value >> (UInt64(i) * 4)) & 0xF)])
        }
    }

    /// `org_<32 hex>` ⇄ `7e2c8cfe-b7a9-4deb-986d-e7012589e72b`: clients send either form.
    public static func organizationID(fromClientForm text: String) -> String? {
        OrganizationBits(clientForm: text)?.id
    }

    public static func uuidForm(ofOrganization id: String) -> String {
        let hex = Array(id.dropFirst(4))
        guard hex.count == 32 else { return id }
        return [hex[0..<8], hex[8..<12], hex[12..<16], hex[16..<20], hex[20..<32]].map { String($0) }.joined(separator: "-")
    }
}

/// An organization id's 128 bits, read from either client form (`org_<32 hex>` or the UUID
/// form, any letter case) without allocating: one value per clinic, however it was written,
/// which makes it the credential cache's key.
public struct OrganizationBits: Hashable, Sendable {
    public var high: UInt64
    public var low: UInt64

    public init?(clientForm text: String) {
        var text = text
        guard let bits = text.withUTF8({ OrganizationBits(clientForm: UnsafeRawBufferPointer($0)) }) else { return nil }
        self = bits
    }

    /// The same, of an `X-Organization-Id` value as the request's bytes.
    public init?(clientForm b: UnsafeRawBufferPointer) {
        guard b.count == 36 else { return nil }
        var high: UInt64 = 0, low: UInt64 = 0, n = 0
        func take(_ c: UInt8) -> Bool {
            guard let nibble = hexValue(c, upperCase: true) else { return false }
            if n < 16 { high = high << 4 | UInt64(nibble) } else { low = low << 4 | UInt64(nibble) }
            n += 1
            return true
        }
        if b[0] == UInt8(ascii: "o") && b[1] == UInt8(ascii: "r") && b[2] == UInt8(ascii: "g") && b[3] == UInt8(ascii: "_") {
            for i in 4..<36 where !take(b[i]) { return nil }
        } else {
            for i in 0..<36 {
                if i == 8 || i == 13 || i == 18 || i == 23 {
                    if b[i] != UInt8(ascii: "-") { return nil }
                } else if !take(b[i]) {
                    return nil
                }
            }
        }
        self.high = high
        self.low = low
    }

    /// The canonical id, `org_<32 lower-case hex>`.
    public var id: String {
        var bytes: [UInt8] = Array("org_".utf8)
        bytes.reserveCapacity(36)
        Identifier.appendHex(high, digits: 16, to: &bytes)
        Identifier.appendHex(low, digits: 16, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// An id as ``Identifier/random(_:)`` makes them (`<three lower-case letters>_<32 lower-case hex>`),
/// held as its bits: 24 bytes inline, compared as integers, written back as the same text.
public struct CompactID: Hashable, Sendable {
    /// The three letters, one per byte.
    private let prefix: UInt32
    private let high: UInt64
    private let low: UInt64

    /// Nil for any other text (it is then kept as a string).
    public init?(_ text: String) {
        var text = text
        guard let parsed = text.withUTF8({ b -> CompactID? in
            guard b.count == 36, b[3] == UInt8(ascii: "_") else { return nil }
            var prefix: UInt32 = 0
            for i in 0..<3 {
                guard (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(b[i]) else { return nil }
                prefix = prefix << 8 | UInt32(b[i])
            }
            var high: UInt64 = 0, low: UInt64 = 0
            for i in 4..<36 {
                guard let nibble = hexValue(b[i], upperCase: false) else { return nil }
                if i < 20 { high = high << 4 | UInt64(nibble) } else { low = low << 4 | UInt64(nibble) }
            }
            return CompactID(prefix: prefix, high: high, low: low)
        }) else { return nil }
        self = parsed
    }

    private init(prefix: UInt32, high: UInt64, low: UInt64) {
        self.prefix = prefix
        self.high = high
        self.low = low
    }

    public var text: String {
        var bytes: [UInt8] = []
        write(into: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Appends the id's text (36 bytes, nothing JSON escapes).
    public func write(into out: inout [UInt8]) {
        out.append(UInt8(truncatingIfNeeded: prefix >> 16))
        out.append(UInt8(truncatingIfNeeded: prefix >> 8))
        out.append(UInt8(truncatingIfNeeded: prefix))
        out.append(UInt8(ascii: "_"))
        Identifier.appendHex(high, digits: 16, to: &out)
        Identifier.appendHex(low, digits: 16, to: &out)
    }
}

/// Randomness, keyed hashes and constant-time comparison for every secret Caregate keeps.
public enum Secrets {
    /// Bytes from the system CSPRNG, eight at a time.
    public static func randomBytes(_ count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count + 8)
        while bytes.count < count {
            withUnsafeBytes(of: generator.next()) { bytes.append(contentsOf: $0) }
        }
        return Array(bytes.prefix(count))
    }

    public static func randomHex(bytes: Int) -> String { hex(randomBytes(bytes)) }

    /// Lower-case hex, without Foundation formatting (it runs on every request).
    public static func hex(_ bytes: some Sequence<UInt8>) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(64)
        for byte in bytes {
            out.append(hexDigits[Int(byte >> 4)])
            out.append(hexDigits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static let base62 = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)

    /// `count` base62 characters, each from an unbiased draw (≈ 5.95 bits each).
    public static func randomBase62(_ count: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        for _ in 0..<count { bytes.append(base62[Int.random(in: 0..<62, using: &generator)]) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// HMAC-SHA-256 of `value` under the server secret, hex-encoded.
    public static func keyedHash(_ value: String, key: SymmetricKey) -> String {
        var value = value
        return value.withUTF8 { hex(HMAC<SHA256>.authenticationCode(for: $0, using: key)) }
    }

    /// `hex` decoded to bytes; nil unless it is lower-case hex of even length.
    public static func bytes(fromHex hex: String) -> [UInt8]? {
        let digits = Array(hex.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(digits.count / 2)
        for i in stride(from: 0, to: digits.count, by: 2) {
            guard let high = hexValue(digits[i], upperCase: false), let low = hexValue(digits[i + 1], upperCase: false) else { return nil }
            out.append(high << 4 | low)
        }
        return out
    }

    /// Compares in time that depends only on the length, never on where the bytes differ.
    public static func constantTimeEquals(_ a: String, _ b: String) -> Bool {
        var a = a, b = b
        return a.withUTF8 { x in b.withUTF8 { y in constantTimeEquals(UnsafeRawBufferPointer(x), UnsafeRawBufferPointer(y)) } }
    }

    /// Two byte strings, in the same way.
    public static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.withUnsafeBytes { x in b.withUnsafeBytes { y in constantTimeEquals(x, y) } }
    }

    /// A stored digest against a computed one, in the same way.
    public static func constantTimeEquals(_ stored: [UInt8], _ computed: SHA256Digest) -> Bool {
        stored.withUnsafeBytes { x in computed.withUnsafeBytes { y in constantTimeEquals(x, y) } }
    }

    /// A stored digest held inline against a computed one, in the same way.
    public static func constantTimeEquals(_ stored: borrowing InlineArray<32, UInt8>, _ computed: SHA256Digest) -> Bool {
        stored.span.withUnsafeBufferPointer { x in computed.withUnsafeBytes { y in constantTimeEquals(UnsafeRawBufferPointer(x), y) } }
    }

    /// Two byte strings in memory, in the same way.
    public static func constantTimeEquals(_ x: UnsafeRawBufferPointer, _ y: UnsafeRawBufferPointer) -> Bool {
        guard x.count == y.count else { return false }
        // Eight bytes at a time, then the rest: every byte is read whatever the others hold.
        var difference: UInt64 = 0
        var i = 0
        while i + 8 <= x.count {
            difference |= x.loadUnaligned(fromByteOffset: i, as: UInt64.self) ^ y.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            i += 8
        }
        while i < x.count {
            difference |= UInt64(x[i] ^ y[i])
            i += 1
        }
        return difference == 0
    }
}

/// The lower-case hex alphabet, for every hex writer here.
private let hexDigits = Array("0123456789abcdef".utf8)

/// A hex digit's value (upper-case letters only when `upperCase`).
private func hexValue(_ c: UInt8, upperCase: Bool) -> UInt8? {
    switch c {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F") where upperCase: c - UInt8(ascii: "A") + 10
    default: nil
    }
}
