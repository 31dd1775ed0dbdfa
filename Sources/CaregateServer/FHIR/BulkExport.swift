import CaregateStore
import HTTPTypes
import Hummingbird
import Logging
import Scopes
import Synchronization

/// FHIR Bulk Data export (SPEC §8, seed 003): an asynchronous kick-off (`$export` at the system
/// level or `Patient/$export`), status polling with `X-Progress`, and one NDJSON file per type,
/// streamed, only to the client that asked, deleted an hour after the kick-off. The catalog lets
/// only `system/` scopes reach these routes; each type is exported as far as those scopes reach.
struct BulkExport: Sendable {
    let store: FHIRStore
    /// The absolute FHIR base.
    let base: String
    let logger: Logger
    /// The exports this instance runs, which a shutdown stops.
    let runs: ExportRuns
    /// Exports of one client running at a time, over every instance: each one reads its whole
    /// clinic, so a client that kicks off one after another without waiting would take the
    /// servers' threads.
    static let exportsPerClient = 2

    /// Resources per NDJSON part, and per query: small enough that rendering one page does not
    /// hold a thread of the server for long.
    static let pageSize = 250
    static let parameters = ["_type", "_since", "_outputFormat"]
    static let outputFormats = ["application/fhir+ndjson", "application/ndjson", "ndjson"]
    static let ndjson = "application/fhir+ndjson"

