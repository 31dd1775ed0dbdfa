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
/// Two answers that need nothing but what is in memory are made here too, whole, for requests
/// read as bytes (``plan(_:_:caller:forwards:)``): `GET /healthz`, and `GET …/marketplace/me` by a
/// cached credential.
///
/// Everything else goes the pipeline's way: no credential or one not cached yet, a refusal,
/// a request with a body, an https upstream, `Connection: close`, `Expect`, a public route.
/// So the direct path only ever forwards or answers what the pipeline would forward or answer
/// the same way, and every refusal is still the pipeline's answer.
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
        let upstream: DirectUpstream
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
            surface: Surface, upstream: DirectUpstream, request: ByteBuffer, traceID: String, method: HTTPRequest.Method, routeIndex: Int,
            event: AuditEvent, started: UInt64
        ) {
            self.surface = surface
            self.upstream = upstream
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
        guard let method = Self.method(head.method) else { return nil }
        let target = head.uri
        guard target.utf8.first == UInt8(ascii: "/"), !target.utf8.contains(UInt8(ascii: "#")) else { return nil }
        let path: String
        let query: String?
        if let mark = target.utf8.firstIndex(of: UInt8(ascii: "?")) {
            path = String(target[..<mark])
            query = String(target[target.index(after: mark)...])
        } else {
            path = target
            query = nil
        }
        guard let surface = directSurface(path), let upstream = surface.directUpstream else { return nil }
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
        guard let authorization, let allowed = allowed(surface, method, path, query, authorization, organization) else { return nil }
        let traceID = TraceMiddleware.traceID(given: trace)
        let outbound = Self.requestHead(
            method: method.rawValue, uri: upstream.forwarder.basePath + target, host: upstream.target.hostHeader,
            upstream.forwarder.outboundFields(
                head.headers, traceID: traceID, caller: caller, allowed.credential, allowed.credential.scopeHeader[surface.index]))
        return plan(surface, upstream, allowed, method, path, outbound, traceID)
    }

    /// What the direct path does with a request read from the connection's bytes.
    enum Planned {
        /// Forwarded to an upstream.
        case forward(Plan)
        /// Answered whole, here.
        case answer(LocalAnswer)
    }

    /// What to do with a request ``DirectRequestReader`` read from the connection's bytes
    /// (`raw`), or nil when the pipeline must answer it: `GET /healthz` and `GET …/marketplace/me`
    /// by a cached credential are answered here (``LocalAnswer``); a request to an
    /// upstream is forwarded (when `forwards`: the connection's loop has upstream connections) as
    /// ``plan(_:caller:)`` decides for a parsed head. Fields are read where they are and copied to
    /// the upstream's request as they came (values without the spaces around them): no string is
    /// made of any but the path and the trace id (and the credential's values, when `remembered`,
    /// the connection's last credential, was presented by another request).
    func plan(
        _ head: DirectRequestReader.Head, _ raw: UnsafeRawBufferPointer, caller: String?, forwards: Bool, remembered: inout RememberedCredential
    ) -> Planned? {
        guard let method = Self.method(head.method) else { return nil }
        let target = UnsafeRawBufferPointer(rebasing: raw[head.target])
        let mark = target.firstIndex(of: UInt8(ascii: "?"))
        let path = String(decoding: UnsafeRawBufferPointer(rebasing: target[..<(mark ?? target.count)]), as: UTF8.self)
        let local = method == .get && mark == nil
        if local, path == Self.healthPath { return healthAnswer(head, raw).map { .answer($0) } }
        guard let surface = registry.surface(for: path) else { return nil }
        if local, let me = surface.meRoute, let answer = meAnswer(surface, me, head, raw, path: path, &remembered) { return .answer(answer) }
        guard forwards, let upstream = surface.directUpstream, !surface.isRouterPath(path) else { return nil }
        if upstream.forwarder.trustedProxies.contains(caller ?? "unknown") {
            // A trusted proxy's `X-Forwarded-For` is joined with the caller: read as strings, as a parsed head's.
            return plan(DirectRequestReader.requestHead(head, target: DirectRequestReader.target(head, raw), raw), caller: caller).map { .forward($0) }
        }
        let query = mark.map { String(decoding: UnsafeRawBufferPointer(rebasing: target[($0 + 1)...]), as: UTF8.self) }
        guard let fields = RequestFields(head, raw), let allowed = allowed(surface, method, path, query, fields, &remembered) else { return nil }
        let traceID = fields.traceID
        let outbound = Self.requestBytes(
            method: method.rawValue, base: upstream.forwarder.basePath, target: target, head, raw, host: upstream.target.hostHeader
        ) { field in
            upstream.forwarder.forEachOwnField(
                traceID: traceID, allowed.credential, allowed.credential.scopeHeader[surface.index], forwardedFor: caller ?? "unknown",
                proto: "http", field)
        }
        return .forward(plan(surface, upstream, allowed, method, path, outbound, traceID))
    }

    /// The fields of a request read as bytes that the direct path reads, where they are in the
    /// request (nil: one given twice, or an `Expect`, which are the pipeline's to handle).
    private struct RequestFields {
        var authorization: UnsafeRawBufferPointer?
        var organization: UnsafeRawBufferPointer?
        var trace: UnsafeRawBufferPointer?

        init?(_ head: DirectRequestReader.Head, _ raw: UnsafeRawBufferPointer) {
            // The reader's grammar has left out bodies, transfer codings, upgrades and closing connections.
            var passed = true
            var authorization: UnsafeRawBufferPointer?
            var organization: UnsafeRawBufferPointer?
            var trace: UnsafeRawBufferPointer?
            DirectRequestReader.forEachField(head, raw) { name, value in
                if UpstreamAnswerParser.equalsLowercased(name, "authorization") {
                    passed = authorization == nil
                    authorization = value
                } else if UpstreamAnswerParser.equalsLowercased(name, "x-organization-id") {
                    passed = organization == nil
                    organization = value
                } else if UpstreamAnswerParser.equalsLowercased(name, "x-trace-id") {
                    passed = trace == nil
                    trace = value
                } else if UpstreamAnswerParser.equalsLowercased(name, "expect") {
                    passed = false
                }
                return passed
            }
            guard passed else { return nil }
            self.authorization = authorization
            self.organization = organization
            self.trace = trace
        }

        /// The trace id the answer carries: the caller's, when it is a valid one, or a new one.
        var traceID: String { TraceMiddleware.traceID(given: trace.map { String(decoding: $0, as: UTF8.self) }) }
    }

    /// The answer to `GET /healthz`, as the pipeline makes it, without a task or a thread hop.
    private func healthAnswer(_ head: DirectRequestReader.Head, _ raw: UnsafeRawBufferPointer) -> LocalAnswer? {
        let started = DispatchTime.now().uptimeNanoseconds
        guard let fields = RequestFields(head, raw) else { return nil }
        let traceID = fields.traceID
        return LocalAnswer(
            bytes: answer(CaregateServer.healthBody, traceID: traceID), event: nil, surface: -1, route: 0, template: Self.healthPath, started: started)
    }

    /// The answer to `GET …/marketplace/me` (no query) on `surface` by a cached credential that
    /// the pipeline would answer 200 from the credential's own body: the same head and body,
    /// audit record and metrics as the pipeline's, without a task or a thread hop.
    private func meAnswer(
        _ surface: Surface, _ me: Int, _ head: DirectRequestReader.Head, _ raw: UnsafeRawBufferPointer, path: String,
        _ remembered: inout RememberedCredential
    ) -> LocalAnswer? {
        let started = DispatchTime.now().uptimeNanoseconds
        guard let fields = RequestFields(head, raw), let allowed = allowed(surface, .get, path, nil, fields, &remembered), allowed.route == me
        else { return nil }
        let traceID = fields.traceID
        var event = AuditEvent.opened(method: "GET", path: path, traceID: traceID)
        event.note(allowed.credential)
        event.note(allowed.decision, on: surface)
        event.status = 200
        return LocalAnswer(
            bytes: answer(allowed.credential.meBody[surface.index], traceID: traceID), event: consume event, surface: surface.index, route: me,
            template: surface.routeTemplates[me], started: started)
    }

    static let healthPath = "/healthz"

    /// A 200 with a JSON body, head and body, as the pipeline writes it.
    private func answer(_ body: ByteBuffer, traceID: String) -> ByteBuffer {
        let date = HTTPDate.now
        let length = String(body.readableBytes)
        let size = traceID.utf8.count + date.utf8.count + serverName.utf8.count + length.utf8.count + body.readableBytes + 128
        return HeadWriter.written(size: size) { answer in
            answer.write("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
            answer.field("Content-Length", length)
            forEachOwnField(traceID: traceID, date: date) { answer.field($0, $1) }
            answer.write("\r\n")
            body.withUnsafeReadableBytes { answer.write($0) }
        }
    }

    private static func method(_ method: NIOHTTP1.HTTPMethod) -> HTTPRequest.Method? {
        switch method {
        case .GET: .get
        case .HEAD: .head
        case .DELETE: .delete
        case .OPTIONS: .options
        default: nil
        }
    }

    /// The credential of an allowed request read as bytes, and its decision (nil: the pipeline
    /// decides): the connection's remembered credential when the request presents its values,
    /// else a cached one, then remembered.
    private func allowed(
        _ surface: Surface, _ method: HTTPRequest.Method, _ path: String, _ query: String?, _ fields: RequestFields,
        _ remembered: inout RememberedCredential
    ) -> (credential: Credential, decision: Decision, route: Int)? {
        guard let presented = fields.authorization else { return nil }
        let epoch = resolver.cache.epoch
        let credential: Credential
        if let known = remembered.credential(authorization: presented, organization: fields.organization, epoch: epoch) {
            credential = known
        } else {
            guard let found = cached(presented, fields.organization) else { return nil }
            remembered.remember(found, authorization: presented, organization: fields.organization, epoch: epoch)
            credential = found
        }
        return allowed(surface, method, path, query, credential)
    }

    /// The credential of an allowed request, and its decision (nil: the pipeline decides).
    private func allowed(
        _ surface: Surface, _ method: HTTPRequest.Method, _ path: String, _ query: String?, _ authorization: String, _ organization: String?
    ) -> (credential: Credential, decision: Decision, route: Int)? {
        var authorization = authorization
        let credential = authorization.withUTF8 { authorization in
            guard var organization else { return cached(UnsafeRawBufferPointer(authorization), nil) }
            return organization.withUTF8 { cached(UnsafeRawBufferPointer(authorization), UnsafeRawBufferPointer($0)) }
        }
        guard let credential else { return nil }
        return allowed(surface, method, path, query, credential)
    }

    /// The cached credential an `Authorization` value presents, with the `X-Organization-Id` value
    /// (nil: not a bearer credential, or not cached).
    private func cached(_ authorization: UnsafeRawBufferPointer, _ organization: UnsafeRawBufferPointer?) -> Credential? {
        guard RequestAuthenticator.hasBearerScheme(authorization) else { return nil }
        return resolver.cached(presented: UnsafeRawBufferPointer(rebasing: authorization[7...]), organization: organization)
    }

    /// `decide` for the credential: its set on the surface, nil when it does not allow the request.
    private func allowed(
        _ surface: Surface, _ method: HTTPRequest.Method, _ path: String, _ query: String?, _ credential: Credential
    ) -> (credential: Credential, decision: Decision, route: Int)? {
        guard let scopesMethod = Scopes.HTTPMethod(method) else { return nil }
        let decision = EnforcementMiddleware.decide(surface, credential.decisionSets[surface.decisionIndex], scopesMethod, path, query)
        guard case .allowed(let route) = decision else { return nil }
        return (credential, decision, route.index)
    }

    private func plan(
        _ surface: Surface, _ upstream: DirectUpstream, _ allowed: (credential: Credential, decision: Decision, route: Int),
        _ method: HTTPRequest.Method, _ path: String, _ outbound: ByteBuffer, _ traceID: String
    ) -> Plan {
        var event = AuditEvent.opened(method: method.rawValue, path: path, traceID: traceID)
        event.note(allowed.credential)
        event.note(allowed.decision, on: surface)
        return Plan(
            surface: surface, upstream: upstream, request: outbound, traceID: traceID, method: method, routeIndex: allowed.route,
            event: event, started: DispatchTime.now().uptimeNanoseconds)
    }

    /// The surface of `path` when it is forwarded to a plain-http upstream on a non-public route.
    private func directSurface(_ path: String) -> Surface? {
        guard let surface = registry.surface(for: path), surface.directUpstream != nil, !surface.isRouterPath(path) else { return nil }
        return surface
    }

    /// An HTTP/1.1 request head as bytes. Every part has been checked already: the method, the
    /// target and the caller's fields by the parser, the rest are Caregate's own.
    static func requestHead(method: String, uri: String, host: String, _ fields: [(String, String)]) -> ByteBuffer {
        var size = method.utf8.count + uri.utf8.count + host.utf8.count + 23
        for (name, value) in fields { size += name.utf8.count + value.utf8.count + 4 }
        return HeadWriter.written(size: size) { head in
            head.write(method)
            head.write(" ")
            head.write(uri)
            head.write(" HTTP/1.1\r\n")
            for (name, value) in fields { head.field(name, value) }
            // Last, where the pipeline's forwarder puts it (the caller's `Host` is left out as hop-by-hop).
            head.field("Host", host)
            head.write("\r\n")
        }
    }

    /// The upstream's request for a head read from the connection's bytes: the caller's fields
    /// copied from `raw` but for those withheld (``UpstreamForwarder/isWithheld(_:)``), then
    /// Caregate's own (`ownFields` hands each to the function it is given), then `Host`.
    static func requestBytes(
        method: String, base: String, target: UnsafeRawBufferPointer, _ head: DirectRequestReader.Head, _ raw: UnsafeRawBufferPointer,
        host: String, ownFields: ((String, String) -> Void) -> Void
    ) -> ByteBuffer {
        // The target and the caller's fields come from the head; a field line copied grows by at
        // most one byte (`name:value` becomes `name: value`), and is 4 bytes or more.
        var size = method.utf8.count + base.utf8.count + head.length + head.length / 4 + host.utf8.count + 23
        ownFields { name, value in size += name.utf8.count + value.utf8.count + 4 }
        return HeadWriter.written(size: size) { request in
            request.write(method)
            request.write(" ")
            request.write(base)
            request.write(target)
            request.write(" HTTP/1.1\r\n")
            DirectRequestReader.forEachField(head, raw) { name, value in
                if !UpstreamForwarder.isWithheld(name) { request.field(name, value) }
                return true
            }
            ownFields { request.field($0, $1) }
            request.field("Host", host)
            request.write("\r\n")
        }
    }

    /// The answer's head as the pipeline would write it, in the HTTP/1 form the client's
    /// connection writes: the upstream's headers without its connection's, the trace id, `Date`
    /// and `Server`.
    func answerHead(_ upstream: UpstreamHead, traceID: String) -> HTTPResponseHead {
        var headers: [(String, String)] = []
        upstream.forEachField { name, value in
            guard !Self.isReplacedInAnswer(name) else { return }
            headers.append((String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self)))
        }
        forEachOwnField(traceID: traceID, date: HTTPDate.now) { headers.append(($0, $1)) }
        return HTTPResponseHead(version: .http1_1, status: .init(statusCode: upstream.code), headers: HTTPHeaders(headers))
    }

    /// The same answer's head as bytes, framed as NIO's HTTP/1 encoder frames it (for an answer
    /// that passes it by: ``DirectForwarding/Plan/inBytes``): no `Content-Length` where no body
    /// may be, `transfer-encoding: chunked` where a body has no length. The upstream's fields are
    /// copied from its head's bytes. `chunked`: the body is to be written in chunks (never for
    /// an answer to `HEAD`, which has no body).
    func answerBytes(_ upstream: UpstreamHead, traceID: String, toHead: Bool) -> (head: ByteBuffer, chunked: Bool) {
        let status = HTTPResponseStatus(statusCode: upstream.code)
        let mayHaveBody = status.mayHaveResponseBody
        let date = HTTPDate.now
        let reason = status.reasonPhrase
        // A field line copied grows by at most one byte (`name:value` becomes `name: value`), and is 4 bytes or more.
        let copied = upstream.bytes.readableBytes
        let size = copied + copied / 4 + reason.utf8.count + traceID.utf8.count + date.utf8.count + serverName.utf8.count + 96
        var hasLength = false
        let buffer = HeadWriter.written(size: size) { answer in
            answer.write("HTTP/1.1 ")
            // The parser read three digits.
            answer.write(digit: upstream.code / 100)
            answer.write(digit: upstream.code / 10 % 10)
            answer.write(digit: upstream.code % 10)
            answer.write(" ")
            answer.write(reason)
            answer.write("\r\n")
            upstream.forEachField { name, value in
                guard !Self.isReplacedInAnswer(name) else { return }
                if UpstreamAnswerParser.equalsLowercased(name, "content-length") {
                    guard mayHaveBody else { return }
                    hasLength = true
                }
                answer.field(name, value)
            }
            forEachOwnField(traceID: traceID, date: date) { answer.field($0, $1) }
            answer.write(mayHaveBody && !hasLength ? "transfer-encoding: chunked\r\n\r\n" as StaticString : "\r\n")
        }
        let chunked = mayHaveBody && !hasLength
        return (buffer, chunked && !toHead)
    }

    /// The fields Caregate sets on every answer, after the answer's own: the trace id, `Date` and
    /// `Server` (as Hummingbird sets them on the pipeline's).
    private func forEachOwnField(traceID: String, date: String, _ field: (String, String) -> Void) {
        field("X-Trace-Id", traceID)
        field("Date", date)
        field("Server", serverName)
    }

    /// The upstream's headers an answer leaves out: its connection's, and those Caregate sets.
    private static let replacedInAnswer = (UpstreamForwarder.hopByHopNames + ["x-trace-id", "date", "server"]).map { Array($0.utf8) }

    static func isReplacedInAnswer(_ name: UnsafeRawBufferPointer) -> Bool {
        replacedInAnswer.contains { UpstreamAnswerParser.equalsLowercased(name, $0) }
    }

    /// Records an answer made here: its audit event and metrics.
    func finished(_ answer: LocalAnswer) {
        if let event = answer.event.take() { audit.record(consume event) }
        metrics.record(answer)
    }

    /// Records a forwarded request: its audit event and metrics. `failed`: the answer is
    /// Caregate's own 502 or 504, not the upstream's.
    func finished(_ plan: Plan, status: Int, failed: Bool) {
        if var event = plan.event.take() {
            event.status = status
            audit.record(consume event)
        }
        metrics.record(plan, status: status, failed: failed)
    }
}

