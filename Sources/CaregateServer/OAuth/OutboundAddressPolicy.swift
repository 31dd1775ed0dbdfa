import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// Host name → its addresses (IPv4 dotted or IPv6 text), as `getaddrinfo` would answer.
public typealias HostResolver = @Sendable (String) async throws -> [String]

/// Where Caregate may open a connection on a client's say-so (a `jwksUri`): only to public
/// addresses, so that a registered URL cannot make the server reach its own loopback, the
/// cloud metadata service (169.254.169.254) or the private network behind it. A host name is
/// resolved and every address it resolves to must be public; an allowlisted host (by name or
/// address, `--allow-outbound-host`) is exempt. Checked at registration and again before every
/// fetch, before any connection is opened.
struct OutboundAddressPolicy: Sendable {
    /// Host name → addresses (IPv4 dotted or IPv6 text).
    typealias Resolver = HostResolver

    struct Refusal: Error, CustomStringConvertible {
        var description: String
    }

    let allowedHosts: Set<String>
    let resolve: Resolver
    private let unresolved = UnresolvedHosts()
    let lookups = SharedLookups()

    init(allowedHosts: Set<String> = [], resolve: @escaping Resolver = OutboundAddressPolicy.systemResolve) {
        self.allowedHosts = Set(allowedHosts.map { $0.lowercased() })
        self.resolve = resolve
    }

    /// Whether `host` may be connected to; throws naming why not.
    func check(host rawHost: String) async throws(Refusal) {
        let host = rawHost.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        if allowedHosts.contains(host) { return }
        let addresses: [String]
        if Self.isAddressLiteral(host) {
            addresses = [host]
        } else {
            if unresolved.contains(host) { throw Refusal(description: "the host \(host) does not resolve") }
            addresses = await lookups.addresses(of: host, resolve)
            guard !addresses.isEmpty else {
                unresolved.insert(host)
                throw Refusal(description: "the host \(host) does not resolve")
            }
        }
        for address in addresses where !allowedHosts.contains(address) {
            guard let isPublic = Self.isPublic(address) else { throw Refusal(description: "the host \(host) has an unreadable address") }
            guard isPublic else { throw Refusal(description: "the host \(host) is a private, loopback or link-local address") }
        }
    }

    static func isAddressLiteral(_ host: String) -> Bool { ipv4(host) != nil || host.contains(":") }

    /// Whether an address may be reached on a client's say-so (nil: not an address).
    static func isPublic(_ address: String) -> Bool? {
        if let v4 = ipv4(address) { return isPublic(v4: v4) }
        guard let v6 = ipv6(address) else { return nil }
        // IPv4-mapped (::ffff:a.b.c.d) and -compatible forms are judged as the IPv4 address.
        if v6[0..<10].allSatisfy({ $0 == 0 }) && ((v6[10] == 0xFF && v6[11] == 0xFF) || (v6[10] == 0 && v6[11] == 0)) {
            let v4 = UInt32(v6[12]) << 24 | UInt32(v6[13]) << 16 | UInt32(v6[14]) << 8 | UInt32(v6[15])
            return isPublic(v4: v4)
        }
        let first = UInt16(v6[0]) << 8 | UInt16(v6[1])
        switch first {
        case 0xFC00...0xFDFF: return false  // unique local (fc00::/7)
        case 0xFE80...0xFEBF: return false  // link-local (fe80::/10)
        case 0xFF00...0xFFFF: return false  // multicast
        case 0x2001 where v6[2] == 0x0D && v6[3] == 0xB8: return false  // documentation (2001:db8::/32)
        case 0x0064 where v6[2] == 0xFF && v6[3] == 0x9B: return false  // NAT64 (64:ff9b::/96), an IPv4 address behind it
        default: return first >= 0x2000 && first <= 0x3FFF  // global unicast only
        }
    }

    static func isPublic(v4: UInt32) -> Bool {
        func within(_ base: UInt32, _ bits: UInt32) -> Bool { v4 >> (32 - bits) == base >> (32 - bits) }
        let blocked: [(UInt32, UInt32)] = [
            (0x0000_0000, 8), (0x0A00_0000, 8), (0x6440_0000, 10), (0x7F00_0000, 8), (0xA9FE_0000, 16), (0xAC10_0000, 12),
            (0xC000_0000, 24), (0xC000_0200, 24), (0xC0A8_0000, 16), (0xC612_0000, 15), (0xC633_6400, 24), (0xCB00_7100, 24),
            (0xE000_0000, 4), (0xF000_0000, 4),
        ]
        return !blocked.contains { within($0.0, $0.1) }
    }

