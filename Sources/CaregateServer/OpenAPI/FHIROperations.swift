import CaregateStore
import Scopes

/// The built-in FHIR R4 API in the document: one path per served type (each with exactly the
/// search parameters that type takes; writes on the clinical types, the others being the
/// clinic's records, read-only here), FHIR bodies as `application/fhir+json`, and every error
/// an `OperationOutcome`; transaction and batch Bundles; bulk export.
enum FHIROperations {
    static let mediaType = "application/fhir+json"

    static let schemas: [(String, JSONValue)] = [
        ("OperationOutcome", Schema.object([
            ("resourceType", .oneOf(["OperationOutcome"])),
            ("issue", .array(.object([
                ("severity", .oneOf(["fatal", "error", "warning", "information"])), ("code", .text),
                ("details", .object([("text", .text)], required: ["text"])), ("diagnostics", .text),
            ], required: ["severity", "code"]), minItems: 1)),
        ], required: ["resourceType", "issue"]).json),
        ("FHIRResource", Schema.openObject([("resourceType", .text), ("id", .text)], required: ["resourceType", "id"], additional: .any).json),
        ("SearchBundle", Schema.object([
            ("resourceType", .oneOf(["Bundle"])), ("type", .oneOf(["searchset"])), ("total", .integer(minimum: 0)),
            ("link", .array(.object([("relation", .oneOf(["self", "next", "previous"])), ("url", .text)], required: ["relation", "url"]))),
            ("entry", .array(.object([
                ("fullUrl", .text), ("resource", .ref("FHIRResource")), ("search", .object([("mode", .oneOf(["match"]))], required: ["mode"])),
            ], required: ["fullUrl", "resource", "search"]))),
        ], required: ["resourceType", "type", "total", "link", "entry"]).json),
    ]

    /// A search parameter's values: comma-separated, none empty.
    static let list = Schema.string(minLength: 1, maxLength: FHIRSearch.maxValueLength, pattern: Schema.whole("[^,]+(,[^,]+)*"))
    static let year = "(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
    /// A real day of the calendar, leap years included.
    static let day = Schema.day(year: year, leapYear: "([0-9]{2}(0[48]|[2468][048]|[13579][26])|([2468][048]|[13579][26]|0[48])00)")
    /// A FHIR date or dateTime naming a real day, after an optional prefix.
    static let date = Schema.string(pattern: Schema.whole(
        "(eq|ne|gt|lt|ge|le)?(\(year)|\(year)-(0[1-9]|1[0-2])|\(day)(T([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\\.[0-9]{1,9})?)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9]))?)"))
    /// A FHIR instant as R4 writes it (seconds, and a zone of at most ±14:00).
    static let instant = Schema.string(pattern: Schema.whole(
        "\(day)T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"))
    /// A FHIR id (a record id as `/v3` writes it, with `_`, is read the same); not `.` or `..`,
    /// which the path rules refuse.
    static let id = Schema.string(pattern: Schema.whole("(?!\\.{1,2}(?![\\s\\S]))[A-Za-z0-9\\-._]{1,64}"))

    static func parameterSchema(_ name: String) -> (Schema, String) {
        switch name {
        case "_id": (list, "Logical ids, comma-separated (any of them)")
        case "_count": (.integer(minimum: 0, maximum: Int64(FHIRSearch.maxRequestedCount)), "Page size (at most \(FHIRSearch.maxCount) are returned; 0 answers the total alone)")
        case "_offset": (.integer(minimum: 0, maximum: Int64(FHIRSearch.maxOffset)), "How many matches to skip (the paging links set it)")
        case "_format": (.oneOf(["json", "application/json", "application/fhir+json"]), "JSON is the only format")
        case "patient", "subject": (list, "Patient references (pat-…, Patient/pat-…, or an absolute URL), any of them")
        case "date", "recorded-date": (date, "A date or dateTime, optionally after eq, ne, gt, lt, ge or le")
        default: (list, "Codes (system|code or code), any of them")
        }
    }

