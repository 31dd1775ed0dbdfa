import CaregateStore

/// The JSON of the clinic data API as schemas: records from the collections' field tables,
/// details and write bodies as the store and the handlers build them.
enum ClinicSchemas {
    /// The schema of a row shape: every field required, typed as the store writes it.
    static func object(_ shape: RowShape, extra: [(String, Schema)] = [], optional: [(String, Schema)] = [], id: Schema? = nil) -> Schema {
        let fields: [(String, Schema)] = shape.fields.map { field in
            switch field.kind {
            case .text: (field.key, field.key == "id" ? id ?? .text : .text)
            case .optionalText: (field.key, .nullable(.text))
            case .int: (field.key, .integer())
            case .bool: (field.key, .boolean)
            case .words: (field.key, .array(.text))
            }
        }
        return .object(fields + extra + optional, required: (fields + extra).map(\.0))
    }

    /// A record of a collection: `id` and the collection's fields.
    static func record(_ collection: ClinicCollection, extra: [(String, Schema)] = [], optional: [(String, Schema)] = []) -> Schema {
        object(collection.shape, extra: extra, optional: optional, id: .idPattern(collection.idPrefix))
    }

    static let lineItem = object(.billLine)
    static let codingGroup = object(.codingGroup)
    static let insurance = object(.insurance)
    static let impression = object(.impression)
    static let soapNote = object(.soapNote, extra: [("impressions", .array(impression))])
    static let noteImage = object(.noteImage)
    static let uploadedImage = Schema.object(
        [("id", .text), ("noteId", .text), ("providerId", .text), ("contentType", .text), ("size", .integer()), ("createdAt", .integer())],
        required: ["id", "noteId", "providerId", "contentType", "size", "createdAt"])
    static let editedImpression = Schema.object(
        [("id", .text), ("noteId", .text), ("code", .text), ("description", .text)], required: ["id", "noteId", "code", "description"])
    static let inventoryLine = object(.inventoryLine)
    static let stockLevel = object(.stockLevel)

    static let bill = record(.bills, extra: [("lineItems", .array(lineItem)), ("codingGroups", .array(codingGroup))])
    static let claim = record(.claims, extra: [("insurance", insurance)])
    static let note = record(.notes, optional: [("soapNote", soapNote)])
    static let noteDetail = record(.notes, extra: [("images", .array(noteImage))], optional: [("soapNote", soapNote)])
    static let inventoryChange = record(.inventoryChanges, extra: [("lines", .array(inventoryLine))])

    // Write bodies.
    static let soapFields = ["subjective", "objective", "assessment", "plan"]
    static let soapEdit = Schema.allOf([
        .object(soapFields.map { ($0, .optionalText(max: 20_000)) }, closed: true),
        atLeastOne(of: soapFields),
    ])
    static let impressionEdit = Schema.allOf([
        .object(
            [("code", .string(maxLength: 20, pattern: Schema.whole("[A-Z][0-9A-Z]{1,2}(\\.[0-9A-Z]{1,4})?"))), ("description", .optionalText(max: 2_000))],
            closed: true),
        atLeastOne(of: ["code", "description"]),
    ])
    static let newTask = Schema.object(
        [("title", .requiredText(max: 200)), ("description", .optionalText(max: 5_000)), ("noteId", ValueRule.id(prefix: "not").schema),
         ("providerId", ValueRule.id(prefix: "prv").schema), ("patientId", ValueRule.id(prefix: "pat").schema),
         ("dueDate", ValueRule.date.schema)],
        required: ["title"], closed: true)
    static let taskTransition = Schema.object([("status", .oneOf(["completed", "cancelled"]))], required: ["status"], closed: true)
    static let newEmail = Schema.object(
        [("to", ValueRule.email.schema), ("subject", .requiredText(max: 300)), ("body", .requiredText(max: 100_000)),
         ("patientId", ValueRule.id(prefix: "pat").schema)],
        required: ["to", "subject", "body"], closed: true)
    static let sku = Schema.string(minLength: 1, maxLength: 64, pattern: Schema.whole("[A-Za-z0-9][A-Za-z0-9._-]*"))
    static let productFields: [(String, Schema)] = [
        ("name", .requiredText(max: 200)), ("sku", sku), ("unit", .optionalText(max: 20)),
        ("priceCents", .integer(minimum: 0, maximum: 100_000_000)), ("active", .boolean),
    ]
    static let newProduct = Schema.object(productFields, required: ["name", "sku", "priceCents"], closed: true)
    /// On update every field is optional, `name` too (an update reads it as any other optional string).
    static let productUpdate = Schema.allOf([
        .object([("name", .optionalText(max: 200))] + productFields.dropFirst(), closed: true), atLeastOne(of: productFields.map(\.0)),
    ])
    static let newInventoryChange = Schema.object(
        [("reason", .oneOf(ClinicRules.inventoryReasons)), ("note", .optionalText(max: 2_000)),
         ("lines", .array(
            .object(
                [("productId", ValueRule.id(prefix: "prd").schema), ("quantityDelta", .anyOf([
                    .integer(minimum: -1_000_000, maximum: -1), .integer(minimum: 1, maximum: 1_000_000),
                ]))],
                required: ["productId", "quantityDelta"], closed: true),
            minItems: 1, maxItems: 100))],
        required: ["reason", "lines"], closed: true)

    /// At least one of `fields` is present and not null.
    static func atLeastOne(of fields: [String]) -> Schema {
        .anyOf(fields.map { field in .object([(field, .anyOf([.text, .integer(), .boolean]))], required: [field]) })
    }
}
