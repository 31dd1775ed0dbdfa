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
        let count = counter.add(1, ordering: .relaxed).newValue
        return "\(prefix)_" + fixedHex(UInt64(max(millis, 0)), digits: 13) + processTag + fixedHex(count, digits: 8)
    }

    private static let processTag = Secrets.randomHex(bytes: 4)
    private static let counter = Atomic<UInt64>(0)

    static func fixedHex(_ value: UInt64, digits: Int) -> String {
        let hex = Array("0123456789abcdef".utf8)
        var out = [UInt8](repeating: UInt8(ascii: "0"), count: digits)
        var v = value
        for i in stride(from: digits - 1, through: 0, by: -1) {
            out[i] = hex[Int(v & 0xF)]
            v >>= 4
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `org_<32 hex>` ⇄ `7e2c8cfe-b7a9-4deb-986d-e7012589e72b`: clients send either form.
    /// Byte-level: it runs on every request.
    public static func organizationID(fromClientForm text: String) -> String? {
        var text = text
        return text.withUTF8 { b -> String? in
            var hex = [UInt8](repeating: 0, count: 36)
            hex[0] = UInt8(ascii: "o"); hex[1] = UInt8(ascii: "r"); hex[2] = UInt8(ascii: "g"); hex[3] = UInt8(ascii: "_")
            var n = 4
            func take(_ c: UInt8) -> Bool {
                switch c {
                case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "f"): hex[n] = c
                case UInt8(ascii: "A")...UInt8(ascii: "F"): hex[n] = c + 32
                default: return false
                }
                n += 1
                return true
            }
            if b.count == 36 && b[0] == UInt8(ascii: "o") && b[1] == UInt8(ascii: "r") && b[2] == UInt8(ascii: "g") && b[3] == UInt8(ascii: "_") {
                for i in 4..<36 where !take(b[i]) { return nil }
            } else if b.count == 36 {
                for i in 0..<36 {
                    if i == 8 || i == 13 || i == 18 || i == 23 {
                        if b[i] != UInt8(ascii: "-") { return nil }
                    } else if !take(b[i]) {
                        return nil
                    }
                }
            } else {
                return nil
            }
            return String(decoding: hex, as: UTF8.self)
        }
    }

    public static func uuidForm(ofOrganization id: String) -> String {
        let hex = Array(id.dropFirst(4))
        guard hex.count == 32 else { return id }
        return [hex[0..<8], hex[8..<12], hex[12..<16], hex[16..<20], hex[20..<32]].map { String($0) }.joined(separator: "-")
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

    private static let hexDigits = Array("0123456789abcdef".utf8)

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

    /// Compares in time that depends only on the length, never on where the bytes differ.
    public static func constantTimeEquals(_ a: String, _ b: String) -> Bool {
        var a = a, b = b
        return a.withUTF8 { x in
            b.withUTF8 { y in
                guard x.count == y.count else { return false }
                var difference: UInt8 = 0
                for i in 0..<x.count { difference |= x[i] ^ y[i] }
                return difference == 0
            }
        }
    }
}