    static func add(_ surface: Surface, to paths: inout OpenAPIPaths) {
        let base = Discovery.fhirBasePath
        for type in FHIRType.allCases {
            let typePath = "\(base)/\(type.rawValue)"
            let itemPath = typePath + "/{id}"
            let readScope = "cms.fhir.r4.read", writeScope = "cms.fhir.rest.write"
            _ = paths.file(typePath)
            _ = paths.file(itemPath)
            let query = (FHIRSearch.common + FHIRSearch.parameters(of: type)).map { name -> JSONValue in
                let (schema, description) = parameterSchema(name)
                return ["name": .string(name), "in": "query", "required": false, "schema": schema.json, "description": .string(description)]
            }
            paths.add("get", typePath, operation(
                "Search \(type.rawValue)", scope: readScope, type: type, parameters: query,
                responses: [("200", answer("A searchset Bundle, confined to what the credential reaches", .ref("SearchBundle")))]
                    + errors([("400", "An unsupported or invalid search parameter (named)"), ("406", "A _format other than JSON")])))
            let idParameter: JSONValue = ["name": "id", "in": "path", "required": true, "schema": id.json]
            paths.add("get", itemPath, operation(
                "Read \(type.rawValue)", scope: readScope, type: type, parameters: [idParameter],
                responses: [("200", answer("The resource", .ref("FHIRResource")))] + errors([("400", "Not a FHIR id")])))
            if type.isClinical {
                let body: JSONValue = ["required": true, "content": .object([(mediaType, ["schema": writeSchema(type).json] as JSONValue)])]
                let bodyErrors = [
                    ("400", "Not a valid \(type.rawValue) (a date that is not one, a choice element [x] given in two types), "
                        + "or its patient is not one of the clinic's (the message says which)"),
                    ("413", "Body over 1 MiB"),
                    ("415", "Body not application/fhir+json"),
                ]
                var create = operation(
                    "Create \(type.rawValue)", scope: writeScope, type: type, parameters: [],
                    responses: [("201", answer("Created; Location names its first version", .ref("FHIRResource")))] + errors(bodyErrors))
                create.set("requestBody", body)
                paths.add("post", typePath, create)
                var update = operation(
                    "Update \(type.rawValue)", scope: writeScope, type: type, parameters: [idParameter],
                    responses: [("200", answer("Updated; meta.versionId counts", .ref("FHIRResource")))] + errors(bodyErrors))
                update.set("requestBody", body)
                paths.add("put", itemPath, update)
                paths.add("delete", itemPath, operation(
                    "Delete \(type.rawValue)", scope: writeScope, type: type, parameters: [idParameter],
                    responses: [("204", ["description": "Deleted"])] + errors([("400", "Not a FHIR id")])))
            }
        }
        // From a search's first entry, and from a created resource, to the operations on one resource.
        for type in FHIRType.allCases {
            let typePath = "\(base)/\(type.rawValue)", itemPath = typePath + "/{id}"
            for method in ["get", "put", "delete"] {
                paths.link(from: ("get", typePath), status: "200", to: (method, itemPath), parameters: ["id": "$response.body#/entry/0/resource/id"])
                paths.link(from: ("post", typePath), status: "201", to: (method, itemPath), parameters: ["id": "$response.body#/id"])
            }
        }
        addExport(to: &paths)
        addBundle(to: &paths)
    }

