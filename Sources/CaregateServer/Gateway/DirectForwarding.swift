import CaregateStore
import Foundation
import HTTPTypes
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import Scopes
import Synchronization

/// The gateway's direct path. A request that the pipeline (``EnforcementMiddleware``) would
/// forward to a plain-http upstream without reading a body, by a credential already cached,
/// is forwarded by ``DirectForwardingHandler`` on its connection's event loop instead: the
/// same authentication, the same `decide`, the same audit record, metrics and headers, without
/// the request and response objects, the task and the four thread hops a forwarded request
/// costs in the pipeline (BENCHMARKS.md, "Where a forwarded request's CPU goes").
///
/// Everything else goes the pipeline's way: no credential or one not cached yet, a refusal,
/// a request with a body, an https upstream, `Connection: close`, `Expect`, a public route.
/// So the direct path only ever forwards what the pipeline would forward, and every refusal
/// is still the pipeline's answer.
struct DirectForwarding: Sendable {
    let registry: SurfaceRegistry
    let resolver: CredentialResolver
    let audit: AuditWriter
    let upstreams: LoopUpstreams
    let metrics: ForwardingMetrics
    let logger: Logger
    /// `Server` on every answer, as Hummingbird sets it on the pipeline's.
    let serverName: String

    /// A request the direct path forwards, with everything its answer needs. A reference: the
    /// handler's callbacks each hold it without copying its fields.
    final class Plan {
        let surface: Surface
        let forwarder: UpstreamForwarder
        let target: LoopUpstreams.Target
        /// The request as the upstream gets it: its HTTP/1.1 head, as bytes.
        let request: ByteBuffer
        let traceID: String
        let method: HTTPRequest.Method
        /// The route's index in the surface's catalog.
        let routeIndex: Int
        /// Filled in but for the status; taken (not copied) when the request is recorded.
        var event: AuditEvent?
        let started: UInt64
        /// The active-requests meter of the method, once counted.
        var active: Meter?
        /// Read by ``DirectByteIntake`` (not NIO's parser): the answer is written as bytes, past
        /// NIO's HTTP/1 encoder, which never saw the request.
        var inBytes = false

        /// The route's template (the metrics' `http.route`).
        var route: String { surface.routeTemplates[routeIndex] }

        init(
            surface: Surface, forwarder: UpstreamForwarder, target: LoopUpstreams.Target, request: ByteBuffer, traceID: String,
            method: HTTPRequest.Method, routeIndex: Int, event: AuditEvent, started: UInt64
        ) {
            self.surface = surface
            self.forwarder = forwarder
            self.target = target
            self.request = request
            self.traceID = traceID
            self.method = method
            self.routeIndex = routeIndex
            self.event = event
            self.started = started
        }
    }

    /// The plan for a request, from its HTTP/1 head as the parser read it (before it becomes
    /// HTTP types: ``DirectRequestIntake``), or nil when the pipeline must answer it. Anything
    /// the pipeline could read differently (a field it reads given twice, which it would join)
    /// is left to the pipeline too.
    func plan(_ head: HTTPRequestHead, caller: String?) -> Plan? {
        let method: HTTPRequest.Method
        switch head.method {
        case .GET: method = .get
        case .HEAD: method = .head
        case .DELETE: method = .delete
        case .OPTIONS: method = .options
        default: return nil
        }
        let target = head.uri
        guard target.utf8.first == UInt8(ascii: "/"), !target.utf8.contains(UInt8(ascii: "#")) else { return nil }
        var authorization: String?
        var organization: String?
        var trace: String?
        // NIO's parser (llhttp, strict) has refused any value with a byte HTTP types would rewrite.
        for (name, value) in head.headers {
            // Each comparison first checks the length, so most names are passed over at once.
            if UpstreamAnswerParser.equalsLowercased(name, "authorization") {
                guard authorization == nil else { return nil }
                authorization = value
            } else if UpstreamAnswerParser.equalsLowercased(name, "x-organization-id") {
                guard organization == nil else { return nil }
                organization = value
            } else if UpstreamAnswerParser.equalsLowercased(name, "x-trace-id") {
                guard trace == nil else { return nil }
                trace = value
            } else if UpstreamAnswerParser.equalsLowercased(name, "content-length") {
                // A body, a transfer coding, a closing connection or an `Expect` are the pipeline's to handle.
                guard value == "0" else { return nil }
            } else if UpstreamAnswerParser.equalsLowercased(name, "transfer-encoding") || UpstreamAnswerParser.equalsLowercased(name, "expect") {
                return nil
            } else if UpstreamAnswerParser.equalsLowercased(name, "connection"), value.lowercased().contains("close") {
                return nil
            }
        }
        let path: String
        let query: String?
        if let mark = target.utf8.firstIndex(of: UInt8(ascii: "?")) {
            path = String(target[..<mark])
            query = String(target[target.index(after: mark)...])
        } else {
            path = target
            query = nil
        }
        guard let (surface, forwarder, direct) = directUpstream(path) else { return nil }
        guard let authorization, RequestAuthenticator.hasBearerScheme(authorization),
              let credential = resolver.cached(presented: authorization.dropFirst(7), organizationHeader: organization),
              let scopesMethod = Scopes.HTTPMethod(method)
        else { return nil }
        let decision = EnforcementMiddleware.decide(surface, credential.decisionSets[surface.decisionIndex], scopesMethod, path, query)
        guard case .allowed(let route) = decision else { return nil }

        let traceID = TraceMiddleware.traceID(given: trace)
        let outbound = Self.requestHead(
            method: method.rawValue, uri: forwarder.basePath + target, host: direct.hostHeader,
            forwarder.outboundFields(head.headers, traceID: traceID, caller: caller, credential, credential.scopeHeader[surface.index]))
        var event = AuditEvent.opened(method: method.rawValue, path: path, traceID: traceID)
        event.note(credential)
        event.note(decision, on: surface)
        return Plan(
            surface: surface, forwarder: forwarder, target: direct, request: outbound, traceID: traceID, method: method,
            routeIndex: route.index, event: event, started: DispatchTime.now().uptimeNanoseconds)
    }

