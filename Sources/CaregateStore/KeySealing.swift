import Crypto
import Foundation

/// Token-signing private keys at rest: sealed with AES-GCM under a key derived (HKDF-SHA256)
/// from the server secret, bound to the key's `kid`, so that the database alone (a backup, a
/// replica) signs nothing. Protects only when the secret lives outside the database
/// (`CAREGATE_SECRET`); see ``GrantStore/secretIsExternal``.
enum KeySealing {
    static let prefix = "sealed:v1:"

    static func key(from secret: SymmetricKey) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(inputKeyMaterial: secret, info: Data("caregate token-signing keys v1".utf8), outputByteCount: 32)
    }

    static func isSealed(_ stored: String) -> Bool { stored.hasPrefix(prefix) }

    static func seal(_ pem: String, kid: String, key: SymmetricKey) throws -> String {
        let box = try AES.GCM.seal(Data(pem.utf8), using: key, authenticating: Data(kid.utf8))
        return prefix + box.combined!.base64EncodedString()
    }

    static func open(_ stored: String, kid: String, key: SymmetricKey) throws -> String {
        guard let combined = Data(base64Encoded: String(stored.dropFirst(prefix.count))),
              let box = try? AES.GCM.SealedBox(combined: combined),
              let pem = try? AES.GCM.open(box, using: key, authenticating: Data(kid.utf8))
        else {
            throw StoreError.invalid(
                "token-signing key \(kid) cannot be opened: the server secret (CAREGATE_SECRET) is not the one it was sealed with")
        }
        return String(decoding: pem, as: UTF8.self)
    }
}
