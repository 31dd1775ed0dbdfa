import SQLKit

/// One list/detail collection of the clinic data API: its table, the columns it shows
/// (and their JSON names) and the filters its list accepts.
public struct ClinicCollection: Sendable {
    public typealias Kind = RowShape.Kind

    /// How a query parameter narrows a list.
    public enum Filter: Sendable {
        /// Column equals the value (ids, statuses), optionally case-folded.
        case equals(String, caseInsensitive: Bool = false)
        /// Any of the columns contains the value, case-insensitively.
        case contains([String])
        /// Column (an ISO date or date-time as text) on or after the date.
        case dateFrom(String)
        /// Column on or before the end of the date.
        case dateTo(String)
        case boolean(String)
    }

    public let name: String
    public let idPrefix: String
    let table: String
    /// The record's shape: `id`, then the collection's fields.
    public let shape: RowShape
    public let filters: [String: Filter]

    init(_ name: String, idPrefix: String, table: String, fields: [(String, String, Kind)], filters: [String: Filter] = [:]) {
        self.name = name
        self.idPrefix = idPrefix
        self.table = table
        self.shape = RowShape([("id", "id", .text)] + fields.map { ($0.0, $0.1, $0.2) })
        self.filters = filters
    }

    var columnList: String { shape.columnList }

    func json(_ row: any SQLRow) throws -> JSONValue { try shape.json(row) }
}

extension ClinicCollection {
    public static let patients = ClinicCollection(
        "patients", idPrefix: "pat", table: "patients",
        fields: [("first_name", "firstName", .text), ("last_name", "lastName", .text), ("date_of_birth", "dateOfBirth", .text),
                 ("email", "email", .optionalText), ("phone", "phone", .optionalText), ("gender", "gender", .optionalText)],
        filters: ["name": .contains(["first_name", "last_name"]), "dateOfBirth": .equals("date_of_birth"),
                  "email": .equals("email", caseInsensitive: true), "phone": .equals("phone")])

    public static let providers = ClinicCollection(
        "providers", idPrefix: "prv", table: "providers",
        fields: [("first_name", "firstName", .text), ("last_name", "lastName", .text), ("specialty", "specialty", .text),
                 ("npi", "npi", .text), ("email", "email", .text)])

    public static let facilities = ClinicCollection(
        "facilities", idPrefix: "fac", table: "facilities",
        fields: [("name", "name", .text), ("address", "address", .text), ("city", "city", .text), ("state", "state", .text),
                 ("phone", "phone", .text)])

    public static let appointments = ClinicCollection(
        "appointments", idPrefix: "apt", table: "appointments",
        fields: [("patient_id", "patientId", .text), ("provider_id", "providerId", .text), ("facility_id", "facilityId", .text),
                 ("start_at", "startAt", .text), ("end_at", "endAt", .text), ("status", "status", .text), ("reason", "reason", .text)],
        filters: ["startDate": .dateFrom("start_at"), "endDate": .dateTo("start_at"), "providerId": .equals("provider_id"),
                  "patientId": .equals("patient_id"), "facilityId": .equals("facility_id"), "status": .equals("status")])

    public static let bills = ClinicCollection(
        "bills", idPrefix: "bil", table: "bills",
        fields: [("patient_id", "patientId", .text), ("provider_id", "providerId", .text), ("appointment_id", "appointmentId", .optionalText),
                 ("service_date", "serviceDate", .text), ("status", "status", .text), ("total_cents", "totalCents", .int)],
        filters: ["patientId": .equals("patient_id"), "status": .equals("status")])

    public static let claims = ClinicCollection(
        "claims", idPrefix: "clm", table: "claims",
        fields: [("patient_id", "patientId", .text), ("bill_id", "billId", .text), ("status", "status", .text),
                 ("submitted_on", "submittedOn", .text), ("total_cents", "totalCents", .int)],
        filters: ["patientId": .equals("patient_id"), "status": .equals("status")])

    public static let notes = ClinicCollection(
        "notes", idPrefix: "not", table: "notes",
        fields: [("patient_id", "patientId", .text), ("provider_id", "providerId", .text), ("visit_date", "visitDate", .text),
                 ("title", "title", .text)],
        filters: ["patientId": .equals("patient_id"), "providerId": .equals("provider_id")])

    public static let tasks = ClinicCollection(
        "tasks", idPrefix: "tsk", table: "tasks",
        fields: [("title", "title", .text), ("description", "description", .text), ("status", "status", .text),
                 ("note_id", "noteId", .optionalText), ("provider_id", "providerId", .optionalText), ("patient_id", "patientId", .optionalText),
                 ("due_date", "dueDate", .optionalText), ("created_at", "createdAt", .int), ("updated_at", "updatedAt", .int)],
        filters: ["status": .equals("status"), "noteId": .equals("note_id"), "providerId": .equals("provider_id"),
                  "patientId": .equals("patient_id"), "startDate": .dateFrom("due_date"), "endDate": .dateTo("due_date")])

    public static let emails = ClinicCollection(
        "emails", idPrefix: "eml", table: "emails",
        fields: [("patient_id", "patientId", .optionalText), ("direction", "direction", .text), ("from_address", "from", .text),
                 ("to_address", "to", .text), ("subject", "subject", .text), ("body", "body", .text), ("status", "status", .text),
                 ("created_at", "createdAt", .int)],
        filters: ["status": .equals("status"), "patientId": .equals("patient_id"), "direction": .equals("direction")])

    public static let phoneNumbers = ClinicCollection(
        "phone-numbers", idPrefix: "phn", table: "phone_numbers",
        fields: [("number", "number", .text), ("label", "label", .text), ("kind", "type", .text)])

    public static let products = ClinicCollection(
        "products", idPrefix: "prd", table: "products",
        fields: [("name", "name", .text), ("sku", "sku", .text), ("unit", "unit", .text), ("price_cents", "priceCents", .int),
                 ("active", "active", .bool), ("created_at", "createdAt", .int), ("updated_at", "updatedAt", .int)],
        filters: ["name": .contains(["name"]), "sku": .equals("sku"), "active": .boolean("active")])

    public static let inventoryChanges = ClinicCollection(
        "inventory-changes", idPrefix: "inv", table: "inventory_changes",
        fields: [("reason", "reason", .text), ("note", "note", .text), ("created_at", "createdAt", .int)],
        filters: ["reason": .equals("reason")])
}
