import SQLKit

/// How a row becomes a JSON object: its columns in order, each with its JSON name and kind.
/// Every answer of the clinic data API is built from one of these, and the API's document
/// describes the same shapes.
public struct RowShape: Sendable {
    public enum Kind: Sendable {
        case text, optionalText, int, bool
        /// Space-separated words, as a JSON array of strings.
        case words
    }

    public struct Field: Sendable {
        let column: String
        public let key: String
        public let kind: Kind
    }

    public let fields: [Field]

    init(_ fields: [(column: String, key: String, kind: Kind)]) {
        self.fields = fields.map { Field(column: $0.column, key: $0.key, kind: $0.kind) }
    }

    var columnList: String { fields.map(\.column).joined(separator: ", ") }

    func json(_ row: any SQLRow) throws -> JSONValue {
        .object(try fields.map { field in
            let value: JSONValue = switch field.kind {
            case .text: .string(try row.decode(column: field.column, as: String.self))
            case .optionalText: .optional(try row.decode(column: field.column, as: String?.self))
            case .int: .int(try row.decode(column: field.column, as: Int64.self))
            case .bool: .bool(try row.decode(column: field.column, as: Bool.self))
            case .words: .array(try row.decode(column: field.column, as: String.self).split(separator: " ").map { .string(String($0)) })
            }
            return (field.key, value)
        })
    }
}

/// The sub-objects of the clinic API's detail answers.
extension RowShape {
    public static let billLine = RowShape([
        ("id", "id", .text), ("code", "code", .text), ("description", "description", .text), ("units", "units", .int),
        ("amount_cents", "amountCents", .int),
    ])
    public static let codingGroup = RowShape([("id", "id", .text), ("code_system", "system", .text), ("codes", "codes", .words)])
    public static let insurance = RowShape([
        ("payer_name", "payerName", .text), ("plan_name", "planName", .text), ("member_id", "memberId", .text), ("group_number", "groupNumber", .text),
    ])
    public static let soapNote = RowShape([
        ("subjective", "subjective", .text), ("objective", "objective", .text), ("assessment", "assessment", .text), ("plan", "plan", .text),
    ])
    public static let impression = RowShape([("id", "id", .text), ("code", "code", .text), ("description", "description", .text)])
    public static let noteImage = RowShape([
        ("id", "id", .text), ("provider_id", "providerId", .text), ("content_type", "contentType", .text), ("size", "size", .int),
        ("created_at", "createdAt", .int),
    ])
    public static let inventoryLine = RowShape([
        ("product_id", "productId", .text), ("name", "name", .text), ("sku", "sku", .text), ("quantity_delta", "quantityDelta", .int),
    ])
    public static let stockLevel = RowShape([
        ("product_id", "productId", .text), ("name", "name", .text), ("sku", "sku", .text), ("quantity", "quantity", .int),
        ("updated_at", "updatedAt", .int),
    ])
}
