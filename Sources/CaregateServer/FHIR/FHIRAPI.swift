import CaregateStore
import HTTPTypes
import Hummingbird
import Logging
import Scopes

/// The backend of `/fhir/R4` over the clinic database (SPEC §8): read and search of the nine
/// served types, create, update and delete of the clinical ones. Every answer is confined to
/// what ``FHIRAccess`` says the credential reaches: a search is narrowed in the query itself,
/// a read or write of anything outside is answered exactly as one of a resource that does not
/// exist, and a search naming another patient than the token's is a 403.
struct FHIRAPI: Sendable {
    enum Operation: Sendable, Equatable {
        case search, read, create, update, delete, bundle
        case exportKickOff(patientLevel: Bool), exportGroup, exportStatus, exportCancel, exportFile

        /// The interaction of a single-resource operation (nil for Bundles and export).
        var interaction: FHIRAccess.Interaction? {
            switch self {
            case .search: .search
            case .read: .read
            case .create: .create
            case .update: .update
            case .delete: .delete
            default: nil
            }
        }
    }

    /// By route index.
    let operations: [Operation?]
    let store: FHIRStore
    let export: BulkExport
    /// The absolute FHIR base (`<issuer>/fhir/R4`), for `fullUrl`, links and `Location`.
    let base: String

    static let maxBodyBytes = 1 << 20
    static let contentType = "application/fhir+json; charset=utf-8"

    init(catalog: CompiledCatalog, store: FHIRStore, issuer: String, exports: ExportRuns, logger: Logger) {
        operations = Self.operations(of: catalog)
        self.store = store
        base = issuer + Discovery.fhirBasePath
        export = BulkExport(store: store, base: base, logger: logger, runs: exports)
    }

    /// The operation of each of the catalog's routes, by route index (nil: not a FHIR operation this server knows).
    static func operations(of catalog: CompiledCatalog) -> [Operation?] {
        let prefix = Discovery.fhirBasePath
        return catalog.routes.map { route in
            guard route.path.isPath(under: prefix) else { return nil }
            let rest = route.path.dropFirst(prefix.count).split(separator: "/")
            switch (route.method, rest.first ?? "", rest.last ?? "") {
            case (.get, "$export", _), (.post, "$export", _): return .exportKickOff(patientLevel: false)
            case (.get, "Patient", "$export"), (.post, "Patient", "$export"): return .exportKickOff(patientLevel: true)
            case (_, "Group", "$export"): return .exportGroup
            case (.get, "$export-poll-status", _): return .exportStatus
            case (.delete, "$export-poll-status", _): return .exportCancel
            case (.get, "$export-file", _): return .exportFile
            default: break
            }
            let typed = rest.first?.hasPrefix("{ResourceType") == true
            switch (route.method, rest.count) {
            case (.post, 0): return .bundle
            case (.get, 1) where typed: return .search
            case (.post, 1) where typed: return .create
            case (.get, 2) where typed && rest[1] == "{id}": return .read
            case (.put, 2) where typed && rest[1] == "{id}": return .update
            case (.delete, 2) where typed && rest[1] == "{id}": return .delete
            default: return nil
            }
        }
    }

    /// Fail closed: `patient/` scopes without a patient would otherwise reach nobody's or everybody's data.
    static func refuseWithoutPatient(_ credential: Credential) throws {
        if let person = credential.person, person.holdsPatientScopes, person.patient == nil {
            throw APIError.forbidden("This token carries patient/ scopes but no patient context, so it is refused on every FHIR route (request launch/patient, or launch in an EHR launch)")
        }
    }

