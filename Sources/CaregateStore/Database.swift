public import Logging
public import SQLKit
import AsyncKit
import Foundation
public import NIOCore
public import NIOPosix
import PostgresKit
import SQLiteKit
import Synchronization

/// Where the data lives: an SQLite file (the default) or a PostgreSQL server.
public enum DatabaseLocation: Sendable, Equatable, CustomStringConvertible {
    case sqlite(path: String)
    case postgres(url: String)

    /// `postgres://…` or `postgresql://…` is PostgreSQL; anything else is an SQLite file path.
    public init(_ text: String) {
        if text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") {
            self = .postgres(url: text)
        } else {
            self = .sqlite(path: text)
        }
    }

    /// Safe to log: a PostgreSQL password is masked.
    public var description: String {
        switch self {
        case .sqlite(let path): return "sqlite:\(path)"
        case .postgres(let url):
            guard var components = URLComponents(string: url) else { return "postgres:(unparsable url)" }
            if components.password != nil { components.password = "***" }
            return components.string ?? "postgres"
        }
    }
}

public enum DatabaseError: Error, CustomStringConvertible {
    case invalidURL(String)
    /// A statement asked for after ``Database/shutdown()``.
    case shutDown
    case schemaTooNew(database: Int, supported: Int)

    public var description: String {
        switch self {
        case .invalidURL(let why): "invalid database URL: \(why)"
        case .schemaTooNew(let database, let supported):
            "the database schema is version \(database), newer than this caregate supports (\(supported)); refusing to start"
        case .shutDown: "the database is shut down"
        }
    }
}

/// The connection pools behind one database, wrapped once here: async-kit's pools
/// are not `Sendable`, but they are internally synchronised.
private struct Pools: @unchecked Sendable {
    var sqlite: EventLoopGroupConnectionPool<SQLiteSource>?
    var sqliteThreads: NIOThreadPool?
    var sqliteConnections: SQLiteConnections?
    var sqliteReads: SQLiteReadConnections?
    var postgres: EventLoopGroupConnectionPool<PostgresConnectionSource>?
}

/// One database, SQLite or PostgreSQL, behind one SQLKit query layer.
public final class Database: Sendable {
    public enum Dialect: Sendable { case sqlite, postgres }

    public let dialect: Dialect
    public let location: DatabaseLocation
    public let logger: Logger
    private let pools: Pools
    private let writers = AsyncLock()
    /// A pooled database for single statements.
    public let sql: any SQLDatabase
    /// For the reads a request waits for, and nothing else: on SQLite, read-only connections that
    /// answer the caller without an event loop between them (``SQLiteReadConnections``), and a
    /// cancelled caller stops waiting. The same as ``sql`` on PostgreSQL.
    public let reads: any SQLDatabase

    private init(dialect: Dialect, location: DatabaseLocation, logger: Logger, pools: Pools, sql: any SQLDatabase, reads: any SQLDatabase) {
        self.dialect = dialect
        self.location = location
        self.logger = logger
        self.pools = pools
        self.sql = sql
        self.reads = reads
    }

