import CaregateStore
import Foundation

/// The credential a connection's last request on the direct path was authenticated by, with the
/// `Authorization` and `X-Organization-Id` values it presented. A keep-alive client repeats
/// them on every request; when it does, the direct path takes the credential from here and
/// skips the key's keyed hash and digest, the organization's parse and the cache's lock (about
/// 0.5 µs of a cached `/me`, perf 2026-12-04).
///
/// It holds only while nothing in the grant chain has changed: any change applied to the
/// cache moves ``CredentialCache/epoch``, and then the next request is authenticated
/// through the cache again, so a revocation ends it as it ends the cached credential. Expiry
/// is checked on every request. The presented secret is compared in constant time: a proxy
/// may carry several callers' requests on one connection.
///
/// One per connection, used on its event loop only.
struct RememberedCredential {
    private var authorization: [UInt8] = []
    private var organization: [UInt8]?
    private var credential: Credential?
    private var epoch: UInt64 = 0

    /// The remembered credential when the request presents the same values, the cache is at
    /// `epoch` still, and the credential has not expired.
    func credential(
        authorization presented: UnsafeRawBufferPointer, organization named: UnsafeRawBufferPointer?, epoch current: UInt64
    ) -> Credential? {
        guard let credential, current == epoch, Self.same(organization, named),
              authorization.withUnsafeBytes({ Secrets.constantTimeEquals($0, presented) })
        else { return nil }
        if let expiry = credential.expiresAt, expiry <= Clock.millis() { return nil }
        return credential
    }

    /// Remembers `credential`, found in the cache after it was at `epoch`, for these values.
    mutating func remember(
        _ credential: Credential, authorization presented: UnsafeRawBufferPointer, organization named: UnsafeRawBufferPointer?, epoch: UInt64
    ) {
        // The arrays keep their storage: a connection whose callers take turns does not allocate each time.
        authorization.removeAll(keepingCapacity: true)
        authorization.append(contentsOf: presented)
        if let named {
            if organization == nil { organization = [] }
            organization!.removeAll(keepingCapacity: true)
            organization!.append(contentsOf: named)
        } else {
            organization = nil
        }
        self.credential = credential
        self.epoch = epoch
    }

    private static func same(_ remembered: [UInt8]?, _ named: UnsafeRawBufferPointer?) -> Bool {
        switch (remembered, named) {
        case (nil, nil): true
        case (let remembered?, let named?):
            remembered.count == named.count
                && (named.isEmpty || remembered.withUnsafeBytes { memcmp($0.baseAddress!, named.baseAddress!, named.count) == 0 })
        default: false
        }
    }
}