    func respond(_ request: Request, path: String, route: RouteID, credential: Credential, surface: Surface) async throws -> Response {
        guard let operation = operations[route.index] else { throw APIError.notFound("No route \(request.method.rawValue) \(Validate.safe(request.uri.path))") }
        try Self.refuseWithoutPatient(credential)
        guard case .success(let segments) = RequestPath.segments(path) else { throw APIError.badRequest("invalid path") }
        var response: Response
        switch operation {
        case .search:
            response = Self.answer(try await search(try Self.type(segments[2]), query: request.uri.query, credential: credential, surface: surface))
        case .read:
            response = Self.answer(try await read(try Self.type(segments[2]), id: try Self.id(segments[3]), credential: credential, surface: surface))
        case .create:
            var request = request
            response = try await create(try Self.writableType(segments[2]), request: &request, credential: credential, surface: surface)
        case .update:
            var request = request
            response = try await update(
                try Self.writableType(segments[2]), id: try Self.id(segments[3]), request: &request, credential: credential, surface: surface)
        case .delete:
            response = try await delete(try Self.writableType(segments[2]), id: try Self.id(segments[3]), credential: credential, surface: surface)
        case .bundle:
            var request = request
            response = try await bundle(&request, credential: credential, surface: surface)
        case .exportKickOff(let patientLevel):
            // HEAD is decided as GET; it must not start an export.
            guard request.method != .head else { throw APIError.methodNotAllowed(request.method, allow: ["GET", "POST"]) }
            var request = request
            response = try await export.kickOff(&request, credential: credential, surface: surface, patientLevel: patientLevel)
        case .exportGroup:
            throw APIError.notFound("Group/\(Validate.safe(segments[3])) is not known (this server has no groups)")
        case .exportStatus:
            response = try await export.status(segments[3], credential: credential, surface: surface)
        case .exportCancel:
            response = try await export.cancel(segments[3], credential: credential)
        case .exportFile:
            response = try await export.file(segments[3], type: segments[4], credential: credential, surface: surface)
        }
        if request.method == .head { response.body = .init() }
        return response
    }

    // MARK: Interactions

    func search(_ type: FHIRType, query: String?, credential: Credential, surface: Surface) async throws -> Outcome {
        let search = try FHIRSearch(type: type, query: query)
        let reaches = try Self.reaches(credential, surface, type, .search)
        if type.inPatientCompartment, let confined = FHIRAccess.confinedPatients(reaches), let named = search.namedPatients,
           !named.allSatisfy(confined.contains) {
            throw APIError.forbidden("This token reaches only its patient's compartment; the search names another patient")
        }
        let page = try await store.search(
            type, organization: credential.organizationID, filters: search.filters, access: FHIRAccess.storeAccess(reaches), count: search.count,
            offset: search.offset)
        var links: [JSONValue] = [["relation": "self", "url": .string(pageURL(type, query, offset: search.offset))]]
        if search.count > 0, search.offset + page.resources.count < page.total {
            links.append(["relation": "next", "url": .string(pageURL(type, query, offset: search.offset + search.count))])
        }
        if search.offset > 0, search.count > 0 {
            links.append(["relation": "previous", "url": .string(pageURL(type, query, offset: max(0, search.offset - search.count)))])
        }
        let bundle: JSONValue = [
            "resourceType": "Bundle", "type": "searchset", "total": .int(Int64(page.total)), "link": .array(links),
            "entry": .array(page.resources.map { resource in
                ["fullUrl": .string("\(base)/\(type.rawValue)/\(resource["id"]?.stringValue ?? "")"), "resource": resource, "search": ["mode": "match"]]
            }),
        ]
        return Outcome(status: .ok, resource: bundle)
    }

    func read(_ type: FHIRType, id: String, credential: Credential, surface: Surface) async throws -> Outcome {
        let reaches = try Self.reaches(credential, surface, type, .read)
        guard let resource = try await store.read(type, organization: credential.organizationID, id: id, access: FHIRAccess.storeAccess(reaches)) else {
            throw Self.unknown(type, id)
        }
        return Outcome(status: .ok, resource: resource, etag: resource["meta"]?["versionId"]?.stringValue.map { "W/\"\($0)\"" })
    }

    private func create(_ type: FHIRType, request: inout Request, credential: Credential, surface: Surface) async throws -> Response {
        let write = try await prepare(.create, type, id: nil, resource: try await FHIRClinicalInput.body(&request), credential: credential, surface: surface)
        return Self.answer(try await store.writing { [self] in try await perform(write, credential: credential, on: $0) })
    }

