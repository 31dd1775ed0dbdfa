import CaregateStore
import HTTPTypes
import Hummingbird
import Scopes

/// `POST /fhir/R4` with a `transaction` or `batch` Bundle. Every entry is decided and confined
/// exactly as the same request on its own would be (the route table with the credential's
/// decision set, then the reach of its scopes), so a Bundle opens nothing its entries could not;
/// `cms.fhir.bundle.push` also opens write entries, clinic-wide (seed 003: ingest and upsert).
/// A transaction is checked whole before anything is written, its writes run in one database
/// transaction (deletes, creates, updates, as FHIR orders them), and any entry's refusal refuses
/// it whole with that entry's status; a batch answers each entry on its own.
extension FHIRAPI {
    static let maxBundleBytes = 4 << 20
    static let maxBundleEntries = 100

    /// One entry's request, read from its `request.method` and `request.url` (relative: `Type`,
    /// `Type/id`, `Type?query`).
    struct Entry: Sendable {
        var method: Scopes.HTTPMethod
        var type: FHIRType
        var id: String?
        var query: String?
        var resource: JSONValue?
        var operation: Operation
    }

    func bundle(_ request: inout Request, credential: Credential, surface: Surface) async throws -> Response {
        let bundle = try await FHIRClinicalInput.body(&request, limit: Self.maxBundleBytes)
        guard bundle["resourceType"]?.stringValue == "Bundle", let kind = bundle["type"]?.stringValue, kind == "transaction" || kind == "batch" else {
            throw APIError.badRequest("POST /fhir/R4 takes a Bundle of type transaction or batch")
        }
        var items: [JSONValue] = []
        if let entries = bundle["entry"] {
            guard case .array(let list) = entries else { throw APIError.badRequest("Bundle.entry must be an array") }
            items = list
        }
        guard items.count <= Self.maxBundleEntries else { throw APIError.badRequest("a Bundle may have at most \(Self.maxBundleEntries) entries") }
        // A malformed entry makes a malformed Bundle (FHIR's bdl-3): refused whole, batch or not.
        for (n, item) in items.enumerated() {
            guard case .object = item, let method = item["request"]?["method"]?.stringValue, ["GET", "POST", "PUT", "DELETE"].contains(method),
                  let url = item["request"]?["url"]?.stringValue, (1...2048).contains(url.utf8.count)
            else { throw APIError.badRequest("Bundle entry \(n): request.method (GET, POST, PUT or DELETE) and request.url (1-2048 bytes) are required") }
            if let resource = item["resource"], resource["resourceType"]?.stringValue == nil {
                throw APIError.badRequest("Bundle entry \(n): resource must be a FHIR resource (an object with resourceType)")
            }
        }
        if kind == "batch" {
            var answers: [JSONValue] = []
            for (n, item) in items.enumerated() {
                do {
                    let entry = try self.entry(item, credential: credential, surface: surface)
                    answers.append(Self.entryAnswer(try await run(entry, credential: credential, surface: surface)))
                } catch {
                    let refusal = TraceMiddleware.apiError(for: error, logger: .init(label: "caregate.fhir.batch"))
                    answers.append(["response": [
                        "status": .string("\(refusal.status.code) \(refusal.status.reasonPhrase)"),
                        "outcome": Self.outcome(refusal, entry: n),
                    ]])
                }
            }
            return Self.answer(["resourceType": "Bundle", "type": "batch-response", "entry": .array(answers)])
        }
        // A transaction: every entry read and decided, every write prepared, before anything is written.
        var entries: [Entry] = []
        var writes: [Int: Write] = [:]
        for (n, item) in items.enumerated() {
            do {
                let entry = try self.entry(item, credential: credential, surface: surface)
                entries.append(entry)
                if let interaction = entry.operation.interaction, interaction.isWrite {
                    writes[n] = try await prepare(
                        interaction, entry.type, id: entry.id, resource: entry.resource, credential: credential, surface: surface, inBundle: true)
                }
            } catch {
                throw Self.entryRefusal(error, entry: n)
            }
        }
        var outcomes: [Int: Outcome] = [:]
        let order = writes.keys.sorted { a, b in
            let rank: (Int) -> Int = { writes[$0]!.interaction == .delete ? 0 : writes[$0]!.interaction == .create ? 1 : 2 }
            return (rank(a), a) < (rank(b), b)
        }
        let planned = order.map { ($0, writes[$0]!) }
        let done: [(Int, Outcome)] = try await store.writing { [self] session in
            var results: [(Int, Outcome)] = []
            for (n, write) in planned {
                do {
                    results.append((n, try await perform(write, credential: credential, on: session)))
                } catch {
                    throw Self.entryRefusal(error, entry: n)
                }
            }
            return results
        }
        for (n, outcome) in done { outcomes[n] = outcome }
        for (n, entry) in entries.enumerated() where outcomes[n] == nil {
            do {
                outcomes[n] = try await run(entry, credential: credential, surface: surface)
            } catch {
                throw Self.entryRefusal(error, entry: n)
            }
        }
        return Self.answer([
            "resourceType": "Bundle", "type": "transaction-response",
            "entry": .array(entries.indices.map { Self.entryAnswer(outcomes[$0]!) }),
        ])
    }

