import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import Synchronization

/// How many connections the server holds open, in all and per peer address.
///
/// Every accepted connection costs a file descriptor until it closes. Without a per-peer cap
/// one host holding thousands of idle connections (no credentials needed) uses up the
/// process's descriptors and nobody else is served; without an overall cap below the
/// descriptor limit, `accept` fails for everyone. The overall cap stops the server accepting
/// (new connections wait in the listen backlog); a peer over its own cap has the new
/// connection closed as soon as it is accepted. Trusted proxies are not capped per peer:
/// every client behind them shares their address.
final class ConnectionLimits: Sendable {
    let perPeer: Int
    let exempt: Set<String>
    private let open = Mutex<[String: Int]>([:])
    private static let refused = Counter(label: "caregate_connections_refused_total", dimensions: [("reason", "per_peer")])

    init(perPeer: Int, exempt: Set<String>) {
        self.perPeer = perPeer
        self.exempt = exempt
    }

    /// Counts a new connection from `peer`; false (and not counted) when the peer is at its cap.
    func admit(_ peer: String) -> Bool {
        if exempt.contains(peer) { return true }
        let admitted = open.withLock { open in
            let count = open[peer, default: 0]
            guard count < perPeer else { return false }
            open[peer] = count + 1
            return true
        }
        if !admitted { Self.refused.increment() }
        return admitted
    }

    func release(_ peer: String) {
        if exempt.contains(peer) { return }
        open.withLock { open in
            let count = open[peer, default: 1] - 1
            open[peer] = count > 0 ? count : nil
        }
    }

    /// Whom a connection counts against: an IPv4 address (also when it arrives IPv4-mapped), or
    /// an IPv6 /64, since one IPv6 host usually holds a whole /64.
    static func peer(_ address: SocketAddress?) -> String {
        guard let address else { return "unknown" }
        if case .v6(let v6) = address {
            let bytes = withUnsafeBytes(of: v6.address.sin6_addr) { Array($0) }
            if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xff && bytes[11] == 0xff {
                return bytes[12..<16].map(String.init).joined(separator: ".")
            }
            return stride(from: 0, to: 8, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }.joined(separator: ":") + "::/64"
        }
        return address.ipAddress ?? "unknown"
    }

    /// Connections held per peer (for tests and diagnostics).
    func count(_ peer: String) -> Int { open.withLock { $0[peer, default: 0] } }

    /// The overall cap: what was asked for, but never closer than `reserve` to the process's
    /// descriptor limit (the database, upstream connections and files need descriptors too).
    static func overallCap(requested: Int?, reserve: Int = 256) -> Int {
        var limit = rlimit()
        let descriptors = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 ? Int(clamping: limit.rlim_cur) : 65_536
        let ceiling = max(64, descriptors - reserve)
        return min(requested ?? ceiling, ceiling)
    }
}

/// HTTP/1.1 connections with ``ConnectionLimits`` applied (and the gateway's direct path): a connection from a peer at its cap
/// is closed before any HTTP handling is set up for it (a refused connection costs a few
/// microseconds and no request handler), the others release their place when they close.
struct LimitedHTTP1Channel: ServerChildChannel {
    typealias Value = HTTP1Channel.Value
    let http: HTTP1Channel
    let limits: ConnectionLimits
    /// The gateway's direct path, when there is a plain-http upstream: its byte intake goes
    /// right before NIO's HTTP/1 encoder and parser (requests read and planned from the connection's
    /// bytes), its intake of the parser's heads right before the codec to HTTP types, the stop
    /// for the ends of answers written as bytes right after that codec, and its handler right
    /// before Hummingbird's request loop, after the handler that tracks requests for the idle
    /// timeout, so that requests forwarded directly count as activity too.
    let direct: DirectForwarding?

    struct Refused: Error {}

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let peer = ConnectionLimits.peer(channel.remoteAddress)
        guard limits.admit(peer) else {
            // Nothing is built for it, so nothing waits to be served: NIO drops a connection
            // whose setup failed once it is closed.
            channel.close(promise: nil)
            return channel.eventLoop.makeFailedFuture(Refused())
        }
        let limits = self.limits
        channel.closeFuture.whenComplete { _ in limits.release(peer) }
        guard let direct else { return http.setup(channel: channel, logger: logger) }
        return http.setup(channel: channel, logger: logger).flatMapThrowing { value in
            let pipeline = channel.pipeline.syncOperations
            let handler = DirectForwardingHandler(direct)
            let ends = DirectAnswerEnds()
            let codec = try pipeline.handler(type: HTTP1ToHTTPServerCodec.self)
            try pipeline.addHandler(handler, position: .after(try pipeline.handler(type: HTTPConnectionStateHandler.self)))
            try pipeline.addHandler(ends, position: .after(codec))
            try pipeline.addHandler(DirectRequestIntake(direct, handler), position: .before(codec))
            // Before NIO's encoder as well as its parser: answers written from there are bytes.
            let encoder = try pipeline.handler(type: HTTPResponseEncoder.self)
            try pipeline.addHandler(DirectByteIntake(direct, handler, ends), position: .before(encoder))
            return value
        }
    }

    func handle(value: Value, logger: Logger) async {
        await http.handle(value: value, logger: logger)
    }
}

extension HTTPServerBuilder {
    /// HTTP/1.1 with per-peer connection limits.
    static func limitedHTTP1(configuration: HTTP1Channel.Configuration, limits: ConnectionLimits, direct: DirectForwarding?) -> HTTPServerBuilder {
        .init { responder in
            LimitedHTTP1Channel(http: HTTP1Channel(responder: responder, configuration: configuration), limits: limits, direct: direct)
        }
    }
}