    /// `Patient/$export` exports the patient compartment's types; `$export` every served type.
    func kickOff(_ request: inout Request, credential: Credential, surface: Surface, patientLevel: Bool) async throws -> Response {
        guard request.headers[values: HTTPField.Name("Prefer")!].contains(where: { $0.lowercased().contains("respond-async") }) else {
            throw APIError.badRequest("A bulk export runs asynchronously: send Prefer: respond-async")
        }
        if let accept = request.headers[.accept], !["application/fhir+json", "application/json", "*/*"].contains(where: { accept.contains($0) }) {
            throw APIError(.notAcceptable, "not_acceptable", "The kick-off answers application/fhir+json (its errors as OperationOutcomes)")
        }
        var pairs = QueryItems.parse(request.uri.query).map { ($0.name, $0.value) }
        if request.method == .post { pairs += try await Self.parameters(&request) }
        let unknown = pairs.map(\.0).filter { !Self.parameters.contains($0) }
        guard unknown.isEmpty else {
            throw APIError(.badRequest, "not_supported", "Export parameter\(unknown.count == 1 ? "" : "s") \(unknown.map { "\"\(Validate.safe($0))\"" }.joined(separator: ", ")) not supported (supported: _type, _since, _outputFormat)")
        }
        var requested: [FHIRType]?
        var since: Int64?
        for (name, value) in pairs {
            switch name {
            case "_outputFormat":
                guard Self.outputFormats.contains(value) else { throw APIError.badRequest("_outputFormat must be application/fhir+ndjson") }
            case "_since":
                guard (try? FHIRClinicalInput.dateTime.wholeMatch(in: value)) != nil, value.contains("T"), let bounds = FHIRDate.bounds(value) else {
                    throw APIError.badRequest("_since must be a FHIR instant (2026-03-04T09:30:00Z)")
                }
                since = bounds.0 * 1000
            default:
                var types: [FHIRType] = requested ?? []
                for name in value.split(separator: ",", omittingEmptySubsequences: false).map(String.init) {
                    guard let type = FHIRType(rawValue: name) else {
                        throw APIError(.badRequest, "not_supported", "_type: \"\(Validate.safe(name))\" is not exported here (served: \(FHIRType.allCases.map(\.rawValue).joined(separator: ", ")))")
                    }
                    if !types.contains(type) { types.append(type) }
                }
                requested = types
            }
        }
        let candidates = (requested ?? FHIRType.allCases).filter { !patientLevel || $0.inPatientCompartment }
        var plan: [(FHIRType, [[FHIRFilter]]?)] = []
        var signatures: [String: String] = [:]
        for type in candidates {
            let reaches = FHIRAccess.reaches(credential, on: surface, type: type, interaction: .search)
            if reaches.isEmpty {
                // A type asked for by name must be reachable; without _type, what is not reachable is left out.
                if requested != nil { throw APIError.insufficientScope("system/\(type.rawValue).read") }
                continue
            }
            var access = FHIRAccess.storeAccess(reaches)
            signatures[type.rawValue] = Self.signature(access)
            if let since, store.tracksLastUpdated(type) {
                let filter = FHIRFilter(.lastUpdated, .writtenSince(since))
                access = (access ?? [[]]).map { $0 + [filter] }
            }
            plan.append((type, access))
        }
        let url = base + (patientLevel ? "/Patient/$export" : "/$export") + (request.uri.query.map { "?" + $0 } ?? "")
        guard let job = try await store.createExportJob(
            organization: credential.organizationID, clientID: credential.keyID, request: url, types: plan.map(\.0.rawValue), access: signatures,
            limit: Self.exportsPerClient)
        else {
            throw APIError(
                .tooManyRequests, "too_many_requests",
                "\(Self.exportsPerClient) exports of this client are in progress: poll them, or cancel one (DELETE its status URL), before another",
                headers: [.retryAfter: "5"])
        }
        let organization = credential.organizationID
        let store = self.store, logger = self.logger
        runs.start(job.id) { [plan] in
            await Self.run(job: job.id, organization: organization, plan: plan, store: store, logger: logger)
        }
        var headers: HTTPFields = [.contentLocation: statusURL(job.id, requested: requested)]
        headers[.contentType] = FHIRAPI.contentType
        return Response(status: .accepted, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: Self.outcome("Export \(job.id) accepted").serialized())))
    }

    /// The status URL; it repeats `_type` so that a token holding `system/<Type>.read` alone opens it.
    func statusURL(_ id: String, requested: [FHIRType]?) -> String {
        base + "/$export-poll-status/\(id)" + (requested.map { "?_type=" + $0.map(\.rawValue).joined(separator: ",") } ?? "")
    }

    /// Writes each type's NDJSON in parts of ``pageSize`` resources, updating the job's progress.
    static func run(job: String, organization: String, plan: [(FHIRType, [[FHIRFilter]]?)], store: FHIRStore, logger: Logger) async {
        var part = 0
        do {
            for (index, (type, access)) in plan.enumerated() {
                try await store.setExportProgress(job, "\(type.rawValue): \(index + 1) of \(plan.count) types")
                var offset = 0
                while true {
                    let page = try await store.search(type, organization: organization, filters: [], access: access, count: pageSize, offset: offset)
                    if page.resources.isEmpty { break }
                    var text: [UInt8] = []
                    for (n, resource) in page.resources.enumerated() {
                        resource.write(into: &text)
                        text.append(UInt8(ascii: "\n"))
                        // A long export shares the server's threads with the requests it answers meanwhile.
                        if n % 50 == 49 { await Task.yield() }
                    }
                    // The server is stopping: `ExportRuns.stop` fails the job.
                    if Task.isCancelled { return }
                    // A job deleted meanwhile (its client cancelled it) stops here.
                    guard try await store.addExportPart(job, type: type.rawValue, part: part, count: page.resources.count, content: String(decoding: text, as: UTF8.self))
                    else { return }
                    part += 1
                    offset += page.resources.count
                    if page.resources.count < pageSize { break }
                }
            }
            try await store.finishExportJob(job, error: nil)
            logger.info("bulk export completed", metadata: ["job": "\(job)", "parts": "\(part)"])
        } catch {
            // The server is stopping: `ExportRuns.stop` fails the job with the reason.
            if Task.isCancelled { return }
            logger.error("bulk export failed", metadata: ["job": "\(job)", "error": "\(error)"])
            _ = try? await store.finishExportJob(job, error: "the export could not be completed")
        }
    }

    /// The reach an export of a type was made with, as text the job keeps.
    static func signature(_ access: [[FHIRFilter]]?) -> String { String(describing: access) }

    /// The job's types the credential still reaches as far as the export did (the whole clinic
    /// reaches every export): a narrowed grant or a narrower token of the same client sees less.
    func reachable(_ job: ExportJobRecord, credential: Credential, surface: Surface) -> Set<String> {
        Set(job.types.filter { name in
            guard let type = FHIRType(rawValue: name) else { return false }
            let reaches = FHIRAccess.reaches(credential, on: surface, type: type, interaction: .search)
            guard !reaches.isEmpty else { return false }
            let access = FHIRAccess.storeAccess(reaches)
            return access == nil || Self.signature(access) == job.access[name]
        })
    }

    func status(_ id: String, credential: Credential, surface: Surface) async throws -> Response {
        guard let job = try await store.exportJob(id, organization: credential.organizationID, clientID: credential.keyID) else {
            throw APIError.notFound("Export \(Validate.safe(id)) is not known")
        }
        let reachable = reachable(job, credential: credential, surface: surface)
        guard !reachable.isEmpty || job.types.isEmpty else { throw APIError.notFound("Export \(Validate.safe(id)) is not known") }
        switch job.status {
        case .inProgress:
            return Response(status: .accepted, headers: [HTTPField.Name("X-Progress")!: job.progress, .retryAfter: "1"])
        case .failed:
            throw APIError(.internalServerError, "export_failed", job.error ?? "the export failed")
        case .completed:
            let outputs = try await store.exportOutputs(id).filter { reachable.contains($0.type) }
            let manifest: JSONValue = [
                "transactionTime": .string(job.transactionTime), "request": .string(job.request), "requiresAccessToken": true,
                "output": .array(outputs.map { output in
                    ["type": .string(output.type), "url": .string(base + "/$export-file/\(id)/\(output.type)"), "count": .int(Int64(output.count))]
                }),
                "error": [],
            ]
            var headers: HTTPFields = [.contentType: "application/json", .cacheControl: "no-store"]
            headers[.expires] = Self.httpDate(job.expiresAt)
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: manifest.serialized())))
        }
    }

    func cancel(_ id: String, credential: Credential) async throws -> Response {
        guard try await store.deleteExportJob(id, organization: credential.organizationID, clientID: credential.keyID) else {
            throw APIError.notFound("Export \(Validate.safe(id)) is not known")
        }
        return Response(status: .accepted, headers: [.contentType: FHIRAPI.contentType],
                        body: .init(byteBuffer: ByteBuffer(bytes: Self.outcome("Export \(id) deleted").serialized())))
    }

    /// One type's file, streamed part by part; anyone but the job's own client is told it does not exist.
    func file(_ id: String, type: String, credential: Credential, surface: Surface) async throws -> Response {
        guard let job = try await store.exportJob(id, organization: credential.organizationID, clientID: credential.keyID), job.status == .completed,
              job.types.contains(type), reachable(job, credential: credential, surface: surface).contains(type)
        else { throw APIError.notFound("Export file \(Validate.safe(id))/\(Validate.safe(type)) is not known") }
        let store = self.store, logger = self.logger
        return Response(status: .ok, headers: [.contentType: Self.ndjson], body: ResponseBody { writer in
            do {
                try await store.exportParts(id, type: type) { content in try await writer.write(ByteBuffer(string: content)) }
            } catch {
                logger.error("bulk export file ended early", metadata: ["job": "\(id)", "error": "\(error)"])
                throw error
            }
            try await writer.finish(nil)
        })
    }

    /// The kick-off's Parameters body (POST): `_type`, `_since`, `_outputFormat` as value[x].
    static func parameters(_ request: inout Request) async throws -> [(String, String)] {
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: 64 * 1024)
        } catch {
            throw APIError(.contentTooLarge, "payload_too_large", "a kick-off body may be at most 64 KiB")
        }
        guard body.readableBytes > 0 else { return [] }
        guard let parameters = try? JSONValue.parse(body.readableBytesView, maxDepth: 8), parameters["resourceType"]?.stringValue == "Parameters"
        else { throw APIError.badRequest("The kick-off body must be a FHIR Parameters resource") }
        guard case .array(let items)? = parameters["parameter"] else { return [] }
        return try items.map { item in
            guard let name = item["name"]?.stringValue,
                  let value = ["valueString", "valueInstant", "valueCode"].lazy.compactMap({ item[$0]?.stringValue }).first
            else { throw APIError.badRequest("Each parameter needs a name and a valueString, valueInstant or valueCode") }
            return (name, value)
        }
    }

    static func outcome(_ text: String) -> JSONValue {
        ["resourceType": "OperationOutcome", "issue": [["severity": "information", "code": "informational", "details": ["text": .string(text)]]]]
    }

    /// An RFC 9110 HTTP-date.
    static func httpDate(_ millis: Int64) -> String {
        let seconds = millis / 1000
        let days = seconds / 86_400, rest = seconds % 86_400
        let (year, month, day) = FHIRDate.civil(days)
        let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][Int(days % 7)]
        let monthName = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][Int(month) - 1]
        func two(_ n: Int64) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(weekday), \(two(day)) \(monthName) \(year) \(two(rest / 3600)):\(two(rest % 3600 / 60)):\(two(rest % 60)) GMT"
    }

}