    /// `POST /fhir/R4`: transaction and batch Bundles.
    static func addBundle(to paths: inout OpenAPIPaths) {
        let path = Discovery.fhirBasePath
        _ = paths.file(path)
        let entry = Schema.openObject([
            ("request", .openObject([("method", .oneOf(["GET", "POST", "PUT", "DELETE"])), ("url", .string(minLength: 1, maxLength: 2048))],
                                    required: ["method", "url"], additional: .any)),
            ("resource", .openObject([("resourceType", .text)], required: ["resourceType"], additional: .any)),
        ], required: ["request"], additional: .any)
        let bundle = Schema.openObject([
            ("resourceType", .oneOf(["Bundle"])), ("type", .oneOf(["transaction", "batch"])), ("entry", .array(entry, maxItems: 100)),
        ], required: ["resourceType", "type"], additional: .any)
        let response = Schema.openObject([
            ("resourceType", .oneOf(["Bundle"])), ("type", .oneOf(["transaction-response", "batch-response"])),
            ("entry", .array(.openObject([("response", .openObject([("status", .text)], required: ["status"], additional: .any))],
                                         required: ["response"], additional: .any))),
        ], required: ["resourceType", "type", "entry"], additional: .any)
        var document = operation(
            "A transaction or batch Bundle", scope: "cms.fhir.bundle.push", parameters: [],
            responses: [("200", answer("transaction-response or batch-response, an entry per entry", response))] + errors([
                ("400", "Not a transaction or batch Bundle, or (a transaction) an entry that is not valid (named)"),
                ("403", "(A transaction) an entry the credential may not make (named)"), ("404", "(A transaction) an entry's resource is not within reach"),
                ("405", "(A transaction) an entry's method on a read-only type"), ("413", "Body over 4 MiB"), ("415", "Body not application/fhir+json"),
            ]))
        document.set("description", .string(
            "Each entry is decided and confined as the same request on its own; cms.fhir.bundle.push also opens write entries. A transaction is "
                + "checked whole, then written in one database transaction, or refused whole with the first refused entry's status."))
        document.set("requestBody", ["required": true, "content": .object([(mediaType, ["schema": bundle.json] as JSONValue)])])
        paths.add("post", path, document)
    }

