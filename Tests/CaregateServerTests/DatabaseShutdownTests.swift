@testable import CaregateStore
import Foundation
import Logging
import NIOCore
import SQLKit
import Testing

/// A SQLite database shut down while its pool is still opening connections (a background job
/// asked for one as the server stopped): every connection it opened is closed before its
/// threads stop. A connection left open when they stop is never closed; in a debug build
/// SQLiteNIO's check then stops the process.
@Suite struct DatabaseShutdownTests {
    @Test("a SQLite database shut down while connections are still being opened closes every one of them")
    func shutdownWhileOpening() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let logger = quietLogger
        var opened = 0
        for round in 0..<20 {
            let database = try await Database.open(.sqlite(path: directory.appendingPathComponent("\(round).sqlite").path), logger: logger)
            // Asked for at once, on every event loop: the pool opens connections for them, and some
            // are still being opened when the shutdown begins.
            let queries = (0..<32).map { _ in database.sql.raw("SELECT 1").run() }
            await database.shutdown()
            for query in queries { _ = try? await query.get() }
            let connections = try #require(database.sqliteConnections)
            opened += connections.opened
            #expect(connections.unclosed == 0, "round \(round)")
        }
        #expect(opened > 20, "connections were opened beyond the one the migrations used")
    }

    @Test("reads share at most eight read-only SQLite connections, wait for one in turn, and are all closed at shutdown")
    func reads() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        for round in 0..<10 {
            let database = try await Database.open(.sqlite(path: directory.appendingPathComponent("\(round).sqlite").path), logger: quietLogger)
            let reads = try #require(database.sqliteReads)
            // Far more at once than there are connections: each waits for one, none fails.
            let answers = try await withThrowingTaskGroup(of: Int.self) { group in
                for n in 0..<64 {
                    group.addTask { try await database.reads.raw("SELECT \(bind: n) AS n").first(decodingColumn: "n", as: Int.self) ?? -1 }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(answers.sorted() == Array(0..<64))
            #expect(reads.count <= 8)
            // Read-only: a write is refused, and leaves nothing behind.
            await #expect(throws: (any Error).self) { try await database.reads.raw("INSERT INTO caregate_meta (key, value) VALUES ('read', 'only')").run() }
            #expect(try await database.sql.raw("SELECT value FROM caregate_meta WHERE key = 'read'").first() == nil)
            // Shut down with reads still running: those that got a connection finish, the others
            // fail as shut down, and every connection is closed before the threads stop.
            let running = (0..<32).map { _ in Task { try await database.reads.raw("SELECT 1").run() } }
            await database.shutdown()
            for task in running {
                do {
                    try await task.value
                } catch let error as DatabaseError {
                    guard case .shutDown = error else { throw error }
                }
            }
            let connections = try #require(database.sqliteConnections)
            #expect(connections.unclosed == 0, "round \(round)")
            #expect(reads.count == 0, "round \(round)")
            await #expect(throws: DatabaseError.self) { try await database.reads.raw("SELECT 1").run() }
        }
    }
}
