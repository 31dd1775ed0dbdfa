import AsyncHTTPClient
import Crypto
import Foundation
import JWTKit
import Logging
import Metrics
import NIOCore
import Synchronization

/// The JWK Sets that OAuth clients publish at a URL (SMART backend services, `jwksUri`),
/// for `private_key_jwt`. A set is fetched with a timeout and a size limit and cached for
/// its `Cache-Control: max-age` (kept between 5 minutes and an hour; 5 minutes without
/// one). An assertion signed with a `kid` the cached set lacks triggers one refetch, at
/// most every 30 s per URL, so a client that rotated its keys is picked up at once while a
/// flood of unknown kids is not a flood of fetches. When a fetch fails, the last good set
/// is used until it is an hour old.
///
/// Why a fetch failed (refused address, connection, HTTP status, size, not a key set) goes to
/// the log only: the client is told the same thing in every case, so that a `jwksUri` cannot
/// be used to learn what answers where inside the server's network.
///
/// Parsed key sets are kept by the digest of their JSON, so a set is parsed (and its RSA or EC
/// keys built) once, not on every assertion, and again only when its text changes.
final class ClientKeySets: Sendable {
    struct FetchError: Error, CustomStringConvertible {
        var description: String
    }
    /// What the client is told, whatever went wrong.
    static let unavailable = "the client's keys could not be obtained from its jwksUri"

    private struct Entry {
        var json: String
        var kids: Set<String>
        var fetchedAt: ContinuousClock.Instant
        var maxAge: Duration
    }

    static let maxBytes = 64 * 1024
    static let timeout: TimeAmount = .seconds(5)
    static let defaultMaxAge: Duration = .seconds(300)
    static let staleLimit: Duration = .seconds(3600)

    private let client: HTTPClient
    private let policy: OutboundAddressPolicy
    /// Unknown-kid refetches of one URL happen at most this often.
    let minimumRefetchInterval: Duration
    private let entries = Mutex<[String: Entry]>([:])
    private let logger: Logger
    private static let refusedAddresses = Counter(label: "caregate_outbound_refused_total")

    /// Parsed key sets by the SHA-256 of their JSON, at most ``parsedLimit`` (the oldest go first).
    private let parsed = Mutex<(sets: [SHA256Digest: JWTKeyCollection], order: [SHA256Digest], parses: Int)>(([:], [], 0))
    static let parsedLimit = 1_000

    init(client: HTTPClient, policy: OutboundAddressPolicy, logger: Logger, minimumRefetchInterval: Duration = .seconds(30)) {
        self.client = client
        self.policy = policy
        self.logger = logger
        self.minimumRefetchInterval = minimumRefetchInterval
    }

    /// How many key sets have been parsed since start (each distinct text once while cached).
    var parses: Int { parsed.withLock { $0.parses } }

    /// The keys of a JWK Set's JSON, parsed once per distinct text; nil when it holds none usable.
    func keys(json: String) async -> JWTKeyCollection? {
        let digest = SHA256.hash(data: Data(json.utf8))
        if let cached = parsed.withLock({ $0.sets[digest] }) { return cached }
        let keys = JWTKeyCollection()
        guard (try? await keys.add(jwksJSON: json)) != nil else { return nil }
        return parsed.withLock { state in
            if let raced = state.sets[digest] { return raced }
            state.parses += 1
            state.sets[digest] = keys
            state.order.append(digest)
            if state.order.count > Self.parsedLimit { state.sets[state.order.removeFirst()] = nil }
            return keys
        }
    }


    /// The JWKS JSON published at `url` that should hold `kid`.
    func keySet(url: String, kid: String) async throws -> String {
        let now = ContinuousClock.now
        let cached = entries.withLock { $0[url] }
        if let cached {
            let fresh = now - cached.fetchedAt < cached.maxAge
            if fresh && cached.kids.contains(kid) { return cached.json }
            // Fresh but without this kid: refetch, unless we just did.
            if fresh && now - cached.fetchedAt < minimumRefetchInterval { return cached.json }
        }
        do {
            let entry = try await fetch(url)
            entries.withLock { $0[url] = entry }
            return entry.json
        } catch {
            logger.warning("client JWKS fetch failed", metadata: ["url": "\(url)", "reason": "\(error)"])
            if let cached, now - cached.fetchedAt < Self.staleLimit { return cached.json }
            throw FetchError(description: Self.unavailable)
        }
    }

    /// JWK members that only a private (or symmetric) key has (RFC 7517, RFC 7518 §6).
    static let privateMembers: Set<String> = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"]

    private func fetch(_ url: String) async throws -> Entry {
        // Checked again at every fetch, before connecting: a name may resolve elsewhere by now.
        guard let host = URLComponents(string: url)?.host else { throw FetchError(description: "the client's JWKS URL has no host") }
        do {
            try await policy.check(host: host)
        } catch {
            Self.refusedAddresses.increment()
            throw FetchError(description: "the client's JWKS URL is not fetched: \(error)")
        }
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "Accept", value: "application/json")
        let response: HTTPClientResponse
        do {
            response = try await client.execute(request, timeout: Self.timeout)
        } catch {
            throw FetchError(description: "cannot fetch the client's JWKS from \(url)")
        }
        guard response.status == .ok else {
            throw FetchError(description: "the client's JWKS URL answered \(response.status.code)")
        }
        let body: ByteBuffer
        do {
            body = try await response.body.collect(upTo: Self.maxBytes)
        } catch {
            throw FetchError(description: "the client's JWKS is larger than \(Self.maxBytes) bytes")
        }
        let json = String(buffer: body)
        guard let object = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any], let keys = object["keys"] as? [[String: Any]]
        else { throw FetchError(description: "the client's JWKS URL did not answer a JSON Web Key Set") }
        guard !keys.contains(where: { !Set($0.keys).isDisjoint(with: Self.privateMembers) }) else {
            throw FetchError(description: "the client's JWKS holds private key material")
        }
        return Entry(
            json: json, kids: Set(keys.compactMap { $0["kid"] as? String }), fetchedAt: .now,
            maxAge: Self.maxAge(response.headers.first(name: "cache-control")))
    }

    /// `max-age` of a Cache-Control header, kept between 5 minutes and an hour.
    static func maxAge(_ cacheControl: String?) -> Duration {
        guard let cacheControl else { return defaultMaxAge }
        for directive in cacheControl.split(separator: ",") {
            let parts = directive.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "max-age", let seconds = Int(parts[1]) {
                return .seconds(min(max(seconds, 300), 3600))
            }
        }
        return defaultMaxAge
    }
}