    /// FHIR Bulk Data export: kick-off (system and Patient level; a Group is never known here),
    /// status, cancel, files.
    static func addExport(to paths: inout OpenAPIPaths) {
        let base = Discovery.fhirBasePath
        let scope = "system/*.read"
        let prefer: JSONValue = ["name": "Prefer", "in": "header", "required": true, "schema": Schema.oneOf(["respond-async"]).json,
                                 "description": "Exports run asynchronously"]
        let accept: JSONValue = ["name": "Accept", "in": "header", "required": false,
                                 "schema": Schema.oneOf(["application/fhir+json", "application/json", "*/*"]).json]
        let query: [JSONValue] = [
            ["name": "_type", "in": "query", "required": false, "description": "Types to export (default: every type the token reaches)",
             "schema": Schema.string(pattern: Schema.whole("(\(FHIRType.allCases.map(\.rawValue).joined(separator: "|")))(,(\(FHIRType.allCases.map(\.rawValue).joined(separator: "|"))))*")).json],
            ["name": "_since", "in": "query", "required": false, "description": "Only resources written since (where the store knows when)",
             "schema": instant.json],
            ["name": "_outputFormat", "in": "query", "required": false, "schema": Schema.oneOf(BulkExport.outputFormats).json],
        ]
        let accepted: JSONValue = [
            "description": "Accepted; Content-Location is the status URL",
            "headers": ["Content-Location": ["required": true, "schema": ["type": "string"]]],
            "content": .object([(mediaType, ["schema": Schema.ref("OperationOutcome").json] as JSONValue)]),
        ]
        let parameters: JSONValue = ["content": .object([(mediaType, ["schema": Schema.openObject(
            [("resourceType", .oneOf(["Parameters"]))], required: ["resourceType"], additional: .any).json] as JSONValue)])]
        for (path, summary) in [("\(base)/$export", "Bulk export of the clinic"), ("\(base)/Patient/$export", "Bulk export of every patient's compartment")] {
            _ = paths.file(path)
            let busy = ("429", "\(BulkExport.exportsPerClient) exports of this client are in progress; try again after Retry-After seconds")
            let kickOff = operation(summary, scope: scope, parameters: query + [prefer, accept], responses: [("202", accepted)] + errors([
                ("400", "Prefer: respond-async missing, or an unsupported or invalid parameter (named)"), ("406", "An Accept other than FHIR JSON"), busy,
            ]))
            paths.add("get", path, kickOff)
            var post = operation(summary + " (Parameters body)", scope: scope, parameters: [prefer, accept], responses: [("202", accepted)] + errors([
                ("400", "Prefer: respond-async missing, or an unsupported or invalid parameter (named)"), ("406", "An Accept other than FHIR JSON"),
                ("413", "Body over 64 KiB"), busy,
            ]))
            post.set("requestBody", parameters)
            paths.add("post", path, post)
        }
        let groupPath = "\(base)/Group/{id}/$export"
        _ = paths.file(groupPath)
        let group: JSONValue = ["name": "id", "in": "path", "required": true, "schema": SurfaceOperations.segment.json]
        paths.add("get", groupPath, operation("Bulk export of a group (no group is known here)", scope: scope, parameters: [group], responses: errors([])))
        var groupPost = operation("Bulk export of a group (no group is known here)", scope: scope, parameters: [group], responses: errors([]))
        groupPost.set("requestBody", parameters)
        paths.add("post", groupPath, groupPost)
        let job: JSONValue = ["name": "jobId", "in": "path", "required": true, "schema": Schema.idPattern("exp").json]
        let statusPath = "\(base)/$export-poll-status/{jobId}"
        _ = paths.file(statusPath)
        let manifest = Schema.object([
            ("transactionTime", .text), ("request", .text), ("requiresAccessToken", .boolean),
            ("output", .array(.object([("type", .text), ("url", .text), ("count", .integer(minimum: 0))], required: ["type", "url", "count"]))),
            ("error", .array(.any)),
        ], required: ["transactionTime", "request", "requiresAccessToken", "output", "error"])
        paths.add("get", statusPath, operation("Bulk export status", scope: scope, parameters: [job], responses: [
            ("200", ["description": "Completed: the manifest", "content": ["application/json": ["schema": manifest.json]]]),
            ("202", ["description": "In progress", "headers": ["X-Progress": ["required": true, "schema": ["type": "string"]]]]),
            ("500", outcome("The export failed, or stopped before it finished (its server stopped or went away): kick off a new one")),
        ] + errors([])))
        paths.add("delete", statusPath, operation("Delete a bulk export and its files", scope: scope, parameters: [job], responses: [
            ("202", answer("Deleted", .ref("OperationOutcome"))),
        ] + errors([])))
        let filePath = "\(base)/$export-file/{jobId}/{ResourceType}"
        _ = paths.file(filePath)
        let type: JSONValue = ["name": "ResourceType", "in": "path", "required": true, "schema": Schema.oneOf(FHIRType.allCases.map(\.rawValue)).json]
        paths.add("get", filePath, operation("One NDJSON file of a bulk export", scope: scope, parameters: [job, type], responses: [
            ("200", ["description": "One resource per line", "content": ["application/fhir+ndjson": ["schema": ["type": "string"]]]]),
        ] + errors([])))
    }

