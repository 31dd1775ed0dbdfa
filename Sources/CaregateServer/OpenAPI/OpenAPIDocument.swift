import CaregateStore
import HTTPTypes
import Scopes

/// The OpenAPI 3.1 document of the whole HTTP surface, built from the declarations the
/// server runs: the management table, the clinic API's operations, the surfaces' route
/// tables and the value rules. Every operation lists every status it can answer.
enum OpenAPIDocument {
    static func build(registry: SurfaceRegistry, version: String) -> JSONValue {
        var paths = OpenAPIPaths()
        var schemas: [(String, JSONValue)] = [
            ("Error", Schema.object(
                [("code", .text), ("message", .text), ("trace_id", .string(format: "uuid"))], required: ["code", "message", "trace_id"]).json),
            ("OAuthError", Schema.object([("error", .text), ("error_description", .text)], required: ["error", "error_description"]).json),
        ]
        ServerOperations.add(to: &paths, schemas: &schemas)
        for operation in ManagementAPI.operations { addManagement(operation, to: &paths) }
        schemas += ManagementAPI.schemas(registry: registry).map { ($0.0, $0.1.json) }
        for surface in registry.clinicAPISurfaces { SurfaceOperations.addClinicAPI(surface, to: &paths) }
        schemas += ClinicRoutes.operations.compactMap { operation in
            guard case .json(let name, let schema) = operation.body else { return nil }
            return (name, schema.json)
        }
        for surface in registry.gatewaySurfaces { SurfaceOperations.addGateway(surface, to: &paths) }
        switch registry.fhir?.backend {
        case .fhir?: FHIROperations.add(registry.fhir!, to: &paths)
        case .fhirGateway?: SurfaceOperations.addGateway(registry.fhir!, to: &paths)
        default: break
        }
        schemas += FHIROperations.schemas
        return [
            "openapi": "3.1.0",
            "info": [
                "title": "Caregate", "version": .string(version),
                "description": """
                    Scope-based permission system for healthcare partner APIs: the management API, OAuth 2.0, \
                    the built-in clinic data API (/v3, /v1), FHIR R4 (/fhir/R4) and the gateway surfaces. Every error answer is \
                    {code, message, trace_id} (RFC 6749 {error, error_description} on /oauth2, a FHIR OperationOutcome on \
                    /fhir/R4); every 405 carries Allow.
                    """,
            ],
            "paths": paths.json,
            "components": [
                "securitySchemes": [
                    "apiKey": ["type": "http", "scheme": "bearer", "description": "API key (<prefix>_<env>_ak_…) with X-Organization-Id"],
                    "managementToken": ["type": "http", "scheme": "bearer", "description": "Operator, developer or clinic-admin token"],
                    "credential": ["type": "http", "scheme": "bearer", "description": "API key or OAuth 2.0 access token"],
                    "oauthClient": [
                        "type": "http", "scheme": "basic",
                        "description": "An OAuth client's id and secret (client_secret_basic); the form's client_id with client_secret or client_assertion, or a public client's client_id alone, authenticate it instead",
                    ],
                ],
                "schemas": .object(schemas),
            ],
        ]
    }

    // MARK: Responses

    static func errorResponse(_ description: String) -> JSONValue {
        ["description": .string(description), "content": ["application/json": ["schema": Schema.ref("Error").json]]]
    }

    /// 405, with the `Allow` header every 405 carries.
    static let methodNotAllowed: JSONValue = [
        "description": "Method not allowed on this path; Allow lists those that are",
        "headers": ["Allow": ["required": true, "schema": ["type": "string"]]],
        "content": ["application/json": ["schema": Schema.ref("Error").json]],
    ]

    static func success(_ status: HTTPResponse.Status, _ schema: Schema?) -> (String, JSONValue) {
        guard let schema, status != .noContent else { return (String(status.code), ["description": .string(status.reasonPhrase)]) }
        return (String(status.code), ["description": .string(status.reasonPhrase), "content": ["application/json": ["schema": schema.json]]])
    }

    static func pathParameter(_ name: String, _ schema: Schema, _ description: String? = nil) -> JSONValue {
        var parameter: JSONValue = ["name": .string(name), "in": "path", "required": true, "schema": schema.json]
        if let description { parameter.set("description", .string(description)) }
        return parameter
    }

    static func queryParameter(_ parameter: QueryParameter) -> JSONValue {
        ["name": .string(parameter.name), "in": "query", "required": .bool(parameter.required), "schema": parameter.rule.schema.json,
         "description": .string(parameter.description)]
    }

    // MARK: Management

    static func addManagement(_ operation: ManagementOperation, to paths: inout OpenAPIPaths) {
        var responses: [(String, JSONValue)] = [success(operation.success, operation.response.map { .ref($0) })]
        if operation.mediaType != "application/json", let line = operation.response {
            // A stream of JSON lines: OpenAPI 3.1 cannot give the schema of one line, so the
            // description names it.
            responses = [(String(operation.success.code), [
                "description": .string("\(operation.success.reasonPhrase): one \(line) per line"),
                "content": .object([(operation.mediaType, ["schema": ["type": "string"]] as JSONValue)]),
            ])]
        }
        responses += [
            ("400", errorResponse("Invalid input (the message names it)")), ("401", errorResponse("Missing or invalid management token")),
            ("403", errorResponse("A token of another kind")), ("404", errorResponse("No such record of the caller's")),
            ("405", methodNotAllowed),
        ]
        if operation.conflicts { responses.append(("409", errorResponse("The record's state forbids it"))) }
        var document: JSONValue = [
            "summary": .string(operation.summary), "tags": ["management"], "security": [["managementToken": []]],
            "x-caregate-callers": .array(operation.callers.map(\.rawValue).sorted().map { .string($0) }),
        ]
        if let body = operation.body {
            responses += [("413", errorResponse("Body over 64 KiB")), ("415", errorResponse("Body not application/json"))]
            document.set("requestBody", [
                "required": .bool(!body.optional), "content": ["application/json": ["schema": Schema.ref(body.name).json]],
            ])
        }
        let (path, _) = paths.file(operation.path)
        var parameters = OpenAPIPaths.parameterNames(operation.path).map { pathParameter($0, .string(minLength: 1, maxLength: 100)) }
        parameters += operation.query.map(queryParameter)
        document.set("parameters", .array(parameters))
        document.set("responses", .object(responses))
        paths.add(operation.method.rawValue.lowercased(), path, document)
    }
}

extension JSONValue {
    var asArray: JSONValue { .array([self]) }
}
