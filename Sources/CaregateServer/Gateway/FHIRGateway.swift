import CaregateStore
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import Scopes

/// The backend of `/fhir/R4` in front of an upstream FHIR server (`--fhir upstream`): the
/// built-in API's rules (SPEC §8) applied around requests another server answers, after
/// google/fhir-gateway's model, without its gaps (design/smart-and-fhir-rules.md §c).
///
/// A credential that reaches a type clinic-wide, unconstrained, is forwarded as any gateway
/// request is. One that reaches less (a patient's compartment, a patient user's own records,
/// a query-constrained scope) is narrowed:
/// - a search names only its patient (another is a 403) or has the patient added, and has its
///   scope's constraints added; every entry of the answer, `_include`d and `_revinclude`d ones
///   too, is checked, and what is out of reach is left out (with the total, which would count it);
/// - a read, update or delete of what is out of reach answers the same 404 as one of what the
///   upstream does not have; an update or delete is checked on the upstream's current version
///   and sent with `If-Match` on that version, so the resource cannot change in between;
/// - a written body must be within reach as written (another patient's is a 403).
///
/// Anything else (Bundles, `$export` and other operations, types whose compartment Caregate
/// does not know) needs scopes that reach the whole clinic. Checked answers name Caregate's
/// FHIR base in their links and `fullUrl`s, forwarded ones in `Location`.
struct FHIRGateway: Sendable {
    let forwarder: UpstreamForwarder
    /// By route index.
    let operations: [FHIRAPI.Operation?]
    /// Caregate's absolute FHIR base and the upstream's, for rewriting URLs between them.
    let base: String
    let upstreamBase: String
    /// The index of the decision set of scopes that reach the whole clinic (the platform upstream's).
    let clinicWideIndex: Int

    /// Answers read whole to be checked; a larger one is a 502.
    static let maxAnswerBytes = 16 << 20
    /// The search parameters the gateway passes through without reading them itself: every
    /// resource they bring into the answer is checked.
    static let includeParameters: Set<String> = ["_include", "_revinclude", "_include:iterate", "_revinclude:iterate"]

    init(catalog: CompiledCatalog, forwarder: UpstreamForwarder, issuer: String, clinicWideIndex: Int) {
        self.forwarder = forwarder
        operations = FHIRAPI.operations(of: catalog)
        base = issuer + Discovery.fhirBasePath
        upstreamBase = forwarder.upstream.base + Discovery.fhirBasePath
        self.clinicWideIndex = clinicWideIndex
    }

    func respond(
        _ request: Request, path: String, route: RouteID, context: CaregateContext, credential: Credential, surface: Surface
    ) async throws -> Response {
        try FHIRAPI.refuseWithoutPatient(credential)
        guard case .success(let segments) = RequestPath.segments(path) else { throw APIError.badRequest("invalid path") }
        let call = Call(request: request, context: context, credential: credential, surface: surface)
        if let interaction = operations[route.index]?.interaction, let type = FHIRType(rawValue: segments[2]) {
            let reaches = try FHIRAPI.reaches(credential, surface, type, interaction)
            let whole = reaches.contains { $0.patient == nil && $0.constraints.isEmpty }
            var response: Response
            switch interaction {
            case .search:
                response = try await search(type, query: request.uri.query, reaches: whole ? nil : reaches, call)
            case .read where !whole:
                response = try await read(type, id: try FHIRAPI.id(segments[3]), reaches: reaches, call)
            case .create where !whole:
                response = try await create(type, reaches: reaches, call)
            case .update where !whole:
                response = try await update(type, id: try FHIRAPI.id(segments[3]), reaches: reaches, call)
            case .delete where !whole:
                response = try await delete(type, id: try FHIRAPI.id(segments[3]), reaches: reaches, call)
            default:
                response = try await forward(path: path, call)
            }
            if request.method == .head { response.body = .init() }
            return response
        }
        // Not one of the interactions above on a type Caregate can confine: only for scopes
        // that reach the whole clinic.
        guard reachesClinicWide(credential, surface, method: Scopes.HTTPMethod(request.method) ?? .get, path: path, query: request.uri.query) else {
            throw APIError.forbidden(
                "This token reaches FHIR data only in part (a patient's compartment, a patient's own records, or a scope's query constraints); in front of an upstream FHIR server Caregate confines reads, searches and writes of \(FHIRType.allCases.map(\.rawValue).joined(separator: ", ")), so this request needs a scope that reaches the whole clinic (cms.fhir.r4.read, cms.fhir.rest.write, system/, or user/ of a signed-in clinician)")
        }
        return try await forward(path: path, call)
    }

