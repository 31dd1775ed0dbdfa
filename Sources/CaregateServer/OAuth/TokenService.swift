import CaregateStore
import CryptoExtras
import Foundation
import JWTKit
import Synchronization

enum TokenKeyError: Error, CustomStringConvertible {
    case noSigningKey
    case unknownAlgorithm(String)

    var description: String {
        switch self {
        case .noSigningKey: "no token-signing key in the database"
        case .unknownAlgorithm(let name): "a token-signing key uses an unknown algorithm \(name)"
        }
    }
}

extension Data {
    var base64URLEncoded: String {
        base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }
}

/// Claims of a Caregate access token (RFC 9068).
struct AccessTokenClaims: JWTPayload, Equatable {
    var iss: IssuerClaim
    var sub: SubjectClaim
    var aud: AudienceClaim
    var exp: ExpirationClaim
    var iat: IssuedAtClaim
    var jti: IDClaim
    var client_id: String
    var scope: String
    /// The clinic the token acts for, when its client is bound to one (and for every
    /// SMART launch token: the signed-in person's clinic).
    var org: String?
    /// SMART launch context: the patient and encounter in context, the person's FHIR identity
    /// (relative), and the token family the authorization opened (revoking it ends the token).
    var patient: String?
    var encounter: String?
    var fhirUser: String?
    var fam: String?

    /// Issued in the future, or not yet valid (`nbf`), is refused as well as expired; a minute of
    /// clock skew between instances is tolerated.
    var nbf: NotBeforeClaim?

    func verify(using algorithm: some JWTAlgorithm) async throws {
        try exp.verifyNotExpired()
        try aud.verifyIntendedAudience(includes: TokenService.audience)
        let skew: TimeInterval = 60
        guard iat.value <= Date().addingTimeInterval(skew), iat.value < exp.value else {
            throw JWTError.claimVerificationFailure(failedClaim: iat, reason: "issued in the future")
        }
        try nbf?.verifyNotBefore(currentDate: Date().addingTimeInterval(skew))
    }
}

/// Claims of an OpenID Connect id_token.
struct IDTokenClaims: JWTPayload {
    var iss: IssuerClaim
    var sub: SubjectClaim
    var aud: AudienceClaim
    var exp: ExpirationClaim
    var iat: IssuedAtClaim
    var nonce: String?
    var fhirUser: String?

    func verify(using algorithm: some JWTAlgorithm) async throws { try exp.verifyNotExpired() }
}

/// The algorithm of the token-signing keys the server generates.
public enum TokenAlgorithm: String, Sendable, CaseIterable {
    case es256 = "ES256"
    case rs256 = "RS256"
}

/// Signs and verifies access tokens. The signing keys live in the database so that every
/// instance signs with the same key: one is generated at first start (ES256 by default,
/// RS256 on request); a rotation retires it and signs with a new one, and a retired key
/// stays published at `/.well-known/jwks.json` (and keeps verifying) until every token it
/// signed has expired. Instances pick a rotation up with the other grant-chain changes.
final class TokenService: Sendable {
    static let audience = "caregate"
    static let lifetime: Int64 = 3600

    struct Published: Sendable {
        /// The key that signs new access tokens.
        var kid: String
        /// The RSA key that signs OpenID Connect id_tokens (RS256, as SMART requires).
        var idTokenKid: String
        /// kid → algorithm of every key that may still verify a token.
        var algorithms: [String: String]
        /// `/.well-known/jwks.json`.
        var jwks: [UInt8]
    }

    let issuer: String
    let algorithm: TokenAlgorithm
    private let oauth: OAuthStore
    private let keys = JWTKeyCollection()
    private let published: Mutex<Published>
    /// Tokens whose signature was already checked, so that the hot path verifies each token
    /// once (expiry is still checked on every use). Bounded: full, it drops its oldest token for
    /// each new one, never all at once (which would send every token in use back to a signature
    /// check together).
    private let verified: Mutex<BoundedMap<VerifiedToken, AccessTokenClaims>>
    static let verifiedCapacity = 50_000

    /// A token as the verified cache's key: equal by the whole token, hashed by its last 64
    /// bytes only, which of a verified token are its signature (unpredictable to anyone without
    /// the key). Hashing the whole token, hundreds of bytes, cost 0.7 % of a forwarded request's
    /// CPU (perf, 2026-12-02); tokens alike but for earlier bytes only share a bucket.
    struct VerifiedToken: Hashable {
        let token: String

        static func == (left: Self, right: Self) -> Bool { left.token == right.token }

