import CaregateStore

/// A JSON Schema (OpenAPI 3.1 dialect) for the document, written as the handlers read and
/// write their JSON. Request bodies declared with it also give the handlers their field list.
indirect enum Schema: Sendable {
    case string(minLength: Int? = nil, maxLength: Int? = nil, pattern: String? = nil, format: String? = nil)
    case oneOf([String])
    case integer(minimum: Int64? = nil, maximum: Int64? = nil)
    case number
    case boolean
    /// `unique`: the server refuses an array with an item twice.
    case array(Schema, minItems: Int? = nil, maxItems: Int? = nil, unique: Bool = false)
    /// Properties in order; `closed`: no other property is allowed.
    case object([(String, Schema)], required: [String] = [], closed: Bool = false)
    /// An object whose property names are free and whose values have one schema.
    case map(Schema)
    /// `null` or the schema.
    case nullable(Schema)
    /// A schema under `components/schemas`.
    case ref(String)
    /// Any JSON value.
    case any
    /// At least one of the schemas holds.
    case anyOf([Schema])
    /// Exactly one of the schemas holds.
    case oneOfSchemas([Schema])
    /// Both hold.
    case allOf([Schema])
    /// The schema does not hold.
    case not(Schema)
    /// An object with these properties; any other property must match `additional`.
    case openObject([(String, Schema)], required: [String], additional: Schema)

    static let id = Schema.string(maxLength: 100)
    static let text = Schema.string()
    static let dateTime = Schema.string(format: "date-time")
    /// A date-time a request sends (`expiresAt`): RFC 3339, fractional seconds allowed, at most 40 characters.
    static let requestDateTime = Schema.string(maxLength: 40, format: "date-time")

    /// A pattern matching the whole value. `(?![\s\S])` rather than `$`: in some regex
    /// dialects (Python's, which schema-driven tools use) `$` also matches before a final newline.
    static func whole(_ body: String) -> String { "^" + body + "(?![\\s\\S])" }

    /// Any character but a control character; tab, newline and carriage return are allowed (as
    /// ``JSONInput`` reads strings).
    static let textCharacter = "[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F]"
    static let noControlCharacters = whole(textCharacter + "*")
    /// White space as the server trims it (Foundation's `whitespacesAndNewlines`, less the control
    /// characters no text may hold), spelled out: `\s` means other characters in ECMA and in
    /// Python (U+0085, U+FEFF, U+200B).
    static let whiteSpace = "\\t\\n\\r \\u0085\\u00A0\\u1680\\u2000-\\u200B\\u2028\\u2029\\u202F\\u205F\\u3000"
    /// A required string field: something other than white space, no control characters. Written
    /// as white space, one other character, then anything, rather than with a leading lookahead
    /// (`(?=[\s\S]*\S)`): schema-driven generators filter a lookahead's candidates instead of
    /// building them; schemathesis's coverage phase took 733 s with it and 368 s without (2026-12-03).
    static func requiredText(min: Int = 1, max: Int) -> Schema {
        .string(minLength: min, maxLength: max, pattern: whole("[\(whiteSpace)]*"
            + "[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F\(whiteSpace)]" + textCharacter + "*"))
    }

    /// A real day of the calendar as `YYYY-MM-DD`, for the years `year` matches; `leapYear`
    /// matches those of them with a 29 February.
    static func day(year: String, leapYear: String) -> String {
        "(\(year)-(0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|\(year)-(0[469]|11)-(0[1-9]|[12][0-9]|30)"
            + "|\(year)-02-(0[1-9]|1[0-9]|2[0-8])|\(leapYear)-02-29)"
    }
    /// An optional string field (may be empty), without control characters.
    static func optionalText(max: Int) -> Schema { .string(maxLength: max, pattern: noControlCharacters) }
    static func idPattern(_ prefix: String) -> Schema { .string(pattern: whole("\(prefix)_[0-9a-f]{32}")) }

    /// The property names of an object schema (a request body's allowed fields).
    var propertyNames: Set<String> {
        switch self {
        case .object(let properties, _, _): Set(properties.map(\.0))
        case .allOf(let schemas), .oneOfSchemas(let schemas), .anyOf(let schemas): schemas.reduce(into: Set<String>()) { $0.formUnion($1.propertyNames) }
        case .openObject(let properties, _, _): Set(properties.map(\.0))
        default: []
        }
    }

    var json: JSONValue {
        switch self {
        case .string(let minLength, let maxLength, let pattern, let format):
            var object: [(String, JSONValue)] = [("type", "string")]
            if let minLength { object.append(("minLength", .int(Int64(minLength)))) }
            if let maxLength { object.append(("maxLength", .int(Int64(maxLength)))) }
            if let pattern { object.append(("pattern", .string(pattern))) }
            if let format { object.append(("format", .string(format))) }
            return .object(object)
        case .oneOf(let values):
            return ["type": "string", "enum": .array(values.map { .string($0) })]
        case .integer(let minimum, let maximum):
            var object: [(String, JSONValue)] = [("type", "integer")]
            if let minimum { object.append(("minimum", .int(minimum))) }
            if let maximum { object.append(("maximum", .int(maximum))) }
            return .object(object)
        case .number:
            return ["type": "number"]
        case .boolean:
            return ["type": "boolean"]
        case .array(let items, let minItems, let maxItems, let unique):
            var object: [(String, JSONValue)] = [("type", "array"), ("items", items.json)]
            if let minItems { object.append(("minItems", .int(Int64(minItems)))) }
            if let maxItems { object.append(("maxItems", .int(Int64(maxItems)))) }
            if unique { object.append(("uniqueItems", true)) }
            return .object(object)
        case .object(let properties, let required, let closed):
            // A request body (closed) reads an optional field sent as null as absent.
            let rendered = properties.map { name, schema in
                (name, closed && !required.contains(name) ? Schema.nullable(schema).json : schema.json)
            }
            var object: [(String, JSONValue)] = [("type", "object"), ("properties", .object(rendered))]
            if !required.isEmpty { object.append(("required", .array(required.map { .string($0) }))) }
            if closed { object.append(("additionalProperties", false)) }
            return .object(object)
        case .map(let values):
            return ["type": "object", "additionalProperties": values.json]
        case .nullable(let schema):
            return ["oneOf": [["type": "null"], schema.json]]
        case .ref(let name):
            return ["$ref": .string("#/components/schemas/\(name)")]
        case .any:
            return [:]
        case .anyOf(let schemas):
            return ["anyOf": .array(schemas.map(\.json))]
        case .oneOfSchemas(let schemas):
            return ["oneOf": .array(schemas.map(\.json))]
        case .allOf(let schemas):
            return ["allOf": .array(schemas.map(\.json))]
        case .not(let schema):
            return ["not": schema.json]
        case .openObject(let properties, let required, let additional):
            var object: [(String, JSONValue)] = [("type", "object"), ("properties", .object(properties.map { ($0.0, $0.1.json) }))]
            if !required.isEmpty { object.append(("required", .array(required.map { .string($0) }))) }
            object.append(("additionalProperties", additional.json))
            return .object(object)
        }
    }
}