/// An answer the direct path makes whole, on the connection's event loop
/// (``DirectForwarding/plan(_:_:caller:forwards:)``). A class, like ``DirectForwarding/Plan``:
/// handed from the intake to the handler, a struct was copied on the way, each copy retaining
/// and releasing the objects its event names, which all requests on both loops share (perf:
/// the copy and its destruction, 0.4 % of `/me`'s samples).
final class LocalAnswer {
    /// Head and body.
    let bytes: ByteBuffer
    /// Filled in, status included; nil for a request the pipeline does not audit (`/healthz`).
    /// Taken (not copied) when the request is recorded.
    var event: AuditEvent?
    /// For the metrics: the surface's index (-1: none) and the route's, and its template.
    let surface: Int
    let route: Int
    let template: String
    let started: UInt64

    init(bytes: ByteBuffer, event: consuming AuditEvent?, surface: Int, route: Int, template: String, started: UInt64) {
        self.bytes = bytes
        self.event = event
        self.surface = surface
        self.route = route
        self.template = template
        self.started = started
    }
}

/// Writes an HTTP/1 head straight into a buffer, each part copied once: joining the parts as a
/// string first, or a checked write per part, cost 3 % of a forwarded request's CPU (perf,
/// 2026-12-02). Every part has been checked already (by a parser, or as Caregate's own).
struct HeadWriter {
    private var cursor: UnsafeMutableRawPointer