        func hash(into hasher: inout Hasher) {
            let tail = token.utf8.suffix(64)
            if tail.withContiguousStorageIfAvailable({ hasher.combine(bytes: UnsafeRawBufferPointer($0)) }) == nil {
                for byte in tail { hasher.combine(byte) }
            }
        }
    }

    init(oauth: OAuthStore, issuer: String, algorithm: TokenAlgorithm = .es256, verifiedCapacity: Int = TokenService.verifiedCapacity) async throws {
        self.oauth = oauth
        self.issuer = issuer
        self.algorithm = algorithm
        verified = Mutex(BoundedMap(capacity: verifiedCapacity))
        published = Mutex(Published(kid: "", idTokenKid: "", algorithms: [:], jwks: []))
        try await oauth.sealPlainSigningKeys()
        let records = try await oauth.signingKeys(algorithms: Self.algorithms(algorithm)) { name in
            try Self.generate(TokenAlgorithm(rawValue: name) ?? algorithm)
        }
        try await load(records)
    }

    /// The current signing key's id and every published public key.
    var current: Published { published.withLock { $0 } }

    /// A new private key as PEM.
    static func generate(_ algorithm: TokenAlgorithm) throws -> SigningKeyRecord {
        let pem: String = switch algorithm {
        case .es256: ES256PrivateKey().pemRepresentation
        case .rs256: try Insecure.RSA.PrivateKey(backing: _RSA.Signing.PrivateKey(keySize: .bits2048)).pemRepresentation
        }
        return SigningKeyRecord(
            kid: algorithm.rawValue.lowercased() + "-" + Secrets.randomHex(bytes: 8), algorithm: algorithm.rawValue, privatePEM: pem,
            createdAt: Clock.millis(), retiredAt: nil)
    }

    /// The current keys a server signing access tokens with `algorithm` keeps: that one, and
    /// an RSA key for id_tokens.
    static func algorithms(_ algorithm: TokenAlgorithm) -> [String] {
        Array(Set([algorithm.rawValue, TokenAlgorithm.rs256.rawValue])).sorted()
    }

    /// Retires the signing keys and signs with new ones (the access-token key is returned).
    func rotate() async throws -> SigningKeyRecord {
        let keys = try Self.algorithms(algorithm).map { try Self.generate(TokenAlgorithm(rawValue: $0)!) }
        try await oauth.rotateSigningKeys(to: keys)
        try await reload()
        return keys.first { $0.algorithm == algorithm.rawValue }!
    }

    /// Reads the keys again (another instance may have rotated).
    func reload() async throws {
        try await load(try await oauth.allSigningKeys())
    }

    private func load(_ records: [SigningKeyRecord]) async throws {
        let now = Clock.millis()
        // A retired key verifies (and is published) until its last token has expired.
        let live = records.filter { record in record.retiredAt.map { $0 + (Self.lifetime + 60) * 1000 > now } ?? true }
        guard let signing = live.first(where: { $0.retiredAt == nil && $0.algorithm == algorithm.rawValue }),
              let idSigning = live.first(where: { $0.retiredAt == nil && $0.algorithm == TokenAlgorithm.rs256.rawValue })
        else { throw TokenKeyError.noSigningKey }
        // A reload (after a rotation elsewhere, or a retry of one) parses keys only when the live set moved.
        let known = current
        if known.kid == signing.kid, known.idTokenKid == idSigning.kid, Set(known.algorithms.keys) == Set(live.map(\.kid)) { return }
        var algorithms: [String: String] = [:]
        var publicKeys: [JSONValue] = []
        for record in live {
            let kid = JWKIdentifier(string: record.kid)
            switch record.algorithm {
            case TokenAlgorithm.es256.rawValue:
                let key = try ES256PrivateKey(pem: record.privatePEM)
                await keys.add(ecdsa: key, kid: kid)
                guard let parameters = key.parameters else { continue }
                publicKeys.append(["kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": .string(record.kid),
                                   "x": .string(parameters.x), "y": .string(parameters.y)])
            case TokenAlgorithm.rs256.rawValue:
                let key = try Insecure.RSA.PrivateKey(pem: record.privatePEM)
                await keys.add(rsa: key, digestAlgorithm: .sha256, kid: kid)
                let (modulus, exponent) = try key.publicKey.getKeyPrimitives()
                publicKeys.append(["kty": "RSA", "use": "sig", "alg": "RS256", "kid": .string(record.kid),
                                   "n": .string(modulus.base64URLEncoded), "e": .string(exponent.base64URLEncoded)])
            default:
                throw TokenKeyError.unknownAlgorithm(record.algorithm)
            }
            algorithms[record.kid] = record.algorithm
        }
        let state = Published(kid: signing.kid, idTokenKid: idSigning.kid, algorithms: algorithms, jwks: (["keys": .array(publicKeys)] as JSONValue).serialized())
        published.withLock { $0 = state }
    }

