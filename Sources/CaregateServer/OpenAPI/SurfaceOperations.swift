import CaregateStore
import Foundation
import Scopes

/// The operations of the protected surfaces, from their catalogs' route tables: the clinic
/// data API with its declared parameters, bodies and answers, and the gateway surfaces.
enum SurfaceOperations {
    /// One path segment as the path rules accept it (see `PathError`): no control character,
    /// `/`, `\` or `;`, no `%` followed by two hex digits (a double encoding once encoded), not
    /// `.` or `..`.
    static let segment = Schema.string(
        minLength: 1, pattern: "^(?!\\.{1,2}(?![\\s\\S]))(?![\\s\\S]*%[0-9A-Fa-f]{2})[^\\u0000-\\u001F\\u007F/\\\\;]+(?![\\s\\S])")

    static let organizationHeader = QueryParameter(name: "X-Organization-Id", rule: .organization, description: "The clinic: org_<32 hex> or its UUID form")

    static let me = Schema.object(
        [("app", .object([("id", .text), ("slug", .text), ("liveVersionId", .text)], required: ["id", "slug", "liveVersionId"])),
         ("organization", .object([("id", .text)], required: ["id"])), ("scopes", .array(.text))],
        required: ["app", "organization", "scopes"])

    // MARK: Clinic data API

    static func addClinicAPI(_ surface: Surface, to paths: inout OpenAPIPaths) {
        let prefix = surface.prefixes[0]
        let operations = Dictionary(uniqueKeysWithValues: ClinicRoutes.operations.map { ($0.key, $0) })
        func operation(_ route: RouteInfo) -> ClinicOperation? { operations["\(route.method) \(route.path.dropFirst(prefix.count))"] }
        func isMe(_ route: RouteInfo) -> Bool { route.method == .get && route.path == prefix + "/marketplace/me" }
        add(surface, to: &paths, documented: { isMe($0) || operation($0) != nil }) { route, names in
            var document = base(route, surface)
            // An API key names its clinic; a token of a clinic-bound client may leave it out.
            document.set("security", [["apiKey": []]])
            var responses: [(String, JSONValue)]
            var parameters: [JSONValue] = []
            if isMe(route) {
                responses = [OpenAPIDocument.success(.ok, envelope(me, paginated: false))]
            } else {
                let operation = operation(route)!
                for name in OpenAPIPaths.parameterNames(route.path) {
                    guard let documented = names[name] else { continue }
                    let schema = operation.ids[name].map(Schema.idPattern) ?? segment
                    parameters.append(OpenAPIDocument.pathParameter(documented, schema))
                }
                parameters += operation.query.map(OpenAPIDocument.queryParameter)
                responses = [OpenAPIDocument.success(operation.success, operation.data.map { envelope($0, paginated: operation.paginated) })]
                if operation.conflicts { responses.append(("409", OpenAPIDocument.errorResponse("The record's state forbids it"))) }
                switch operation.body {
                case .json(let name, _)?:
                    document.set("requestBody", ["required": true, "content": ["application/json": ["schema": Schema.ref(name).json]]])
                    responses += [("413", OpenAPIDocument.errorResponse("Body over 64 KiB")), ("415", OpenAPIDocument.errorResponse("Body not application/json"))]
                case .image?:
                    let binary: JSONValue = ["schema": ["type": "string", "contentMediaType": "application/octet-stream"]]
                    document.set("requestBody", [
                        "required": true,
                        "content": [
                            "image/png": binary, "image/jpeg": binary, "image/gif": binary, "image/webp": binary,
                            "multipart/form-data": [
                                "schema": ["type": "object", "required": ["file"], "additionalProperties": false, "properties": [
                                    "file": ["type": "string", "contentMediaType": "application/octet-stream"],
                                ]],
                                "encoding": ["file": ["contentType": "image/png, image/jpeg, image/gif, image/webp"]],
                            ],
                        ],
                    ])
                    responses += [("413", OpenAPIDocument.errorResponse("Image over 5 MiB")), ("415", OpenAPIDocument.errorResponse("Not an image type"))]
                case nil:
                    break
                }
            }
            parameters.append(header(organizationHeader, required: true))
            document.set("parameters", .array(parameters))
            responses += refusals(route)
            document.set("responses", .object(responses))
            return document
        }
        // From each list to every operation that takes one of its records' ids.
        let routes = surface.catalog.routes.compactMap { route in operation(route).map { (route, $0) } }
        for (list, listing) in routes where listing.method == "GET" && listing.paginated {
            guard case .id(let prefix)? = listing.query.first(where: { $0.name == "cursor" })?.rule else { continue }
            for (route, taking) in routes {
                let parameters = taking.ids.filter { $0.value == prefix }.mapValues { _ in "$response.body#/data/0/id" }
                guard !parameters.isEmpty else { continue }
                paths.link(
                    from: ("get", documentedPath(list.path)), status: "200",
                    to: (route.method.description.lowercased(), documentedPath(route.path)), parameters: parameters)
            }
        }
    }