    /// A buffer with what `body` writes, which must be at most `size` bytes.
    static func written(size: Int, _ body: (inout HeadWriter) -> Void) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: size)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { out in
            var writer = HeadWriter(cursor: out.baseAddress!)
            body(&writer)
            let written = writer.cursor - out.baseAddress!
            precondition(written <= size, "a head written past its reserved size")
            return written
        }
        return buffer
    }

    /// `name: value` and its line end.
    mutating func field(_ name: String, _ value: String) {
        write(name)
        write(": ")
        write(value)
        write("\r\n")
    }

    mutating func field(_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) {
        write(name)
        write(": ")
        write(value)
        write("\r\n")
    }

    mutating func write(_ text: StaticString) {
        cursor.copyMemory(from: text.utf8Start, byteCount: text.utf8CodeUnitCount)
        cursor += text.utf8CodeUnitCount
    }

    mutating func write(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress else { return }
        cursor.copyMemory(from: base, byteCount: bytes.count)
        cursor += bytes.count
    }

    mutating func write(digit: Int) {
        cursor.storeBytes(of: UInt8(48 + digit), as: UInt8.self)
        cursor += 1
    }

    mutating func write(_ text: String) {
        let copied: Void? = text.utf8.withContiguousStorageIfAvailable { write(UnsafeRawBufferPointer($0)) }
        guard copied == nil else { return }
        for byte in text.utf8 {
            cursor.storeBytes(of: byte, as: UInt8.self)
            cursor += 1
        }
    }
}