    /// Whether a request for `target` may be one the direct path forwards (a path on a surface
    /// with a plain-http upstream): the rest of its head is worth reading into strings.
    func mayForward(_ target: String) -> Bool {
        directUpstream(target.utf8.firstIndex(of: UInt8(ascii: "?")).map { String(target[..<$0]) } ?? target) != nil
    }

    /// The surface of `path` when it is forwarded to a plain-http upstream on a non-public route.
    private func directUpstream(_ path: String) -> (Surface, UpstreamForwarder, LoopUpstreams.Target)? {
        guard let surface = registry.surface(for: path), case .upstream(let forwarder) = surface.backend, let direct = forwarder.direct,
              !surface.isRouterPath(path)
        else { return nil }
        return (surface, forwarder, direct)
    }

    /// An HTTP/1.1 request head as bytes. Every part has been checked already: the method, the
    /// target and the caller's fields by the parser, the rest are Caregate's own.
    static func requestHead(method: String, uri: String, host: String, _ fields: [(String, String)]) -> ByteBuffer {
        var size = method.utf8.count + uri.utf8.count + host.utf8.count + 23
        for (name, value) in fields { size += name.utf8.count + value.utf8.count + 4 }
        // Each part copied once, straight into the buffer: joining them as a string first, or a
        // checked write per part, cost 3 % of a forwarded request's CPU (perf, 2026-12-02).
        var buffer = ByteBufferAllocator().buffer(capacity: size)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { out in
            var cursor = out.baseAddress!
            copy(method, to: &cursor)
            copy(" " as StaticString, to: &cursor)
            copy(uri, to: &cursor)
            copy(" HTTP/1.1\r\n" as StaticString, to: &cursor)
            for (name, value) in fields {
                copy(name, to: &cursor)
                copy(": " as StaticString, to: &cursor)
                copy(value, to: &cursor)
                copy("\r\n" as StaticString, to: &cursor)
            }
            // Last, where the pipeline's forwarder puts it (the caller's `Host` is left out as hop-by-hop).
            copy("Host: " as StaticString, to: &cursor)
            copy(host, to: &cursor)
            copy("\r\n\r\n" as StaticString, to: &cursor)
            return cursor - out.baseAddress!
        }
        return buffer
    }

    private static func copy(_ text: String, to cursor: inout UnsafeMutableRawPointer) {
        let copied = text.utf8.withContiguousStorageIfAvailable { bytes in
            if let base = bytes.baseAddress { cursor.copyMemory(from: base, byteCount: bytes.count) }
            return bytes.count
        }
        if let copied {
            cursor += copied
        } else {
            for byte in text.utf8 {
                cursor.storeBytes(of: byte, as: UInt8.self)
                cursor += 1
            }
        }
    }

    private static func copy(_ text: StaticString, to cursor: inout UnsafeMutableRawPointer) {
        cursor.copyMemory(from: text.utf8Start, byteCount: text.utf8CodeUnitCount)
        cursor += text.utf8CodeUnitCount
    }

    /// The answer's head as the pipeline would write it, in the HTTP/1 form the client's
    /// connection writes: the upstream's headers without its connection's, the trace id, `Date`
    /// and `Server`.
    func answerHead(_ upstream: HTTPResponseHead, traceID: String) -> HTTPResponseHead {
        // One pass over the upstream's headers (removing each name in turn scanned them a dozen
        // times), handed over whole: they passed the upstream connection's parser.
        var headers: [(String, String)] = []
        headers.reserveCapacity(upstream.headers.count + 3)
        for (name, value) in upstream.headers where !Self.isReplacedInAnswer(name) {
            headers.append((name, value))
        }
        headers.append(("X-Trace-Id", traceID))
        headers.append(("Date", HTTPDate.now))
        headers.append(("Server", serverName))
        return HTTPResponseHead(version: .http1_1, status: .init(statusCode: Int(upstream.status.code)), headers: HTTPHeaders(headers))
    }