    /// Opens the pools (connections are made on demand) and runs the migrations.
    public static func open(
        _ location: DatabaseLocation, logger: Logger,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> Database {
        let database: Database
        switch location {
        case .sqlite(let path):
            // SQLite calls block a thread; a writer waiting for the lock must not starve the
            // one that holds it, so SQLite gets threads of its own.
            let threads = NIOThreadPool(numberOfThreads: 8)
            threads.start()
            let connections = SQLiteConnections()
            let source = SQLiteSource(path: path, threadPool: threads, connections: connections)
            let pool = EventLoopGroupConnectionPool(source: source, maxConnectionsPerEventLoop: 2, logger: logger, on: eventLoopGroup)
            let reads = SQLiteReadConnections(limit: 8, source: source, eventLoopGroup: eventLoopGroup, logger: logger)
            let pooled = PooledSQLite(pool: pool, logger: logger, eventLoop: eventLoopGroup.any())
            database = Database(
                dialect: .sqlite, location: location, logger: logger,
                pools: Pools(sqlite: pool, sqliteThreads: threads, sqliteConnections: connections, sqliteReads: reads),
                sql: pooled.sql(queryLogLevel: .trace),
                reads: SQLiteReads(pooled: pooled, reads: reads).sql(queryLogLevel: .trace))
        case .postgres(let url):
            let configuration: SQLPostgresConfiguration
            do {
                configuration = try SQLPostgresConfiguration(url: url)
            } catch {
                throw DatabaseError.invalidURL(String(describing: error))
            }
            let pool = EventLoopGroupConnectionPool(
                source: PostgresConnectionSource(sqlConfiguration: configuration), maxConnectionsPerEventLoop: 8,
                logger: logger, on: eventLoopGroup)
            let sql = pool.database(logger: logger).sql(queryLogLevel: .trace)
            database = Database(dialect: .postgres, location: location, logger: logger, pools: Pools(postgres: pool), sql: sql, reads: sql)
        }
        do {
            try await Migrations.run(on: database)
        } catch {
            await database.shutdown()
            throw error
        }
        return database
    }

    /// Runs `body` in one transaction on one connection; rolls back when it throws.
    /// SQLite takes the write lock at the start (`BEGIN IMMEDIATE`), so concurrent
    /// writers queue instead of failing on lock upgrade.
    public func transaction<R: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> R) async throws -> R {
        let begin = dialect == .sqlite ? "BEGIN IMMEDIATE" : "BEGIN"
        let run: @Sendable (any SQLDatabase) async throws -> R = { db in
            try await db.raw("\(unsafeRaw: begin)").run()
            do {
                let result = try await body(db)
                try await db.raw("COMMIT").run()
                return result
            } catch {
                try? await db.raw("ROLLBACK").run()
                throw error
            }
        }
        if let pool = pools.sqlite {
            // One SQLite writer at a time, queued here rather than in SQLite's busy handler.
            return try await writers.withPermit {
                try await pool.withConnection(logger: logger) { connection in
                    connection.eventLoop.makeFutureWithTask { try await run(connection.sql(queryLogLevel: .trace)) }
                }.get()
            }
        }
        return try await pools.postgres!.withConnection(logger: logger) { connection in
            connection.eventLoop.makeFutureWithTask { try await run(connection.sql(queryLogLevel: .trace)) }
        }.get()
    }

    public func shutdown() async {
        pools.sqliteReads?.close()
        try? await pools.sqlite?.shutdownAsync()
        // The pool closes its idle connections and waits for that, but a connection still being
        // opened, or still in use, is closed later on its way back; its threads must outlive that.
        if let connections = pools.sqliteConnections, await !connections.allClosed(within: .seconds(10)) {
            logger.warning("SQLite connections still open at shutdown; their threads stop anyway", metadata: ["count": "\(connections.unclosed)"])
        }
        try? await pools.sqliteThreads?.shutdownGracefully()
        try? await pools.postgres?.shutdownAsync()
    }

    /// The SQLite connections this database opened (nil on PostgreSQL).
    var sqliteConnections: SQLiteConnections? { pools.sqliteConnections }

    /// The read-only SQLite connections behind ``reads`` (nil on PostgreSQL).
    var sqliteReads: SQLiteReadConnections? { pools.sqliteReads }

    /// `BLOB` or `BYTEA`, … — the few DDL words that differ between the dialects.
    var binaryType: String { dialect == .sqlite ? "BLOB" : "BYTEA" }
}

/// Opens SQLite connections in WAL mode with a busy timeout, so that several
/// connections (and several writers) share one file safely.
struct SQLiteSource: ConnectionPoolSource {
    let path: String
    let threadPool: NIOThreadPool
    let connections: SQLiteConnections

    func makeConnection(logger: Logger, on eventLoop: any EventLoop) -> EventLoopFuture<SQLiteConnection> {
        connections.opening()
        return SQLiteConnection.open(storage: .file(path: path), threadPool: threadPool, logger: logger, on: eventLoop).flatMap { connection in
            connections.opened(connection)
            // The timeout first: switching a new file to WAL takes its lock, which another
            // connection opening at the same moment may hold.
            return connection.query("PRAGMA busy_timeout = 10000").flatMap { _ in
                connection.query("PRAGMA journal_mode = WAL")
            }.flatMap { _ in
                connection.query("PRAGMA foreign_keys = ON")
            }.flatMap { _ in
                connection.query("PRAGMA synchronous = NORMAL")
            }.map { _ in
                connection
            }.flatMapError { error in
                // The pool never sees a connection that failed to open: it is closed here.
                connection.close().flatMapThrowing { throw error }
            }
        }.always { _ in
            connections.doneOpening()
        }
    }
}