/// A surface's plain-http upstream, as the direct path forwards to it: made once with the
/// surface (``Surface/directUpstream``), so that a plan holds it by one reference.
final class DirectUpstream: Sendable {
    let forwarder: UpstreamForwarder
    let target: LoopUpstreams.Target
    /// How long the upstream may take to answer, and to fall silent in an answer.
    let timeout: TimeAmount

    init(forwarder: UpstreamForwarder, target: LoopUpstreams.Target) {
        self.forwarder = forwarder
        self.target = target
        timeout = .nanoseconds(Int64(forwarder.upstream.timeoutSeconds * 1_000_000_000))
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
    private let localAnswers = Atomic<Int>(0)

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
        let recorders = recorders(Key(surface: plan.surface.index, route: plan.routeIndex, method: plan.method, status: status), plan.route)
        recorders.requests.increment()
        // As the pipeline counts them: an error is an answer Caregate made (502, 504), not an upstream's.
        if failed { shared.errorCounter(route: plan.route, method: plan.method, status: status).increment() }
        recorders.duration.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - plan.started))
        plan.active?.decrement()
    }

    /// Answers made on the direct path since start.
    var answeredLocally: Int { localAnswers.load(ordering: .relaxed) }

    func record(_ answer: LocalAnswer) {
        localAnswers.add(1, ordering: .relaxed)
        let recorders = recorders(Key(surface: answer.surface, route: answer.route, method: .get, status: 200), answer.template)
        recorders.requests.increment()
        recorders.duration.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - answer.started))
    }

    private func recorders(_ key: Key, _ template: String) -> RequestMetrics.Recorders {
        recorders.withLock { recorders in
            if let known = recorders[key] { return known }
            let made = shared.recorders(route: template, method: key.method, status: key.status)
            recorders[key] = made
            return made
        }
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
