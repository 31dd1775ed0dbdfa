import CaregateStore
import Foundation
import JWTKit
import Synchronization

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
    /// The clinic the token acts for, when its client is bound to one.
    var org: String?

    func verify(using algorithm: some JWTAlgorithm) async throws {
        try exp.verifyNotExpired()
        try aud.verifyIntendedAudience(includes: TokenService.audience)
    }
}

/// Signs and verifies access tokens with the server's ES256 key (generated at first start,
/// kept in the database so that every instance signs with the same key).
final class TokenService: Sendable {
    static let audience = "caregate"
    static let lifetime: Int64 = 3600

    let issuer: String
    let keys: JWTKeyCollection
    let kid: String
    /// `/.well-known/jwks.json`: every key's public part.
    let jwks: JSONValue
    /// Tokens whose signature was already checked, so that the hot path verifies each token
    /// once (expiry is still checked on every use). Bounded; emptied when full.
    private let verified = Mutex<[String: AccessTokenClaims]>([:])
    static let verifiedCapacity = 50_000

    init(oauth: OAuthStore, issuer: String) async throws {
        let records = try await oauth.signingKeys {
            let key = ES256PrivateKey()
            return ("es256-" + Secrets.randomHex(bytes: 8), key.pemRepresentation)
        }
        self.issuer = issuer
        keys = JWTKeyCollection()
        var published: [JSONValue] = []
        for record in records {
            let key = try ES256PrivateKey(pem: record.privatePEM)
            await keys.add(ecdsa: key, kid: JWKIdentifier(string: record.kid))
            if let parameters = key.parameters {
                published.append(["kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": .string(record.kid),
                                  "x": .string(parameters.x), "y": .string(parameters.y)])
            }
        }
        kid = records[0].kid
        jwks = ["keys": .array(published)]
    }

    func issue(clientID: String, scope: String, organizationID: String?) async throws -> (token: String, claims: AccessTokenClaims) {
        // Whole seconds: NumericDate may carry fractions, but some verifiers expect integers.
        let now = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
        let claims = AccessTokenClaims(
            iss: .init(value: issuer), sub: .init(value: clientID), aud: .init(value: [Self.audience]),
            exp: .init(value: now.addingTimeInterval(TimeInterval(Self.lifetime))), iat: .init(value: now),
            jti: .init(value: "at_" + Secrets.randomHex(bytes: 16)), client_id: clientID, scope: scope, org: organizationID)
        var header = JWTHeader()
        header.typ = "at+jwt"
        let token = try await keys.sign(claims, kid: JWKIdentifier(string: kid), header: header)
        return (token, claims)
    }

    /// The claims of a valid token of ours: signature, `typ: at+jwt`, issuer, audience and expiry checked.
    func verify(_ token: String) async -> AccessTokenClaims? {
        if let known = verified.withLock({ $0[token] }) {
            return known.exp.value > Date() ? known : nil
        }
        guard let claims = await verifySignature(token) else { return nil }
        verified.withLock { cache in
            if cache.count >= Self.verifiedCapacity { cache.removeAll(keepingCapacity: true) }
            cache[token] = claims
        }
        return claims
    }

    private func verifySignature(_ token: String) async -> AccessTokenClaims? {
        guard token.utf8.count <= 4096, let header = Self.header(of: token),
              header["typ"] as? String == "at+jwt", header["alg"] as? String == "ES256"
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