    static func envelope(_ data: Schema, paginated: Bool) -> Schema {
        var properties: [(String, Schema)] = [("code", .oneOf(["success"])), ("data", data)]
        if paginated {
            properties.append(("pagination", .object(
                [("limit", .integer(minimum: 1, maximum: 200)), ("nextCursor", .nullable(.text))], required: ["limit", "nextCursor"])))
        }
        return .object(properties, required: properties.map(\.0))
    }

    // MARK: Gateway

    static func addGateway(_ surface: Surface, to paths: inout OpenAPIPaths) {
        let typed = typedParameters(surface.catalog)
        // Only the routes this upstream serves (not /fhir/R4 when the built-in FHIR API has it).
        let owned = { (route: RouteInfo) in surface.prefixes.contains { route.path.isPath(under: $0) } }
        add(surface, to: &paths, documented: { !$0.isPublic && owned($0) }) { route, names in
            // Caregate's own errors on the FHIR base are OperationOutcomes.
            let error = route.path.isPath(under: Discovery.fhirBasePath) ? FHIROperations.outcome : OpenAPIDocument.errorResponse
            var document = base(route, surface)
            document.set("description", .string("Forwarded to the \(surface.name) upstream when allowed. Required scope: \(route.requirement)"))
            var parameters: [JSONValue] = []
            for name in OpenAPIPaths.parameterNames(documentedPath(route.path)) {
                guard let documented = names[name] else { continue }
                let schema = typed[route.path, default: []].contains(name) ? Schema.oneOf(resourceTypes(surface.catalog)) : segment
                parameters.append(OpenAPIDocument.pathParameter(documented, schema))
            }
            parameters.append(header(organizationHeader, required: false))
            document.set("parameters", .array(parameters))
            if route.method == .post || route.method == .put || route.method == .patch {
                document.set("requestBody", ["content": ["*/*": ["schema": [:] as JSONValue]]])
            }
            document.set("responses", .object([
                ("200", ["description": "The upstream's answer, passed through", "content": ["*/*": ["schema": [:] as JSONValue]]]),
                ("default", ["description": "The upstream's answer, whatever its status, passed through", "content": ["*/*": ["schema": [:] as JSONValue]]]),
            ] + refusals(route) + [
                ("413", error("Body over the upstream's maxBodyBytes")), ("502", error("The upstream is unavailable")),
                ("504", error("The upstream did not answer in time")),
            ]))
            return document
        }
    }

    /// A route template as an OpenAPI path: a trailing `*` (any deeper path) becomes `{rest}`.
    static func documentedPath(_ template: String) -> String {
        template.split(separator: "/", omittingEmptySubsequences: false).map { $0 == "*" ? "{rest}" : String($0) }.joined(separator: "/")
    }

    /// The resource-type names a `{Name:resourceType}` parameter accepts.
    static func resourceTypes(_ catalog: CompiledCatalog) -> [String] {
        Array(Set(catalog.definition.resourceTypes + catalog.definition.resourceTypeNames)).sorted()
    }

