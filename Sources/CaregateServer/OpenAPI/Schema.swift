import CaregateStore

/// A JSON Schema (OpenAPI 3.1 dialect) for the document, written as the handlers read and
/// write their JSON. Request bodies declared with it also give the handlers their field list.
indirect enum Schema: Sendable {
    case string(minLength: Int? = nil, maxLength: Int? = nil, pattern: String? = nil, format: String? = nil)
    case oneOf([String])
    case integer(minimum: Int64? = nil, maximum: Int64? = nil)
    case number
    case boolean
    case array(Schema, minItems: Int? = nil, maxItems: Int? = nil)
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

    static let id = Schema.string(maxLength: 100)
    static let text = Schema.string()
    static let dateTime = Schema.string(format: "date-time")
    static let scopes = Schema.array(.string(minLength: 1, maxLength: 200), maxItems: 256)

    /// The property names of an object schema (a request body's allowed fields).
    var propertyNames: Set<String> {
        if case .object(let properties, _, _) = self { return Set(properties.map(\.0)) }
        return []
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
        case .array(let items, let minItems, let maxItems):
            var object: [(String, JSONValue)] = [("type", "array"), ("items", items.json)]
            if let minItems { object.append(("minItems", .int(Int64(minItems)))) }
            if let maxItems { object.append(("maxItems", .int(Int64(maxItems)))) }
            return .object(object)
        case .object(let properties, let required, let closed):
            var object: [(String, JSONValue)] = [("type", "object"), ("properties", .object(properties.map { ($0.0, $0.1.json) }))]
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
        }
    }
}