/// The connections ``SQLiteSource`` opened, until each is closed. SQLiteNIO runs every call,
/// closing included, on the database's threads, and has no notice of a close: a connection the
/// pool was still opening when it shut down, or that was in use, is closed on its way back to the
/// pool, after the pool's shutdown returned. The threads stop only once these are closed.
final class SQLiteConnections: Sendable {
    private struct Live: @unchecked Sendable {
        weak var connection: SQLiteConnection?
    }
    private struct State {
        var opening = 0
        var opened = 0
        var live: [Live] = []
    }
    private let state = Mutex(State())

    func opening() { state.withLock { $0.opening += 1 } }

    func opened(_ connection: SQLiteConnection) {
        state.withLock { state in
            state.opened += 1
            state.live.removeAll { $0.connection?.isClosed ?? true }
            state.live.append(Live(connection: connection))
        }
    }

    func doneOpening() { state.withLock { $0.opening -= 1 } }

    /// How many connections were opened since the database was.
    var opened: Int { state.withLock { $0.opened } }

    /// Connections opened and not yet closed, and those still being opened.
    var unclosed: Int {
        state.withLock { state in state.opening + state.live.count { !($0.connection?.isClosed ?? true) } }
    }

    /// Whether every connection is closed (and none is being opened), waiting up to `limit`. It
    /// looks every 2 ms: nothing announces a close.
    func allClosed(within limit: Duration) async -> Bool {
        let deadline = ContinuousClock.now + limit
        while unclosed > 0 {
            guard ContinuousClock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(2))
        }
        return true
    }
}

/// A pooled SQLite database: each statement borrows a connection.
private struct PooledSQLite: SQLiteDatabase {
    let pool: Pools
    let logger: Logger
    let eventLoop: any EventLoop

    init(pool: EventLoopGroupConnectionPool<SQLiteSource>, logger: Logger, eventLoop: any EventLoop) {
        self.pool = Pools(sqlite: pool)
        self.logger = logger
        self.eventLoop = eventLoop
    }

    func query(_ query: String, _ binds: [SQLiteData], logger: Logger, _ onRow: @escaping @Sendable (SQLiteRow) -> Void) -> EventLoopFuture<Void> {
        pool.sqlite!.withConnection(logger: logger) { $0.query(query, binds, logger: logger, onRow) }
    }

    func withConnection<T>(_ closure: @escaping @Sendable (SQLiteConnection) -> EventLoopFuture<T>) -> EventLoopFuture<T> {
        pool.sqlite!.withConnection(logger: logger, closure)
    }
}

/// ``Database/reads`` on SQLite: async code's reads go to ``SQLiteReadConnections``; futures
/// and sessions go to the pool.
private struct SQLiteReads: SQLiteDatabase {
    let pooled: PooledSQLite
    let reads: SQLiteReadConnections

    var logger: Logger { pooled.logger }
    var eventLoop: any EventLoop { pooled.eventLoop }

    func query(_ query: String, _ binds: [SQLiteData], logger: Logger, _ onRow: @escaping @Sendable (SQLiteRow) -> Void) -> EventLoopFuture<Void> {
        pooled.query(query, binds, logger: logger, onRow)
    }

    func query(_ query: String, _ binds: [SQLiteData], _ onRow: @escaping @Sendable (SQLiteRow) -> Void) async throws {
        try await reads.query(query, binds, onRow)
    }

    func withConnection<T>(_ closure: @escaping @Sendable (SQLiteConnection) -> EventLoopFuture<T>) -> EventLoopFuture<T> {
        pooled.withConnection(closure)
    }
}

/// A FIFO async lock: waiters suspend instead of blocking a thread.
public final class AsyncLock: Sendable {
    public init() {}

    private let state = Mutex<(locked: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    public func withPermit<R: Sendable>(_ body: () async throws -> R) async throws -> R {
        await acquire()
        defer { release() }
        return try await body()
    }

    private func acquire() async {
        await withCheckedContinuation { continuation in
            let acquired = state.withLock { state in
                if state.locked {
                    state.waiters.append(continuation)
                    return false
                }
                state.locked = true
                return true
            }
            if acquired { continuation.resume() }
        }
    }

    private func release() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.waiters.isEmpty {
                state.locked = false
                return nil
            }
            return state.waiters.removeFirst()
        }
        next?.resume()
    }
}
