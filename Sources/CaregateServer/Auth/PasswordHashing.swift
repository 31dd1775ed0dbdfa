import CaregateStore
import Crypto
import CryptoExtras
import Foundation
import NIOPosix

/// Passwords of clinic users, stored only as a memory-hard hash: scrypt with N = 2^15, r = 8,
/// p = 3 (one of OWASP's equivalent scrypt settings, 32 MiB), a 16-byte random salt and a
/// 32-byte output, kept as `scrypt$N$r$p$salt$hash` (base64) so the cost can be raised later.
/// Hashing takes tens of milliseconds of CPU, so it runs on NIO's blocking thread pool, never
/// on the request's executor.
enum PasswordHashing {
    static let rounds = 1 << 15
    static let blockSize = 8
    static let parallelism = 3
    /// A well-formed hash no password matches: verified against when a username is unknown, so
    /// that the answer costs what a wrong password does.
    static let decoy = "scrypt$\(1 << 15)$8$3$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

    static func hash(_ password: String) async throws -> String {
        var salt = [UInt8](repeating: 0, count: 16)
        for i in salt.indices { salt[i] = UInt8.random(in: .min ... .max) }
        let derived = try await derive(password, salt: salt, rounds: rounds, blockSize: blockSize, parallelism: parallelism)
        return "scrypt$\(rounds)$\(blockSize)$\(parallelism)$\(Data(salt).base64EncodedString())$\(Data(derived).base64EncodedString())"
    }

    /// Whether `password` matches `stored` (compared in constant time); false for anything malformed.
    static func verify(_ password: String, against stored: String) async -> Bool {
        let parts = stored.split(separator: "$")
        guard parts.count == 6, parts[0] == "scrypt", let n = Int(parts[1]), let r = Int(parts[2]), let p = Int(parts[3]),
              n > 1, n <= 1 << 20, r >= 1, r <= 16, p >= 1, p <= 16,
              let salt = Data(base64Encoded: String(parts[4])), let expected = Data(base64Encoded: String(parts[5])),
              let derived = try? await derive(password, salt: Array(salt), rounds: n, blockSize: r, parallelism: p)
        else { return false }
        return Secrets.constantTimeEquals(derived, Array(expected))
    }

    private static func derive(_ password: String, salt: [UInt8], rounds: Int, blockSize: Int, parallelism: Int) async throws -> [UInt8] {
        try await NIOThreadPool.singleton.runIfActive {
            let key = try KDF.Scrypt.deriveKey(
                from: Array(password.utf8), salt: salt, outputByteCount: 32, rounds: rounds, blockSize: blockSize, parallelism: parallelism,
                maxMemory: 64 * 1024 * 1024)
            return key.withUnsafeBytes { Array($0) }
        }
    }
}