    /// Route path (as shown) → its parameters typed `:resourceType` in the catalog file.
    static func typedParameters(_ catalog: CompiledCatalog) -> [String: Set<String>] {
        var typed: [String: Set<String>] = [:]
        for entry in catalog.definition.routes {
            let names = entry.path.split(separator: "/").compactMap { segment -> String? in
                guard segment.hasPrefix("{"), segment.hasSuffix(":resourceType}") else { return nil }
                return String(segment.dropFirst().dropLast(":resourceType}".count))
            }
            let shown = entry.path.replacingOccurrences(of: ":resourceType}", with: "}")
            if !names.isEmpty { typed[shown, default: []].formUnion(names) }
        }
        return typed
    }

    // MARK: Shared

    static func base(_ route: RouteInfo, _ surface: Surface) -> JSONValue {
        var document: JSONValue = [
            "summary": .string(route.description ?? route.template), "tags": .string(surface.name).asArray,
            "description": .string(route.isPublic ? "No scope required (a valid credential is)." : "Required scope: \(route.requirement)"),
            "security": [["credential": []]],
        ]
        if !route.isPublic { document.set("x-required-scope", .string(route.requirement)) }
        return document
    }

    static func header(_ parameter: QueryParameter, required: Bool) -> JSONValue {
        ["name": .string(parameter.name), "in": "header", "required": .bool(required), "schema": parameter.rule.schema.json,
         "description": .string(parameter.description)]
    }

    /// What the enforcement pipeline answers on every route of a surface (OperationOutcomes on the FHIR base).
    static func refusals(_ route: RouteInfo) -> [(String, JSONValue)] {
        if route.path.isPath(under: Discovery.fhirBasePath) {
            return FHIROperations.errors(route.isPublic ? [] : [("403", "Insufficient scope")]).filter { $0.0 != "403" || !route.isPublic }
        }
        var answers: [(String, JSONValue)] = [
            ("400", OpenAPIDocument.errorResponse("Invalid path, query or X-Organization-Id (the message names it)")),
            ("401", OpenAPIDocument.errorResponse("Missing, invalid, expired or revoked credential, or an app not installed in this clinic")),
        ]
        if !route.isPublic {
            answers.append(("403", OpenAPIDocument.errorResponse("Insufficient scope (the message and WWW-Authenticate name it)")))
        }
        answers += [("404", OpenAPIDocument.errorResponse("No such record in this clinic, or no route")), ("405", OpenAPIDocument.methodNotAllowed)]
        return answers
    }

    /// Files every documented route of `surface` under its path, then, for each path, the
    /// methods another route answers there (`GET /v3/emails/send` is `GET /v3/emails/{id}`),
    /// so that the methods a path documents are the methods its `Allow` names.
    static func add(
        _ surface: Surface, to paths: inout OpenAPIPaths, documented: (RouteInfo) -> Bool,
        _ operation: (RouteInfo, _ names: [String: String]) -> JSONValue
    ) {
        let catalog = surface.catalog
        var filed: [String] = []
        for route in catalog.routes where documented(route) {
            let path = documentedPath(route.path)
            let (documentedPath, names) = paths.file(path)
            paths.add(route.method.description.lowercased(), documentedPath, operation(route, names))
            if !filed.contains(documentedPath) { filed.append(documentedPath) }
        }
        for path in filed {
            let sample = "/" + path.split(separator: "/").map { $0.hasPrefix("{") ? "x0" : String($0) }.joined(separator: "/")
            for method in Scopes.HTTPMethod.allCases where method != .head && !paths.has(method.description.lowercased(), path) {
                guard let route = catalog.explain(.empty, method: method.description, target: sample).route, documented(route) else { continue }
                // Parameters of the other route that are literal here are not parameters of this path.
                let own = path.split(separator: "/")
                let theirs = documentedPathSegments(route.path)
                var names: [String: String] = [:]
                for (i, segment) in theirs.enumerated() where segment.hasPrefix("{") && i < own.count && own[i].hasPrefix("{") {
                    names[String(segment.dropFirst().dropLast())] = String(own[i].dropFirst().dropLast())
                }
                paths.add(method.description.lowercased(), path, operation(route, names))
            }
        }
    }

    static func documentedPathSegments(_ template: String) -> [Substring] {
        documentedPath(template).split(separator: "/")
    }
}