    private func update(_ type: FHIRType, id: String, request: inout Request, credential: Credential, surface: Surface) async throws -> Response {
        let reaches = try Self.reaches(credential, surface, type, .update)
        // What is out of reach (or absent) is a 404 before anything about the body is said.
        guard try await store.read(type, organization: credential.organizationID, id: id, access: FHIRAccess.storeAccess(reaches)) != nil else {
            throw Self.unknown(type, id)
        }
        let write = try await prepare(.update, type, id: id, resource: try await FHIRClinicalInput.body(&request), credential: credential, surface: surface)
        return Self.answer(try await store.writing { [self] in try await perform(write, credential: credential, on: $0) })
    }

    private func delete(_ type: FHIRType, id: String, credential: Credential, surface: Surface) async throws -> Response {
        let write = try await prepare(.delete, type, id: id, resource: nil, credential: credential, surface: surface)
        return Self.answer(try await store.writing { [self] in try await perform(write, credential: credential, on: $0) })
    }

    /// A write checked against everything but the stored state: the body, the reach of the
    /// resource as written, its patient.
    struct Write: Sendable {
        var interaction: FHIRAccess.Interaction
        var type: FHIRType
        var id: String?
        var resource: JSONValue?
        var index: FHIRStore.ClinicalIndex?
        var access: [[FHIRFilter]]?
    }

    func prepare(
        _ interaction: FHIRAccess.Interaction, _ type: FHIRType, id: String?, resource: JSONValue?, credential: Credential, surface: Surface,
        inBundle: Bool = false
    ) async throws -> Write {
        let reaches = try Self.reaches(credential, surface, type, interaction, inBundle: inBundle)
        var write = Write(interaction: interaction, type: type, id: id, access: FHIRAccess.storeAccess(reaches))
        if let resource {
            let (checked, index) = try FHIRClinicalInput.index(resource, type: type, id: id)
            // The resource must be within reach as written: an update cannot move it out.
            try Self.check(index, against: reaches, type: type)
            guard try await store.patientExists(organization: credential.organizationID, id: index.patient) else {
                throw APIError.badRequest("Patient/\(Validate.safe(index.patient)) is not a patient of this clinic")
            }
            write.resource = checked
            write.index = index
        }
        return write
    }

    /// Performs a prepared write in a transaction; an update or delete of what is not within reach is a 404.
    func perform(_ write: Write, credential: Credential, on writes: FHIRWrites) async throws -> Outcome {
        let organization = credential.organizationID
        switch write.interaction {
        case .create:
            let created = try await writes.create(write.type, organization: organization, resource: write.resource!, index: write.index!)
            let id = created["id"]?.stringValue ?? ""
            return Outcome(status: .created, resource: created, location: "\(base)/\(write.type.rawValue)/\(id)/_history/1", etag: "W/\"1\"")
        case .update:
            guard let updated = try await writes.update(
                write.type, organization: organization, id: write.id!, resource: write.resource!, index: write.index!, access: write.access)
            else { throw Self.unknown(write.type, write.id!) }
            return Outcome(status: .ok, resource: updated, etag: updated["meta"]?["versionId"]?.stringValue.map { "W/\"\($0)\"" })
        case .delete:
            guard try await writes.delete(write.type, organization: organization, id: write.id!, access: write.access) else {
                throw Self.unknown(write.type, write.id!)
            }
            return Outcome(status: .noContent)
        case .read, .search:
            preconditionFailure("not a write")
        }
    }

    /// One interaction's result, before it is an HTTP answer or a Bundle entry's `response`.
    struct Outcome: Sendable {
        var status: HTTPResponse.Status
        var resource: JSONValue?
        var location: String?
        var etag: String?
    }

    static func answer(_ outcome: Outcome) -> Response {
        var response = outcome.resource.map { answer($0, status: outcome.status) } ?? Response(status: outcome.status)
        if let location = outcome.location { response.headers[.location] = location }
        if let etag = outcome.etag { response.headers[.eTag] = etag }
        return response
    }

