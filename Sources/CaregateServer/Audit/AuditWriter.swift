import CaregateStore
import Logging
import ServiceLifecycle
import Synchronization

/// Collects audit events off the request path and writes them in batches; on shutdown
/// it writes what is left before it returns.
final class AuditWriter: Service, Sendable {
    private let buffer = Mutex<[AuditEvent]>([])
    private let store: AuditStore
    private let logger: Logger
    /// Past this many unwritten events new ones are dropped (and counted), so that a
    /// stalled database cannot exhaust memory.
    let limit = 200_000
    private let dropped = Mutex(0)

    init(store: AuditStore, logger: Logger) {
        self.store = store
        self.logger = logger
    }

    func record(_ event: AuditEvent) {
        let accepted = buffer.withLock { events in
            guard events.count < limit else { return false }
            events.append(event)
            return true
        }
        if !accepted { dropped.withLock { $0 += 1 } }
    }

    /// Writes everything buffered so far.
    func flush() async {
        let events = buffer.withLock { events in
            let taken = events
            events.removeAll(keepingCapacity: true)
            return taken
        }
        guard !events.isEmpty else { return }
        do {
            try await store.insert(events)
        } catch {
            logger.error("audit write failed; events kept for the next attempt", metadata: ["count": "\(events.count)", "error": "\(error)"])
            buffer.withLock { $0.insert(contentsOf: events, at: 0) }
        }
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
