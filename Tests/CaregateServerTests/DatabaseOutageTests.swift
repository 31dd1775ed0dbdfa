import CaregateServer
import Foundation
import Synchronization
import Testing

/// PostgreSQL stopped under load and started again: while it is down requests that need it
/// are 503 in the error shape (never another 5xx), `/readyz` says not ready, and the server
/// recovers by itself once it is back. The test runs a PostgreSQL of its own
/// (`scripts/postgres.sh start`), since it stops it.
@Suite struct DatabaseOutageTests {
    final class Log: Sendable {
        struct Entry: Sendable { var at: ContinuousClock.Instant; var path: String; var status: Int; var code: String?; var trace: String? }
        private let entries = Mutex<[Entry]>([])
        func add(_ entry: Entry) { entries.withLock { $0.append(entry) } }
        var all: [Entry] { entries.withLock { $0 } }
        private let running = Atomic(true)
        var isRunning: Bool { running.load(ordering: .relaxed) }
        func stop() { running.store(false, ordering: .relaxed) }
    }

    static func postgres(_ arguments: [String]) async throws -> String {
        let run = try await runSpawned("/bin/bash", [repositoryRoot.appendingPathComponent("scripts/postgres.sh").path] + arguments)
        try #require(run.status == 0, "scripts/postgres.sh \(arguments): \(run.output)")
        return run.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test("PostgreSQL stopped for 10 s under load: only 503s in the error shape, /readyz 503, full service within 5 s of its return")
    func restart() async throws {
        let started = try await Self.postgres(["start"]).split(separator: " ").map(String.init)
        let (directory, url) = (started[0], started[1])
        do {
            try await outage(directory: directory, url: url)
        } catch {
            _ = try? await Self.postgres(["stop", directory])
            throw error
        }
        _ = try await Self.postgres(["stop", directory])
    }

    func outage(directory: String, url: String) async throws {
        try await withServer(.sqlite, configure: { $0.database = .postgres(url: url) }) { s in
            let (dev, clinic, app, _) = try await s.installedApp(scopes: ["read:patients", "read:appointments"], patients: 3)
            let key = try await s.createKey(developer: dev.token, app: app.id, scopes: nil).key
            let log = Log()
            // Four clients: clinic data (read from the database on every request) and readiness.
            let clients = (0..<4).map { i in
                Task {
                    let path = i == 3 ? "/readyz" : (i == 0 ? "/v3/patients?limit=5" : "/v3/appointments?limit=5")
                    while log.isRunning {
                        let reply: TestServer.Reply
                        do {
                            reply = try await s.request("GET", path, token: i == 3 ? nil : key, organization: i == 3 ? nil : clinic.uuid)
                        } catch {
                            log.add(.init(at: .now, path: path, status: -1, code: "\(error)", trace: nil))
                            continue
                        }
                        log.add(.init(at: .now, path: path, status: reply.status, code: reply.json?.string("code"), trace: reply.header("X-Trace-Id")))
                        try await Task.sleep(for: .milliseconds(20))
                    }
                }
            }
            try await Task.sleep(for: .seconds(1))  // load before the outage
            _ = try await Self.postgres(["pause", directory])
            let down = ContinuousClock.now
            try await Task.sleep(for: .seconds(10))  // the outage
            let resuming = ContinuousClock.now
            _ = try await Self.postgres(["resume", directory])
            let up = ContinuousClock.now
            // Load after it: at least 8 s, and until more than 20 answers came from 5 s after the
            // return on (a machine loaded by the suites beside this one answers slower), 60 s at most.
            try await Task.sleep(for: .seconds(8))
            let recovered = up + .seconds(5), enough = ContinuousClock.now + .seconds(52)
            while ContinuousClock.now < enough {
                var answered = 0
                for entry in log.all where entry.at > recovered { answered += 1 }
                if answered > 20 { break }
                try await Task.sleep(for: .milliseconds(200))
            }
            log.stop()
            for client in clients { try await client.value }

            let entries = log.all
            #expect(entries.allSatisfy { $0.status == 200 || $0.status == 503 }, "\(Dictionary(grouping: entries, by: \.status).mapValues(\.count))")
            let outage = entries.filter { $0.at > down + .milliseconds(500) && $0.at < resuming }
            #expect(outage.count > 50)
            for path in ["/v3/patients?limit=5", "/readyz"] {
                let during = outage.filter { $0.path == path }
                #expect(!during.isEmpty && during.allSatisfy { $0.status == 503 },
                        "\(path) while the database is down: \(during.filter { $0.status != 503 }.map { ($0.at - down, $0.status) })")
            }
            #expect(outage.filter { $0.status == 503 }.allSatisfy { ($0.code == "service_unavailable" || $0.code == "not_ready") && $0.trace != nil })
            // Recovered: from 5 s after the database returned, every request succeeds.
            let after = entries.filter { $0.at > up + .seconds(5) }
            #expect(after.count > 20 && after.allSatisfy { $0.status == 200 }, "\(after.filter { $0.status != 200 }.prefix(3).map(\.status))")
            let firstGood = entries.first { $0.at > up && $0.status == 200 && $0.path != "/readyz" }.map { $0.at - up }
            #expect(firstGood.map { $0 < .seconds(5) } == true, "first success \(String(describing: firstGood)) after the database returned")
        }
    }
}