    // MARK: Helpers

    static func reaches(
        _ credential: Credential, _ surface: Surface, _ type: FHIRType, _ interaction: FHIRAccess.Interaction, inBundle: Bool = false
    ) throws -> [FHIRAccess.Reach] {
        let reaches = FHIRAccess.reaches(credential, on: surface, type: type, interaction: interaction, inBundle: inBundle)
        guard !reaches.isEmpty else {
            throw APIError.forbidden("No scope of this token reaches \(type.rawValue) for \(interaction) (a user/ scope needs a signed-in person, a patient/ scope a patient)")
        }
        return reaches
    }

    /// A resource about to be written must be within one of the reaches.
    static func check(_ index: FHIRStore.ClinicalIndex, against reaches: [FHIRAccess.Reach], type: FHIRType) throws {
        guard !FHIRAccess.admits(reaches, index) else { return }
        if let confined = FHIRAccess.confinedPatients(reaches), !confined.contains(index.patient) {
            throw APIError.forbidden("This token reaches only its patient's compartment; the resource is another patient's")
        }
        throw APIError.forbidden("This token's scopes for \(type.rawValue) do not cover this resource (their query constraints do not match it)")
    }

    /// What reading anything outside reach answers, the same as for an id that does not exist.
    static func unknown(_ type: FHIRType, _ id: String) -> APIError {
        APIError.notFound("\(type.rawValue)/\(Validate.safe(id)) is not known")
    }

    static func type(_ name: String) throws -> FHIRType {
        guard let type = FHIRType(rawValue: name) else {
            throw APIError(
                .notFound, "not_supported",
                "\(Validate.safe(name)) is not served here (served: \(FHIRType.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        return type
    }

    static func writableType(_ name: String) throws -> FHIRType {
        let type = try type(name)
        guard type.isClinical else {
            throw APIError(
                .methodNotAllowed, "method_not_allowed",
                "\(type.rawValue) is read-only here: it is the clinic's record, written through /v3 (Observation, Condition and AllergyIntolerance are writable)",
                headers: [.allow: "GET, HEAD"])
        }
        return type
    }

    /// The methods a FHIR path answers, for a 405's `Allow`: writes only on the clinical types.
    static func allowedMethods(_ path: String) -> [String]? {
        guard case .success(let segments) = RequestPath.segments(path), segments.count == 3 || segments.count == 4,
              let type = FHIRType(rawValue: segments[2]), segments.count == 3 || !segments[3].hasPrefix("$")
        else { return nil }
        guard type.isClinical else { return ["GET", "HEAD"] }
        return segments.count == 3 ? ["GET", "HEAD", "POST"] : ["GET", "HEAD", "PUT", "DELETE"]
    }

    /// A FHIR logical id: 1–64 of `A-Z a-z 0-9 - .` (a record id as `/v3` writes it, `pat_…`, is read as its FHIR id).
    static func id(_ record: String) throws -> String {
        let text = FHIRID.fhir(record)
        guard (1...64).contains(text.utf8.count), text.utf8.allSatisfy({ $0 == 0x2D || $0 == 0x2E || (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) })
        else { throw APIError.badRequest("\"\(Validate.safe(text))\" is not a FHIR id (1-64 of A-Z, a-z, 0-9, '-', '.')") }
        return text
    }

    /// The search's own URL with `_offset` set: paging links are searches like any other, so
    /// following one is decided and confined afresh.
    private func pageURL(_ type: FHIRType, _ query: String?, offset: Int) -> String {
        var items = (query ?? "").split(separator: "&").filter { !$0.hasPrefix("_offset=") && $0 != "_offset" }.map(String.init)
        if offset > 0 { items.append("_offset=\(offset)") }
        return "\(base)/\(type.rawValue)" + (items.isEmpty ? "" : "?" + items.joined(separator: "&"))
    }

    static func answer(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: contentType], body: .init(byteBuffer: ByteBuffer(bytes: value.serialized())))
    }
}
