import CaregateStore
import Hummingbird
import Logging
import Scopes
import ServiceLifecycle
import Synchronization

/// Collects audit events off the request path and writes them in batches; on shutdown
/// it writes what is left before it returns.
final class AuditWriter: Service, Sendable {
    private let buffer = Mutex<[AuditEvent]>([])
    /// The array the last flush wrote, emptied with its capacity kept: the next flush swaps it
    /// in for the one filled meanwhile. A fresh array per flush had the request threads fault in
    /// its pages as they appended (perf: 1.5 % of `/me`'s samples).
    private let spare = Mutex<[AuditEvent]>([])
    /// A spare larger than this (a burst's) is dropped rather than kept.
    static let spareCapacity = 65_536
    private let store: AuditStore
    private let logger: Logger
    /// Past this many unwritten events new ones are dropped (and counted), so that a
    /// stalled database cannot exhaust memory.
    let limit = 200_000
    private let dropped = Mutex(0)

    /// Requests that failed before authentication, by peer: a tally each, written as one event
    /// per peer and flush, never filed under a clinic and without the caller's path text, so
    /// that an anonymous flood neither writes into a clinic's log nor grows the log per request.
    private struct Tally {
        var count: Int
        var lastAt: Int64
        var status: Int
        var traceID: String
    }
    private let unauthenticated = Mutex<[String: Tally]>([:])
    /// Peers tallied per flush; the rest share one tally under ``otherPeers``.
    static let maxPeers = 1_000
    static let otherPeers = "other"

    init(store: AuditStore, logger: Logger) {
        self.store = store
        self.logger = logger
    }

    func record(_ event: consuming AuditEvent) {
        // Moved, not copied, into the buffer: an event holds a dozen references.
        var pending = Optional(event)
        let accepted = buffer.withLock { events in
            guard events.count < limit else { return false }
            events.append(pending.take()!)
            return true
        }
        if !accepted { dropped.withLock { $0 += 1 } }
    }

    /// One flush at a time, so that a flush returns only once everything recorded before
    /// it is in the database, even when the background flush had already taken it.
    private let flushing = AsyncLock()

    /// Writes everything buffered so far.
    func flush() async {
        _ = try? await flushing.withPermit { await writeBuffered() }
    }

    /// Counts one request that failed before authentication.
    func recordUnauthenticated(peer: String, status: Int, traceID: String) {
        let now = Clock.millis()
        unauthenticated.withLock { tallies in
            let key = tallies[peer] != nil || tallies.count < Self.maxPeers ? peer : Self.otherPeers
            tallies[key] = Tally(count: (tallies[key]?.count ?? 0) + 1, lastAt: now, status: status, traceID: traceID)
        }
    }

    private func writeBuffered() async {
        let tallies = unauthenticated.withLock { tallies in
            let taken = tallies
            tallies.removeAll(keepingCapacity: true)
            return taken
        }
        for (peer, tally) in tallies.sorted(by: { $0.key < $1.key }) {
            record(AuditEvent(
                at: tally.lastAt, organizationID: nil, appID: nil, keyID: nil, method: "*", route: nil, path: "", requiredScope: nil,
                decision: "denied", status: tally.status, traceID: tally.traceID, peer: peer, count: tally.count))
        }
        var events: [AuditEvent] = []
        spare.withLock { swap(&$0, &events) }
        buffer.withLock { swap(&$0, &events) }
        guard !events.isEmpty else {
            spare.withLock { $0 = events }
            return
        }
        do {
            try await store.insert(events)
        } catch {
            logger.error("audit write failed; events kept for the next attempt", metadata: ["count": "\(events.count)", "error": "\(error)"])
            buffer.withLock { $0.insert(contentsOf: events, at: 0) }
            return
        }
        events.removeAll(keepingCapacity: events.capacity <= Self.spareCapacity)
        spare.withLock { $0 = events }
    }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(200))
                await self.flush()
            }
        }
        await flush()
        let lost = dropped.withLock { $0 }
        if lost > 0 { logger.warning("audit events dropped under overload", metadata: ["count": "\(lost)"]) }
    }
}

extension AuditWriter {
    /// Runs one enforced request and records its decision, whatever the outcome: `body`
    /// fills in the credential, route, scope and decision; the status is the answer's.
    /// `path` is the request's (at most 512 bytes of it are kept). A request refused before
    /// a credential was resolved is only counted for its peer (``recordUnauthenticated``).
    func recording(
        _ request: Request, path: String, _ context: CaregateContext, _ body: (inout AuditEvent) async throws -> Response
    ) async throws -> Response {
        var event = AuditEvent.opened(method: request.method.rawValue, path: path, traceID: context.traceID)
        do {
            let response = try await body(&event)
            event.status = response.status.code
            record(consume event)
            return response
        } catch let error as APIError {
            if event.keyID == nil {
                recordUnauthenticated(peer: context.remoteIP ?? "unknown", status: error.status.code, traceID: context.traceID)
                throw error
            }
            event.status = error.status.code
            record(consume event)
            throw error
        } catch {
            event.status = 500
            record(consume event)
            throw error
        }
    }
}

extension AuditEvent {
    /// The event of an enforced request before anything is known of it but its method, path
    /// (at most 512 bytes of it are kept) and trace id: denied until a decision says otherwise.
    static func opened(method: String, path: String, traceID: String) -> AuditEvent {
        AuditEvent(
            at: Clock.millis(), subject: nil, method: method, decided: nil, path: path.utf8.count <= 512 ? path : String(path.prefix(512)),
            decision: "denied", status: 0, traceID: traceID)
    }

    /// Whose request it is: the credential's clinic, app and key (as bits when they are ids of ours).
    mutating func note(_ credential: Credential) {
        if let ids = credential.auditIDs {
            note(ids)
        } else {
            subject = credential.auditSubject
        }
    }

    /// What `decide` answered, as the log keeps it: the route and what it requires when
    /// allowed, the route and the missing scope when refused for scope.
    mutating func note(_ decision: Decision, on surface: Surface) {
        switch decision {
        case .allowed(let route):
            decided = surface.auditRoutes[route.index]
            sharePathWithRoute()
            self.decision = "allowed"
        case .insufficientScope(let route, let required):
            decided = surface.auditRoutes[route.index].naming(required)
        case .notFound, .methodNotAllowed, .invalidPath:
            break
        }
    }
}