    /// An entry read and decided: the route table with the credential's decision set, as the
    /// request on its own would be.
    func entry(_ item: JSONValue, credential: Credential, surface: Surface) throws -> Entry {
        guard let request = item["request"], let methodName = request["method"]?.stringValue, let url = request["url"]?.stringValue else {
            throw APIError.badRequest("each entry needs request.method and request.url")
        }
        guard let method = Scopes.HTTPMethod(methodName), [.get, .post, .put, .delete].contains(method) else {
            throw APIError.badRequest("request.method must be GET, POST, PUT or DELETE")
        }
        guard !url.hasPrefix("/"), !url.contains("://"), !url.hasPrefix("urn:") else {
            throw APIError.badRequest("request.url must be relative to the FHIR base (Observation, Observation/id, Observation?code=…)")
        }
        let parts = url.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let path = Discovery.fhirBasePath + "/" + parts[0]
        let query = parts.count > 1 ? String(parts[1]) : nil
        let decision = surface.catalog.decide(credential.decisionSets[surface.decisionIndex], method: method, path: path, query: query)
        let route: RouteID
        switch decision {
        case .allowed(let allowed): route = allowed
        case .insufficientScope(let denied, let required):
            // A write entry is also opened by cms.fhir.bundle.push (its reach then decides).
            let write = method == .post || method == .put || method == .delete
            guard write, surface.catalog.contains(credential.effective[surface.index], scope: FHIRAccess.productBundle) else {
                throw APIError.insufficientScope(required, detail: surface.credentialTypeLimit(required, credential.type))
            }
            route = denied
        case .methodNotAllowed: throw APIError(.methodNotAllowed, "method_not_allowed", "\(method) is not allowed on \(Validate.safe(String(parts[0])))")
        case .notFound, .invalidPath: throw APIError.notFound("No route \(method) \(Validate.safe(String(parts[0])))")
        }
        guard let operation = operations[route.index], operation.interaction != nil,
              case .success(let segments) = RequestPath.segments(path)
        else { throw APIError.badRequest("a Bundle entry reads, searches, creates, updates or deletes one resource type") }
        let type = operation == .search || operation == .read ? try Self.type(segments[2]) : try Self.writableType(segments[2])
        let id = segments.count > 3 ? try Self.id(segments[3]) : nil
        var resource: JSONValue?
        if operation == .create || operation == .update {
            guard let body = item["resource"] else { throw APIError.badRequest("a \(method) entry needs its resource") }
            resource = body
        }
        return Entry(method: method, type: type, id: id, query: query, resource: resource, operation: operation)
    }

    /// A read, a search or (in a batch) a write, as on its own.
    func run(_ entry: Entry, credential: Credential, surface: Surface) async throws -> Outcome {
        switch entry.operation {
        case .search: return try await search(entry.type, query: entry.query, credential: credential, surface: surface)
        case .read: return try await read(entry.type, id: entry.id!, credential: credential, surface: surface)
        case .create, .update, .delete:
            let write = try await prepare(
                entry.operation.interaction!, entry.type, id: entry.id, resource: entry.resource, credential: credential, surface: surface,
                inBundle: true)
            return try await store.writing { [self] in try await perform(write, credential: credential, on: $0) }
        default:
            throw APIError.badRequest("a Bundle entry reads, searches, creates, updates or deletes one resource type")
        }
    }

    static func entryAnswer(_ outcome: Outcome) -> JSONValue {
        var response: JSONValue = ["status": .string("\(outcome.status.code) \(outcome.status.reasonPhrase)")]
        if let location = outcome.location { response.set("location", .string(location)) }
        if let etag = outcome.etag { response.set("etag", .string(etag)) }
        var answer: JSONValue = [:]
        if let resource = outcome.resource { answer.set("resource", resource) }
        answer.set("response", response)
        return answer
    }

    /// An entry's refusal, as the whole transaction's: its status, the message naming the entry.
    static func entryRefusal(_ error: any Error, entry: Int) -> any Error {
        guard var refusal = error as? APIError else { return error }
        refusal.message = "Bundle entry \(entry): " + refusal.message
        // The Bundle's own method is allowed: an entry's method that is not is an invalid entry.
        if refusal.status == .methodNotAllowed {
            refusal = APIError(.badRequest, "bad_request", refusal.message)
        }
        return refusal
    }

    static func outcome(_ refusal: APIError, entry: Int) -> JSONValue {
        ["resourceType": "OperationOutcome", "issue": [[
            "severity": "error", "code": .string(refusal.issueCode), "details": ["text": .string("Bundle entry \(entry): \(refusal.message)")],
        ]]]
    }
}