    /// The same answer's head as bytes, framed as NIO's HTTP/1 encoder frames it (for an answer
    /// that passes it by: ``DirectForwarding/Plan/inBytes``): no `Content-Length` where no body
    /// may be, `transfer-encoding: chunked` where a body has no length. `chunked`: the body is
    /// to be written in chunks (never for an answer to `HEAD`, which has no body).
    func answerBytes(_ upstream: HTTPResponseHead, traceID: String, toHead: Bool) -> (head: ByteBuffer, chunked: Bool) {
        let status = HTTPResponseStatus(statusCode: Int(upstream.status.code))
        let mayHaveBody = status.mayHaveResponseBody
        let date = HTTPDate.now
        var size = status.reasonPhrase.utf8.count + traceID.utf8.count + date.utf8.count + serverName.utf8.count + 96
        for (name, value) in upstream.headers { size += name.utf8.count + value.utf8.count + 4 }
        var buffer = ByteBufferAllocator().buffer(capacity: size)
        buffer.writeStaticString("HTTP/1.1 ")
        buffer.writeString(String(status.code))
        buffer.writeStaticString(" ")
        buffer.writeString(status.reasonPhrase)
        buffer.writeStaticString("\r\n")
        var hasLength = false
        for (name, value) in upstream.headers where !Self.isReplacedInAnswer(name) {
            if UpstreamAnswerParser.equalsLowercased(name, "content-length") {
                guard mayHaveBody else { continue }
                hasLength = true
            }
            buffer.writeString(name)
            buffer.writeStaticString(": ")
            buffer.writeString(value)
            buffer.writeStaticString("\r\n")
        }
        buffer.writeStaticString("X-Trace-Id: ")
        buffer.writeString(traceID)
        buffer.writeStaticString("\r\nDate: ")
        buffer.writeString(date)
        buffer.writeStaticString("\r\nServer: ")
        buffer.writeString(serverName)
        let chunked = mayHaveBody && !hasLength
        buffer.writeStaticString(chunked ? "\r\ntransfer-encoding: chunked\r\n\r\n" : "\r\n\r\n")
        return (buffer, chunked && !toHead)
    }

    /// The upstream's headers an answer leaves out: its connection's, and those Caregate sets.
    private static let replacedInAnswer = UpstreamForwarder.hopByHopNames + ["x-trace-id", "date", "server"]

    static func isReplacedInAnswer(_ name: String) -> Bool {
        replacedInAnswer.contains { UpstreamAnswerParser.equalsLowercased(name.utf8, $0.utf8) }
    }

    /// Records a finished request: its audit event and metrics. `failed`: the answer is
    /// Caregate's own 502 or 504, not the upstream's.
    func finished(_ plan: Plan, status: Int, failed: Bool) {
        if var event = plan.event.take() {
            event.status = status
            audit.record(consume event)
        }
        metrics.record(plan, status: status, failed: failed)
    }
}

/// The request metrics (``RequestMetrics``, the pipeline's) of the direct path's requests,
/// with the recorders found by surface and route index rather than by the route's text.
final class ForwardingMetrics: Sendable {
    private struct Key: Hashable {
        var surface: Int
        var route: Int
        var method: HTTPRequest.Method
        var status: Int
    }

    let shared: RequestMetrics
    private let recorders = Mutex<[Key: RequestMetrics.Recorders]>([:])
    private let directRequests = Atomic<Int>(0)
    private let bytesRequests = Atomic<Int>(0)

    init(shared: RequestMetrics) {
        self.shared = shared
    }

    /// Requests forwarded on the direct path since start.
    var forwardedDirectly: Int { directRequests.load(ordering: .relaxed) }

    /// Of those, the requests read from the connection's bytes (``DirectByteIntake``), not by NIO's parser.
    var readAsBytes: Int { bytesRequests.load(ordering: .relaxed) }

    func started(_ plan: DirectForwarding.Plan) {
        directRequests.add(1, ordering: .relaxed)
        if plan.inBytes { bytesRequests.add(1, ordering: .relaxed) }
        let active = shared.activeRequests(plan.method)
        active.increment()
        plan.active = active
    }

    func record(_ plan: DirectForwarding.Plan, status: Int, failed: Bool) {
        let key = Key(surface: plan.surface.index, route: plan.routeIndex, method: plan.method, status: status)
        let recorders = recorders.withLock { recorders in
            if let known = recorders[key] { return known }
            let made = shared.recorders(route: plan.route, method: plan.method, status: status)
            recorders[key] = made
            return made
        }
        recorders.requests.increment()
        // As the pipeline counts them: an error is an answer Caregate made (502, 504), not an upstream's.
        if failed { shared.errorCounter(route: plan.route, method: plan.method, status: status).increment() }
        recorders.duration.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - plan.started))
        plan.active?.decrement()
    }
}

/// The `Date` of an answer (RFC 9110 §5.6.7), made once a second.
enum HTTPDate {
    private static let cached = Mutex<(second: Int, text: String)>((0, ""))

    static var now: String {
        let second = time(nil)
        return cached.withLock { cached in
            if cached.second == second { return cached.text }
            var parts = tm()
            var clock = second
            gmtime_r(&clock, &parts)
            let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
            let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
            func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
            let text = "\(days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) "
                + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
            cached = (second, text)
            return text
        }
    }
}
