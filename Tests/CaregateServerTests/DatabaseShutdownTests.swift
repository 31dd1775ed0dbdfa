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
}