/// The exports running on this instance (each a task of its own), so that a shutdown can stop
/// them and say so. An instance that goes away without a shutdown leaves its jobs to
/// ``FHIRStore/exportStaleAfter``.
final class ExportRuns: Sendable {
    private let store: FHIRStore
    private let tasks = Mutex<[String: Task<Void, Never>]>([:])
    static let stopped = "The export stopped before it finished: the server stopped. Kick off a new one."

    init(store: FHIRStore) { self.store = store }

    func start(_ id: String, _ run: @escaping @Sendable () async -> Void) {
        tasks.withLock { tasks in
            // The task's own removal waits for this lock, so it cannot come before the insertion.
            tasks[id] = Task.detached { [self] in
                await run()
                _ = self.tasks.withLock { $0.removeValue(forKey: id) }
            }
        }
    }

    /// Stops every export this instance runs and fails each one still in progress, so that its
    /// client learns at its next poll, before the database closes. How many were stopped.
    @discardableResult
    func stop() async -> Int {
        let running = tasks.withLock { tasks in
            defer { tasks = [:] }
            return tasks
        }
        for task in running.values { task.cancel() }
        var stopped = 0
        for (id, task) in running {
            await task.value
            // A run that finished its job meanwhile is not counted.
            if (try? await store.finishExportJob(id, error: Self.stopped)) == true { stopped += 1 }
        }
        return stopped
    }
}