    /// The FHIR base URL: a SMART launch's `aud` and `iss`.
    var fhirBase: String { issuer + Discovery.fhirBasePath }

    /// An access token for a client (`subject` is the person for a SMART launch token).
    func issue(
        clientID: String, scope: String, organizationID: String?, subject: String? = nil, context: LaunchContext? = nil, family: String? = nil
    ) async throws -> (token: String, claims: AccessTokenClaims) {
        // Whole seconds: NumericDate may carry fractions, but some verifiers expect integers.
        let now = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
        let claims = AccessTokenClaims(
            iss: .init(value: issuer), sub: .init(value: subject ?? clientID), aud: .init(value: family == nil ? [Self.audience] : [Self.audience, fhirBase]),
            exp: .init(value: now.addingTimeInterval(TimeInterval(Self.lifetime))), iat: .init(value: now),
            jti: .init(value: "at_" + Secrets.randomHex(bytes: 16)), client_id: clientID, scope: scope, org: organizationID,
            patient: context?.patient, encounter: context?.encounter, fhirUser: context?.fhirUser, fam: family)
        var header = JWTHeader()
        header.typ = "at+jwt"
        let token = try await keys.sign(claims, kid: JWKIdentifier(string: current.kid), header: header)
        // Signed here with a current key: its first use on this instance then needs no signature
        // check (most of an access token's first-use cost), as if it had been verified already.
        verified.withLock { $0[VerifiedToken(token: token)] = claims }
        return (token, claims)
    }

    /// An OpenID Connect id_token for the person a SMART authorization acted for: RS256,
    /// `aud` = the client, `fhirUser` an absolute URL, `nonce` echoed.
    func issueIDToken(clientID: String, subject: String, fhirUser: String?, nonce: String?) async throws -> String {
        let now = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
        let claims = IDTokenClaims(
            iss: .init(value: issuer), sub: .init(value: subject), aud: .init(value: [clientID]),
            exp: .init(value: now.addingTimeInterval(TimeInterval(Self.lifetime))), iat: .init(value: now),
            nonce: nonce, fhirUser: fhirUser.map { fhirBase + "/" + $0 })
        var header = JWTHeader()
        header.typ = "JWT"
        return try await keys.sign(claims, kid: JWKIdentifier(string: current.idTokenKid), header: header)
    }

    /// The claims of a valid token of ours: signature, `typ: at+jwt`, issuer, audience and expiry checked.
    func verify(_ token: String) async -> AccessTokenClaims? {
        if let known = alreadyVerified(token) { return known }
        guard let claims = await verifySignature(token) else { return nil }
        verified.withLock { $0[VerifiedToken(token: token)] = claims }
        return claims
    }

    /// The claims of a token whose signature was checked before, while it has not expired;
    /// nil otherwise (also for a token never seen: ``verify(_:)`` checks that one).
    func alreadyVerified(_ token: String) -> AccessTokenClaims? {
        guard let known = verified.withLock({ $0[VerifiedToken(token: token)] }), known.exp.value > Date() else { return nil }
        return known
    }

    private func verifySignature(_ token: String) async -> AccessTokenClaims? {
        // Only our own kinds of keys, each with its own algorithm (never `none`, never HS*);
        // `typ` as RFC 9068 §4 allows it, with or without the `application/` prefix.
        guard token.utf8.count <= 4096, let header = Self.header(of: token), ["at+jwt", "application/at+jwt"].contains(header["typ"] as? String ?? ""),
              let kid = header["kid"] as? String, let alg = header["alg"] as? String, current.algorithms[kid] == alg
        else { return nil }
        guard let claims = try? await keys.verify(token, as: AccessTokenClaims.self), claims.iss.value == issuer else { return nil }
        return claims
    }

    /// A JWT's header, decoded without verifying anything.
    static func header(of token: String) -> [String: Any]? {
        segment(0, of: token).flatMap { (try? JSONSerialization.jsonObject(with: $0)) as? [String: Any] }
    }

    /// One dot-separated part of a compact JWT, base64url-decoded.
    static func segment(_ index: Int, of token: String) -> Data? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else { return nil }
        var base64 = parts[index].replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64)
    }
}