    /// The fields a written resource must have; anything else FHIR allows may be there.
    static func writeSchema(_ type: FHIRType) -> Schema {
        let reference = Schema.object([("reference", .string(pattern: Schema.whole("Patient/[A-Za-z0-9\\-._]{1,64}")))], required: ["reference"])
        let coding = Schema.openObject([("system", .text), ("code", .string(minLength: 1))], required: ["code"], additional: .any)
        func date(_ kind: FHIRClinicalInput.DateKind) -> Schema {
            switch kind {
            case .dateTime: writtenDate
            case .instant: instant
            case .period: .openObject([("start", writtenDate), ("end", writtenDate)], required: [], additional: .any)
            }
        }
        let dates = (FHIRClinicalInput.searchedDates(of: type) + FHIRClinicalInput.otherDates(of: type)).map { ($0.0, date($0.1)) }
            + FHIRClinicalInput.nestedElements(of: type).map { nested in
                (nested.array, Schema.array(.openObject(nested.dates.map { ($0.0, date($0.1)) }, required: [], additional: .any)))
            }
        switch type {
        case .Observation:
            return .openObject([
                ("resourceType", .oneOf([type.rawValue])), ("status", .oneOf(FHIRClinicalInput.observationStatuses.sorted())),
                ("code", .openObject([("coding", .array(coding, minItems: 1))], required: ["coding"], additional: .any)), ("subject", reference),
            ] + dates,
                required: ["resourceType", "status", "code", "subject"], additional: .any)
        case .Condition:
            return .openObject([("resourceType", .oneOf([type.rawValue])), ("subject", reference)] + dates, required: ["resourceType", "subject"], additional: .any)
        default:
            return .openObject([("resourceType", .oneOf([type.rawValue])), ("patient", reference)] + dates, required: ["resourceType", "patient"], additional: .any)
        }
    }

    /// A date a written resource carries (`FHIRClinicalInput.dateTime`, on a real day): a year,
    /// a month, a day, or a day and a time with seconds and a zone.
    static let writtenDate = Schema.string(pattern: Schema.whole(
        "(\(year)|\(year)-(0[1-9]|1[0-2])|\(day)(T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)"))

    static func operation(_ summary: String, scope: String, type: FHIRType? = nil, parameters: [JSONValue], responses: [(String, JSONValue)]) -> JSONValue {
        [
            "summary": .string(summary), "tags": ["fhir"], "security": [["credential": []]],
            "description": .string(type.map { type in
                "Built-in FHIR R4 over the clinic data. Opened by \(scope), or the SMART scope of the interaction's letter for \(type.rawValue) "
                    + "(system/, user/, patient/); patient/ scopes are confined to the token's patient."
            } ?? "FHIR Bulk Data export (built in). Opened by \(scope) or system/<Type>.read; only the client that asked sees the job and its files."),
            "x-required-scope": .string(scope),
            "parameters": .array(parameters + [SurfaceOperations.header(SurfaceOperations.organizationHeader, required: false)]),
            "responses": .object(responses),
        ]
    }

    static func answer(_ description: String, _ schema: Schema) -> JSONValue {
        ["description": .string(description), "content": .object([(mediaType, ["schema": schema.json] as JSONValue)])]
    }

    static func outcome(_ description: String) -> JSONValue {
        ["description": .string(description), "content": .object([(mediaType, ["schema": Schema.ref("OperationOutcome").json] as JSONValue)])]
    }

    /// The operation's own errors and what the pipeline answers on every FHIR route, as OperationOutcomes.
    static func errors(_ own: [(String, String)]) -> [(String, JSONValue)] {
        var byStatus: [String: String] = [
            "400": "Invalid path, query or X-Organization-Id (named)",
            "401": "Missing, invalid, expired or revoked credential, or an app not installed in this clinic",
            "403": "Insufficient scope, another patient named, or patient/ scopes without a patient",
            "404": "No such resource within reach (another patient's answers the same), or a type not served",
        ]
        for (status, description) in own { byStatus[status] = byStatus[status].map { $0 + "; " + description } ?? description }
        return byStatus.keys.sorted().map { status in
            var response = outcome(byStatus[status]!)
            if status == "405" { response.set("headers", ["Allow": ["required": true, "schema": ["type": "string"]]]) }
            if status == "429" { response.set("headers", ["Retry-After": ["required": true, "schema": ["type": "integer", "minimum": 1]]]) }
            return (status, response)
        } + [("405", {
            var response = outcome("Method not allowed on this path; Allow lists those that are")
            response.set("headers", ["Allow": ["required": true, "schema": ["type": "string"]]])
            return response
        }())].filter { pair in !byStatus.keys.contains(pair.0) }
    }
}