    /// The request being answered, as every step needs it.
    struct Call {
        var request: Request
        let context: CaregateContext
        let credential: Credential
        let surface: Surface
    }

    // MARK: Interactions

    /// A search; `reaches` nil when the credential reaches the type whole (the answer is then
    /// only re-addressed, not checked).
    private func search(_ type: FHIRType, query: String?, reaches: [FHIRAccess.Reach]?, _ call: Call) async throws -> Response {
        var added: [String] = []
        // Whether the added parameters narrow the search to exactly the reaches (so the upstream's total is theirs).
        var expressed = true
        if let reaches {
            // Read strictly (an unknown parameter could widen the search), but for the include
            // parameters, whose results are checked one by one.
            let items = (query ?? "").split(separator: "&", omittingEmptySubsequences: true)
            let own = items.filter { item in !QueryItems.parse(String(item)).contains { Self.includeParameters.contains($0.name) } }
            let search = try FHIRSearch(type: type, query: own.joined(separator: "&"))
            if type.inPatientCompartment, let confined = FHIRAccess.confinedPatients(reaches) {
                if let named = search.namedPatients {
                    guard named.allSatisfy(confined.contains) else {
                        throw APIError.forbidden("This token reaches only its patient's compartment; the search names another patient")
                    }
                } else {
                    added.append((type == .Patient ? "_id=" : "patient=") + confined.sorted().map(URLComponents.queryEncoded).joined(separator: ","))
                }
            }
            let constraints = Set(reaches.map(\.parameters))
            if constraints.count == 1 { added += constraints.first! } else { expressed = false }
        }
        let target = "\(Discovery.fhirBasePath)/\(type.rawValue)" + Self.query(query, adding: added)
        let answer = try await exchange(.get, target, body: nil, call)
        guard answer.status == .ok else { return passed(answer) }
        guard var bundle = try? JSONValue.parse(answer.body.readableBytesView, maxDepth: 64), bundle["resourceType"]?.stringValue == "Bundle" else {
            throw Self.malformed("a search answered something other than a Bundle")
        }
        // Every entry is checked but a match of a type the credential reaches whole: `_include`d
        // and `_revinclude`d resources are of other types, which it may reach less, or not at all.
        var dropped = 0
        var entries: [JSONValue] = []
        var reachesOf: [FHIRType: [FHIRAccess.Reach]] = [:]
        var clinicWideKinds: [String: Bool] = [:]
        for var entry in bundle["entry"]?.arrayValue ?? [] {
            let match = (entry["search"]?["mode"]?.stringValue ?? "match") == "match"
            let resource = entry["resource"]
            let name = resource?["resourceType"]?.stringValue ?? ""
            let keep: Bool
            if let resource, let kind = FHIRType(rawValue: name) {
                if match, kind == type {
                    keep = reaches.map { FHIRAccess.admits($0, FHIRResourceFacts(resource, type: kind)) } ?? true
                } else {
                    let within = reachesOf[kind] ?? FHIRAccess.reaches(call.credential, on: call.surface, type: kind, interaction: .read)
                    reachesOf[kind] = within
                    keep = FHIRAccess.admits(within, FHIRResourceFacts(resource, type: kind))
                }
            } else if entry["search"]?["mode"]?.stringValue == "outcome", name == "OperationOutcome" {
                keep = true  // the upstream's notes on the search itself
            } else if resource != nil, !name.isEmpty {
                // A type Caregate cannot confine: only for a credential that reads it clinic-wide.
                keep = clinicWideKinds[name]
                    ?? reachesClinicWide(call.credential, call.surface, method: .get, path: "\(Discovery.fhirBasePath)/\(name)/id", query: nil)
                clinicWideKinds[name] = keep
            } else {
                keep = false
            }
            guard keep else {
                if match { dropped += 1 }
                continue
            }
            if let url = entry["fullUrl"]?.stringValue { entry.set("fullUrl", .string(local(url))) }
            entries.append(entry)
        }
        if dropped > 0 {
            call.context.logger.warning("upstream search answered resources outside the credential's reach; left out", metadata: [
                "type": "\(type.rawValue)", "left_out": "\(dropped)", "narrowed_exactly": "\(expressed)",
            ])
        }
        // A total that may count what was left out, or what the added parameters did not narrow, is not given.
        if dropped > 0 || !expressed { bundle.remove("total") }
        if entries.isEmpty { bundle.remove("entry") } else { bundle.set("entry", .array(entries)) }
        if let links = bundle["link"]?.arrayValue {
            bundle.set("link", .array(links.map { link in
                var link = link
                if let url = link["url"]?.stringValue { link.set("url", .string(local(url))) }
                return link
            }))
        }
        var headers = answer.headers
        headers[.contentLength] = nil
        headers[.contentType] = FHIRAPI.contentType
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bundle.serialized())))
    }

    private func read(_ type: FHIRType, id: String, reaches: [FHIRAccess.Reach], _ call: Call) async throws -> Response {
        let answer = try await exchange(.get, "\(Discovery.fhirBasePath)/\(type.rawValue)/\(id)" + Self.query(call.request.uri.query, adding: []), body: nil, call)
        switch answer.status {
        case .ok:
            guard try admitted(answer, type, id: id, reaches) != nil else { throw FHIRAPI.unknown(type, id) }
            return passed(answer)
        case .notFound, .gone:
            throw FHIRAPI.unknown(type, id)
        default:
            return passed(answer)
        }
    }

    private func create(_ type: FHIRType, reaches: [FHIRAccess.Reach], _ call: Call) async throws -> Response {
        var call = call
        let (bytes, resource) = try await FHIRClinicalInput.bodyWithBytes(&call.request)
        try Self.checkWritten(resource, type, id: nil, reaches)
        return passed(try await exchange(.post, "\(Discovery.fhirBasePath)/\(type.rawValue)", body: bytes, call))
    }

    private func update(_ type: FHIRType, id: String, reaches: [FHIRAccess.Reach], _ call: Call) async throws -> Response {
        // What is out of reach (or absent) is a 404 before anything about the body is said.
        let version = try await currentVersion(type, id, reaches, call)
        var call = call
        let (bytes, resource) = try await FHIRClinicalInput.bodyWithBytes(&call.request)
        try Self.checkWritten(resource, type, id: id, reaches)
        return passed(try await exchange(.put, "\(Discovery.fhirBasePath)/\(type.rawValue)/\(id)", body: bytes, ifMatch: version, call))
    }

    private func delete(_ type: FHIRType, id: String, reaches: [FHIRAccess.Reach], _ call: Call) async throws -> Response {
        let version = try await currentVersion(type, id, reaches, call)
        let answer = try await exchange(.delete, "\(Discovery.fhirBasePath)/\(type.rawValue)/\(id)", body: nil, ifMatch: version, call)
        if answer.status == .notFound || answer.status == .gone { throw FHIRAPI.unknown(type, id) }
        return passed(answer)
    }

    /// Forwarded as it came, `Location` re-addressed.
    private func forward(path: String, _ call: Call) async throws -> Response {
        var response = try await forwarder.forward(
            call.request, path: path, context: call.context, credential: call.credential, scopeHeader: call.credential.scopeHeader[call.surface.index])
        readdress(&response.headers)
        return response
    }

    // MARK: Checks

    /// The version of the upstream's resource when it is within reach (nil: it has none); else the 404 of an unknown id.
    private func currentVersion(_ type: FHIRType, _ id: String, _ reaches: [FHIRAccess.Reach], _ call: Call) async throws -> String? {
        let answer = try await exchange(.get, "\(Discovery.fhirBasePath)/\(type.rawValue)/\(id)", body: nil, conditional: false, call)
        guard answer.status == .ok else {
            if answer.status == .notFound || answer.status == .gone { throw FHIRAPI.unknown(type, id) }
            throw Self.malformed("reading \(type.rawValue)/\(Validate.safe(id)) before a write answered \(answer.status.code)")
        }
        guard let resource = try admitted(answer, type, id: id, reaches) else { throw FHIRAPI.unknown(type, id) }
        return resource["meta"]?["versionId"]?.stringValue
    }

    /// A read's answer, when it is the resource asked for and within one of the reaches (else nil).
    private func admitted(_ answer: UpstreamForwarder.Exchange, _ type: FHIRType, id: String, _ reaches: [FHIRAccess.Reach]) throws -> JSONValue? {
        guard let resource = try? JSONValue.parse(answer.body.readableBytesView, maxDepth: 64), case .object = resource else {
            throw Self.malformed("a read answered something other than a resource")
        }
        guard resource["resourceType"]?.stringValue == type.rawValue, resource["id"]?.stringValue == id,
              FHIRAccess.admits(reaches, FHIRResourceFacts(resource, type: type))
        else { return nil }
        return resource
    }

    /// Whether the credential's scopes that reach the whole clinic (the platform upstream's
    /// decision set) allow a request: what a request Caregate cannot confine needs.
    private func reachesClinicWide(_ credential: Credential, _ surface: Surface, method: Scopes.HTTPMethod, path: String, query: String?) -> Bool {
        if case .allowed = surface.catalog.decide(credential.decisionSets[clinicWideIndex], method: method, path: path, query: query) { return true }
        return false
    }

    /// A resource about to be written must be of the path's type and id and within one of the reaches as written.
    static func checkWritten(_ resource: JSONValue, _ type: FHIRType, id: String?, _ reaches: [FHIRAccess.Reach]) throws {
        guard resource["resourceType"]?.stringValue == type.rawValue else { throw APIError.badRequest("resourceType must be \"\(type.rawValue)\" on this path") }
        if let id, resource["id"]?.stringValue != id { throw APIError.badRequest("the resource's id must be \"\(id)\", the id in the path") }
        let facts = FHIRResourceFacts(resource, type: type)
        guard !FHIRAccess.admits(reaches, facts) else { return }
        if type.inPatientCompartment, let confined = FHIRAccess.confinedPatients(reaches), facts.patients.isEmpty || !facts.patients.allSatisfy(confined.contains) {
            throw APIError.forbidden("This token reaches only its patient's compartment; the resource must belong to that patient and refer to no other")
        }
        throw APIError.forbidden("This token's scopes for \(type.rawValue) do not cover this resource (their query constraints do not match it)")
    }

    // MARK: Upstream

    private func exchange(
        _ method: HTTPRequest.Method, _ target: String, body: ByteBuffer?, ifMatch: String? = nil, conditional: Bool = true, _ call: Call
    ) async throws -> UpstreamForwarder.Exchange {
        var headers = forwarder.outboundHeaders(call.request, call.context, call.credential, call.credential.scopeHeader[call.surface.index])
        // The answer is read here, so it must come as it is (a compressed one could not be checked).
        headers.remove(name: "Accept-Encoding")
        if !conditional {
            for name in ["If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since", "Prefer"] { headers.remove(name: name) }
        }
        if let ifMatch, !headers.contains(name: "If-Match") { headers.add(name: "If-Match", value: "W/\"\(ifMatch)\"") }
        return try await forwarder.exchange(
            method: method, target: target, headers: headers, body: body, limit: Self.maxAnswerBytes, logger: call.context.logger)
    }

    /// An upstream answer passed on as it came, `Location` re-addressed.
    private func passed(_ answer: UpstreamForwarder.Exchange) -> Response {
        var headers = answer.headers
        readdress(&headers)
        return Response(status: answer.status, headers: headers, body: .init(byteBuffer: answer.body))
    }

    private func readdress(_ headers: inout HTTPFields) {
        for name in [HTTPField.Name.location, .contentLocation] {
            if let url = headers[name] { headers[name] = local(url) }
        }
    }

    /// An upstream URL as Caregate's: the upstream's FHIR base replaced by Caregate's.
    func local(_ url: String) -> String {
        guard url.hasPrefix(upstreamBase) else { return url }
        let rest = url.dropFirst(upstreamBase.count)
        guard rest.isEmpty || rest.first == "/" || rest.first == "?" else { return url }
        return base + rest
    }

    /// `query` (as it came) with `added` items after it, as a `?…` suffix.
    static func query(_ query: String?, adding added: [String]) -> String {
        let items = (query.map { $0.isEmpty ? [] : [$0] } ?? []) + added
        return items.isEmpty ? "" : "?" + items.joined(separator: "&")
    }

    static func malformed(_ what: String) -> APIError {
        APIError(.badGateway, "bad_gateway", "The upstream FHIR server's answer cannot be checked: \(what)")
    }
}
