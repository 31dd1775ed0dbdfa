import CaregateStore
import Crypto
import Foundation
import Scopes

/// The scope arithmetic of a SMART authorization, on the app's catalog: which requested
/// scopes a client may ask for, which of them the clinic's grants allow, and whether a
/// refresh's scopes stay within the grant. Scopes keep the spelling they were asked in
/// (v1 stays v1); identity and launch scopes (`openid`, `launch`, …) compare by name.
struct SMARTGrant: Sendable {
    let catalog: CompiledCatalog

    /// `launch` and seed 003's `launch-ehr` are one scope.
    static func sameScope(_ a: String, _ b: String) -> Bool {
        a == b || Set([a, b]) == ["launch", "launch-ehr"]
    }

    private func mask(_ name: String) -> ScopeSet? { try? catalog.resolve(names: [name], credentialType: .smartOnFHIR) }

    /// Whether `name` is covered by `held`: by name for identity and launch scopes, by
    /// permissions for resource scopes (`patient/Patient.read` is within `patient/*.read`).
    func covers(_ held: [String], _ name: String) -> Bool {
        if held.contains(where: { Self.sameScope($0, name) }) { return true }
        guard !SMARTContextScopes.contains(name), name != "launch-ehr", let asked = mask(name), !asked.isEmpty else { return false }
        return asked.isSubset(of: CredentialResolver.known(held, in: catalog))
    }

    /// The requested scopes as a list, or why the request is refused (`invalid_scope`):
    /// unparseable, unknown to the catalog, not for SMART apps, or not registered for the client.
    func requested(_ text: String, client: OAuthClientRecord) -> Result<[String], SMARTGrantError> {
        let names: [String]
        switch Self.parse(text) {
        case .success(let parsed): names = parsed
        case .failure(let problem): return .failure(problem)
        }
        for name in names {
            do {
                _ = try catalog.resolve(names: [name], credentialType: .smartOnFHIR)
            } catch {
                return .failure(.init(description: error.description))
            }
            guard covers(client.scopes, name) else {
                return .failure(.init(description: "scope \"\(Validate.safe(name))\" is not registered for this client"))
            }
        }
        return .success(names)
    }

    /// A refresh's `scope`: every scope within what the refresh token holds (narrowing), or
    /// why it is refused (`invalid_scope`: a refresh never widens).
    func narrowed(_ text: String, within held: [String]) -> Result<[String], SMARTGrantError> {
        Self.parse(text).flatMap { names in
            if let wider = names.first(where: { !covers(held, $0) }) {
                return .failure(.init(description: "scope \"\(Validate.safe(wider))\" was not granted: a refresh may narrow, never widen"))
            }
            return .success(names)
        }
    }

    /// A `scope` parameter as a list: space-separated, at least one.
    private static func parse(_ text: String) -> Result<[String], SMARTGrantError> {
        let names: [String]
        do {
            names = try ScopeList.parse(text).map(\.description)
        } catch {
            return .failure(.init(description: error.description))
        }
        return names.isEmpty ? .failure(.init(description: "scope is empty")) : .success(names)
    }

    /// The requested scopes the clinic's grants (approved ∩ declared) allow.
    func allowed(_ requested: [String], approved: [String], declared: [String]) -> [String] {
        requested.filter { covers(approved, $0) && covers(declared, $0) }
    }
}

struct SMARTGrantError: Error {
    var description: String
}

/// RFC 7636 S256: BASE64URL(SHA256(verifier)) = challenge, the verifier 43–128 unreserved characters.
enum PKCE {
    static func isValidVerifier(_ verifier: String) -> Bool {
        (43...128).contains(verifier.utf8.count)
            && verifier.utf8.allSatisfy { ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || [0x2D, 0x2E, 0x5F, 0x7E].contains($0) }
    }

    /// A challenge is the 43-character base64url of a SHA-256 digest.
    static func isValidChallenge(_ challenge: String) -> Bool {
        challenge.utf8.count == 43 && challenge.utf8.allSatisfy { ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D || $0 == 0x5F }
    }

    static func matches(verifier: String, challenge: String) -> Bool {
        guard isValidVerifier(verifier) else { return false }
        let digest = Data(SHA256.hash(data: Data(verifier.utf8))).base64URLEncoded
        return Secrets.constantTimeEquals(digest, challenge)
    }
}