    static func ipv4(_ text: String) -> UInt32? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for part in parts {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy(\.isASCII), let byte = UInt8(part) else { return nil }
            value = value << 8 | UInt32(byte)
        }
        return value
    }

    static func ipv6(_ text: String) -> [UInt8]? {
        var address = in6_addr()
        guard inet_pton(AF_INET6, text, &address) == 1 else { return nil }
        return withUnsafeBytes(of: &address) { Array($0) }
    }

    /// The system resolver (getaddrinfo), off the cooperative pool.
    static let systemResolve: Resolver = { host in
        try await NIOThreadPool.singleton.runIfActive {
            var hints = addrinfo()
            #if canImport(Glibc)
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            #else
            hints.ai_socktype = SOCK_STREAM
            #endif
            var result: UnsafeMutablePointer<addrinfo>?
            guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else { return [] }
            defer { freeaddrinfo(first) }
            var addresses: [String] = []
            var cursor: UnsafeMutablePointer<addrinfo>? = first
            while let info = cursor {
                var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
                if getnameinfo(info.pointee.ai_addr, info.pointee.ai_addrlen, &buffer, socklen_t(buffer.count), nil, 0, NI_NUMERICHOST) == 0 {
                    addresses.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
                }
                cursor = info.pointee.ai_next
            }
            return addresses
        }
    }
}

/// Host names whose lookup failed (no such name, or no answer in time), remembered for
/// ``remembered``, as resolvers cache resolution failures (RFC 9520: at least 1 s, at most
/// 5 min): a lookup that fails often fails slowly (5 s per attempt when no DNS server answers),
/// on the blocking pool that password hashing shares, so a bad `jwksUri` sent again and again
/// costs one lookup per 30 s, not one per request (requests that arrive while that lookup runs
/// share it: ``SharedLookups``). Names that resolve are looked up every time: the check before a
/// fetch must see what the name resolves to then.
final class UnresolvedHosts: Sendable {
    static let remembered: Duration = .seconds(30)
    static let capacity = 1_024
    private let until = Mutex<[String: ContinuousClock.Instant]>([:])

    func contains(_ host: String) -> Bool {
        until.withLock { entries in
            guard let expiry = entries[host] else { return false }
            if expiry > .now { return true }
            entries[host] = nil
            return false
        }
    }

    func insert(_ host: String) {
        let now = ContinuousClock.now
        until.withLock { entries in
            if entries.count >= Self.capacity {
                entries = entries.filter { $0.value > now }
                // Still full of live entries: forget them all rather than grow without bound.
                if entries.count >= Self.capacity { entries.removeAll(keepingCapacity: true) }
            }
            entries[host] = now + Self.remembered
        }
    }
}

/// Lookups in progress, by host name: a check that arrives while the same name is being looked
/// up waits for that lookup's answer instead of making its own, so a burst of registrations
/// naming one host that does not answer costs one lookup, not one each.
final class SharedLookups: Sendable {
    private struct Lookup {
        let answer: Task<[String], Never>
        var waiting: Int
    }
    private let inProgress = Mutex<[String: Lookup]>([:])

    /// The addresses `host` resolves to (none when the lookup fails).
    func addresses(of host: String, _ resolve: @escaping HostResolver) async -> [String] {
        let (answer, started) = inProgress.withLock { lookups -> (Task<[String], Never>, Bool) in
            if var running = lookups[host] {
                running.waiting += 1
                lookups[host] = running
                return (running.answer, false)
            }
            let answer = Task { (try? await resolve(host)) ?? [] }
            lookups[host] = Lookup(answer: answer, waiting: 1)
            return (answer, true)
        }
        let addresses = await answer.value
        if started { _ = inProgress.withLock { $0.removeValue(forKey: host) } }
        return addresses
    }

    /// How many checks wait for the lookup of `host` in progress (0: none runs).
    func waiting(for host: String) -> Int {
        inProgress.withLock { $0[host]?.waiting ?? 0 }
    }
}
