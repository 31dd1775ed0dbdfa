import Logging
import NIOCore
import NIOPosix
import SQLiteKit
import Synchronization

/// The read-only SQLite connections behind ``Database/reads``: the reads a request waits for
/// (a credential not cached yet). A read borrows one and runs through SQLiteNIO's async API,
/// which runs it on the database's threads and resumes the caller from there. Through
/// async-kit's pool and SQLiteNIO's futures, the same read hops to an event loop to borrow a
/// connection, to it again for each row, and once more to complete (BENCHMARKS.md: a key's
/// first use). SQLiteNIO's async API gives up a statement whose task is cancelled before it
/// runs; for a read that only means the cancelled caller stops waiting, so writes, which must
/// not be given up that way, never come here (`PRAGMA query_only` refuses them).
///
/// At most `limit` connections, opened when needed and kept; a read waits (FIFO) when all are
/// in use. After ``close()`` none is lent: idle ones are closed at once, borrowed ones when they
/// come back.
final class SQLiteReadConnections: Sendable {
    private enum Grant {
        case connection(SQLiteConnection)
        /// A connection may be opened: the count already includes it.
        case open
        case closed
    }

    private struct State {
        var idle: [SQLiteConnection] = []
        /// Open, borrowed or being opened.
        var count = 0
        var waiters: [CheckedContinuation<Grant, Never>] = []
        var closed = false

        mutating func grant(limit: Int) -> Grant? {
            if closed { return .closed }
            if let connection = idle.popLast() { return .connection(connection) }
            guard count < limit else { return nil }
            count += 1
            return .open
        }
    }

    private let state = Mutex(State())
    private let limit: Int
    private let source: SQLiteSource
    private let eventLoopGroup: any EventLoopGroup
    private let logger: Logger

    init(limit: Int, source: SQLiteSource, eventLoopGroup: any EventLoopGroup, logger: Logger) {
        self.limit = limit
        self.source = source
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
    }

    /// Open, borrowed or being opened.
    var count: Int { state.withLock { $0.count } }

    /// Runs one read, calling `onRow` for each row on the database's thread.
    func query(_ query: String, _ binds: [SQLiteData], _ onRow: @escaping @Sendable (SQLiteRow) -> Void) async throws {
        let connection = try await borrow()
        defer { giveBack(connection) }
        try await connection.query(query, binds, onRow)
    }

    /// No connection is lent from now on; idle ones are closed.
    func close() {
        let (idle, waiters) = state.withLock { state in
            state.closed = true
            state.count -= state.idle.count
            defer { state.idle = []; state.waiters = [] }
            return (state.idle, state.waiters)
        }
        for waiter in waiters { waiter.resume(returning: .closed) }
        for connection in idle { _ = connection.close() }
    }

    private func borrow() async throws -> SQLiteConnection {
        let now = state.withLock { $0.grant(limit: limit) }
        let grant: Grant
        if let now {
            grant = now
        } else {
            grant = await withCheckedContinuation { continuation in
                let now = state.withLock { state -> Grant? in
                    if let now = state.grant(limit: limit) { return now }
                    state.waiters.append(continuation)
                    return nil
                }
                if let now { continuation.resume(returning: now) }
            }
        }
        switch grant {
        case .connection(let connection):
            return connection
        case .closed:
            throw DatabaseError.shutDown
        case .open:
            do {
                let connection = try await source.makeConnection(logger: logger, on: eventLoopGroup.any()).get()
                do {
                    _ = try await connection.query("PRAGMA query_only = ON")
                } catch {
                    try? await connection.close()
                    throw error
                }
                return connection
            } catch {
                // The place is free again: a read waiting for it may open one.
                let waiter = state.withLock { state -> CheckedContinuation<Grant, Never>? in
                    guard !state.closed, !state.waiters.isEmpty else {
                        state.count -= 1
                        return nil
                    }
                    return state.waiters.removeFirst()
                }
                waiter?.resume(returning: .open)
                throw error
            }
        }
    }

    private func giveBack(_ connection: SQLiteConnection) {
        enum Next {
            case waiter(CheckedContinuation<Grant, Never>)
            case kept
            case close
        }
        let next = state.withLock { state -> Next in
            if state.closed {
                state.count -= 1
                return .close
            }
            if !state.waiters.isEmpty { return .waiter(state.waiters.removeFirst()) }
            state.idle.append(connection)
            return .kept
        }
        switch next {
        case .waiter(let waiter): waiter.resume(returning: .connection(connection))
        case .kept: break
        case .close: _ = connection.close()
        }
    }
}
