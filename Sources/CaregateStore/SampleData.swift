import SQLKit

/// Synthetic clinic data for every collection, with ids that are stable per clinic
/// (the same clinic and index always give the same id).
public struct SampleData: Sendable {
    public struct Counts: Sendable, Equatable {
        public var patients: Int
        public var providers = 5
        public var facilities = 3
        public var products = 10
        public var phoneNumbers = 3
        public init(patients: Int) { self.patients = patients }
    }

    static let firstNames = ["Ava", "Liam", "Maya", "Noah", "Zoe", "Ethan", "Iris", "Omar", "Lena", "Ravi", "Sofia", "Kai", "Nora", "Theo", "Amara", "Jonas"]
    static let lastNames = ["Nguyen", "Garcia", "Okafor", "Smith", "Kowalski", "Haddad", "Tanaka", "Silva", "Moreau", "Patel", "Novak", "Mensah"]
    static let specialties = ["Family Medicine", "Dermatology", "Pediatrics", "Cardiology", "Orthopedics"]
    static let reasons = ["Annual physical", "Follow-up", "Skin check", "Vaccination", "Knee pain", "Medication review"]
    static let cpt = [("99213", "Office visit, established patient", 12_500), ("99203", "Office visit, new patient", 16_000),
                      ("90686", "Influenza vaccine", 4_200), ("11102", "Tangential biopsy of skin", 21_000), ("36415", "Venipuncture", 1_800)]
    static let icd = ["Z00.00", "L57.0", "M25.561", "I10", "E11.9", "J06.9"]
    static let products = [("Nitrile gloves (box)", "GLV-100", "box"), ("Gauze pads 4x4", "GAU-44", "pack"), ("Syringe 3 mL", "SYR-3", "each"),
                           ("Alcohol prep pads", "ALC-200", "box"), ("Bandage strips", "BND-050", "box"), ("Lidocaine 1% 20 mL", "LID-120", "vial"),
                           ("Flu vaccine dose", "VAC-FLU", "dose"), ("Exam table paper", "PPR-21", "roll"), ("Sharps container", "SHP-02", "each"),
                           ("Suture kit", "SUT-KIT", "kit")]

    static let patientsPerTransaction = 500

    let store: ClinicStore
    public init(store: ClinicStore) { self.store = store }

    /// Creates (or, for ids that exist already, keeps) the sample records of one clinic.
    public func generate(organization org: String, counts: Counts) async throws -> [String: Int] {
        let now = Clock.millis()
        @Sendable func id(_ prefix: String, _ collection: String, _ i: Int) -> String { Identifier.derived(prefix, "\(org)/\(collection)/\(i)") }
        let existing = try await store.sql.raw("SELECT COUNT(*) AS n FROM patients WHERE organization_id = \(bind: org)").first(decodingColumn: "n", as: Int.self) ?? 0
        // Written in transactions of at most `patientsPerTransaction` patients, so that a large
        // clinic does not hold SQLite's one write lock for seconds (other writers would time out);
        // ids that exist already are kept, so a run cut short is completed by the next one.
        try await store.database.transaction { db in
            let batch = SampleBatch(db: db, organization: org)
            func insert(_ table: String, _ columns: [String], _ values: [any Encodable & Sendable]) async throws {
                try await batch.insert(table, columns, values)
            }
            func flush() async throws { try await batch.flush() }
            for i in 0..<counts.providers {
                try await insert("providers", ["id", "first_name", "last_name", "specialty", "npi", "email"], [
                    id("prv", "providers", i), Self.firstNames[(i * 7 + 3) % Self.firstNames.count], Self.lastNames[(i * 5 + 1) % Self.lastNames.count],
                    Self.specialties[i % Self.specialties.count], String(1_000_000_000 + i * 7919), "provider\(i + 1)@clinic.example"])
            }
            for i in 0..<counts.facilities {
                try await insert("facilities", ["id", "name", "address", "city", "state", "phone"], [
                    id("fac", "facilities", i), ["Main Street Clinic", "Riverside Office", "North Campus"][i % 3] + (i >= 3 ? " \(i)" : ""),
                    "\(100 + i * 12) Main St", ["Portland", "Salem", "Eugene"][i % 3], "OR", "+1503555\(String(format: "%04d", 100 + i))"])
            }
            for i in 0..<counts.phoneNumbers {
                try await insert("phone_numbers", ["id", "number", "label", "kind"], [
                    id("phn", "phone-numbers", i), "+1503555\(String(format: "%04d", 2000 + i))", ["Front desk", "Billing", "Fax"][i % 3], ["voice", "voice", "fax"][i % 3]])
            }
            for i in 0..<counts.products {
                let p = Self.products[i % Self.products.count]
                let productID = id("prd", "products", i)
                try await insert("products", ["id", "name", "sku", "unit", "price_cents", "active", "created_at", "updated_at"], [
                    productID, p.0, p.1 + (i >= Self.products.count ? "-\(i)" : ""), p.2, Int64(500 + i * 250), true, now, now])
                try await flush()
                if try await db.raw("SELECT product_id FROM stock_levels WHERE organization_id = \(bind: org) AND product_id = \(bind: productID)").first() == nil {
                    try await db.raw("INSERT INTO stock_levels (organization_id, product_id, quantity, updated_at) VALUES (\(bind: org), \(bind: productID), \(bind: Int64(50 + i * 5)), \(bind: now))").run()
                }
            }
            try await flush()
        }
        for chunk in stride(from: 0, to: counts.patients, by: Self.patientsPerTransaction) {
            try await store.database.transaction { db in
                let batch = SampleBatch(db: db, organization: org)
                func insert(_ table: String, _ columns: [String], _ values: [any Encodable & Sendable]) async throws {
                    try await batch.insert(table, columns, values)
                }
                for i in chunk..<min(chunk + Self.patientsPerTransaction, counts.patients) {
                    let first = Self.firstNames[i % Self.firstNames.count], last = Self.lastNames[(i / Self.firstNames.count + i) % Self.lastNames.count]
                    let patient = id("pat", "patients", i)
                    let provider = id("prv", "providers", i % counts.providers)
                    let facility = id("fac", "facilities", i % counts.facilities)
                    try await insert("patients", ["id", "first_name", "last_name", "date_of_birth", "email", "phone", "gender", "created_at"], [
                        patient, first, last, String(format: "%04d-%02d-%02d", 1950 + i % 60, 1 + i % 12, 1 + i % 28),
                        "\(first.lowercased()).\(last.lowercased())\(i)@mail.example", "+1503555\(String(format: "%04d", 3000 + i))", ["female", "male", "other"][i % 3], now])
                    let day = String(format: "2026-%02d-%02d", 1 + i % 12, 1 + i % 28)
                    for k in 0..<2 {
                        try await insert("appointments", ["id", "patient_id", "provider_id", "facility_id", "start_at", "end_at", "status", "reason"], [
                            id("apt", "appointments", i * 2 + k), patient, provider, facility, "\(day)T\(String(format: "%02d", 9 + k * 3)):00:00Z",
                            "\(day)T\(String(format: "%02d", 9 + k * 3)):30:00Z", ["scheduled", "completed", "cancelled", "no_show"][(i + k) % 4],
                            Self.reasons[(i + k) % Self.reasons.count]])
                    }
                    let bill = id("bil", "bills", i)
                    let lines = [Self.cpt[i % Self.cpt.count], Self.cpt[(i + 2) % Self.cpt.count]]
                    let total = Int64(lines.reduce(0) { $0 + $1.2 })
                    try await insert("bills", ["id", "patient_id", "provider_id", "appointment_id", "service_date", "status", "total_cents"], [
                        bill, patient, provider, id("apt", "appointments", i * 2), day, ["open", "paid", "submitted"][i % 3], total])
                    for (position, line) in lines.enumerated() {
                        try await insert("bill_line_items", ["id", "bill_id", "code", "description", "units", "amount_cents", "position"], [
                            id("bli", "bill-lines", i * 2 + position), bill, line.0, line.1, Int64(1), Int64(line.2), Int64(position)])
                    }
                    try await insert("bill_coding_groups", ["id", "bill_id", "code_system", "codes", "position"], [
                        id("bcg", "coding-cpt", i), bill, "CPT", lines.map(\.0).joined(separator: " "), Int64(0)])
                    try await insert("bill_coding_groups", ["id", "bill_id", "code_system", "codes", "position"], [
                        id("bcg", "coding-icd", i), bill, "ICD-10-CM", Self.icd[i % Self.icd.count], Int64(1)])
                    try await insert("claims", ["id", "patient_id", "bill_id", "status", "submitted_on", "total_cents", "payer_name", "plan_name", "member_id", "group_number"], [
                        id("clm", "claims", i), patient, bill, ["submitted", "accepted", "denied", "paid"][i % 4], day, total,
                        ["Cascade Health Plan", "Evergreen Mutual", "Pacific Care"][i % 3], ["PPO Gold", "HMO Silver", "EPO Bronze"][i % 3],
                        "M\(String(format: "%08d", 10_000 + i * 37))", "G\(String(format: "%05d", 500 + i % 40))"])
                    let note = id("not", "notes", i)
                    try await insert("notes", ["id", "patient_id", "provider_id", "visit_date", "title", "subjective", "objective", "assessment", "plan", "updated_at"], [
                        note, patient, provider, day, Self.reasons[i % Self.reasons.count],
                        "Patient reports \(["mild fatigue", "a new mole", "knee pain on stairs", "no complaints"][i % 4]).",
                        "BP \(110 + i % 30)/\(70 + i % 15), HR \(60 + i % 25).",
                        ["Stable", "Benign-appearing lesion", "Patellofemoral pain", "Healthy adult"][i % 4],
                        ["Return in 12 months", "Biopsy if changes", "Physical therapy", "Routine screening"][i % 4], now])
                    for k in 0..<2 {
                        try await insert("note_impressions", ["id", "note_id", "code", "description", "position", "updated_at"], [
                            id("imp", "impressions", i * 2 + k), note, Self.icd[(i + k) % Self.icd.count], ["Primary impression", "Secondary impression"][k], Int64(k), now])
                    }
                    for resource in Self.clinicalResources(patient: patient, encounter: id("apt", "appointments", i * 2), day: day, index: i, id: { id($0, "clinical", $1) }) {
                        try await insert("clinical_resources", ["id", "resource_type", "patient_id", "category", "code", "code_system", "status", "recorded_at",
                                                                "version", "updated_at", "content"], [
                            resource.id, resource.type, patient, resource.category, resource.code, resource.system, resource.status, resource.date,
                            Int64(1), now, String(decoding: resource.content.serialized(), as: UTF8.self)])
                    }
                    try await insert("tasks", ["id", "title", "description", "status", "note_id", "provider_id", "patient_id", "due_date", "created_at", "updated_at"], [
                        id("tsk", "tasks", i), "Follow up with \(first) \(last)", "Call about results", ["open", "completed", "cancelled"][i % 3], note, provider, patient, day, now, now])
                    try await insert("emails", ["id", "patient_id", "direction", "from_address", "to_address", "subject", "body", "status", "created_at"], [
                        id("eml", "emails", i), patient, i % 2 == 0 ? "outbound" : "inbound",
                        i % 2 == 0 ? "frontdesk@clinic.example" : "\(first.lowercased())\(i)@mail.example",
                        i % 2 == 0 ? "\(first.lowercased())\(i)@mail.example" : "frontdesk@clinic.example",
                        i % 2 == 0 ? "Appointment reminder" : "Question about my visit", "Hello \(first), …", i % 2 == 0 ? "sent" : "received", now])
                }
                try await batch.flush()
            }
        }
        try await store.database.transaction { db in
            let batch = SampleBatch(db: db, organization: org)
            func insert(_ table: String, _ columns: [String], _ values: [any Encodable & Sendable]) async throws {
                try await batch.insert(table, columns, values)
            }
            for i in 0..<5 {
                let change = id("inv", "inventory-changes", i)
                try await insert("inventory_changes", ["id", "reason", "note", "created_at"], [change, ["restock", "usage", "adjustment"][i % 3], "Sample change \(i + 1)", now])
                try await insert("inventory_change_lines", ["id", "change_id", "product_id", "quantity_delta", "position"], [
                    id("icl", "inventory-lines", i), change, id("prd", "products", i % counts.products), Int64(0), Int64(0)])
            }
            try await batch.flush()
        }
        return ["patients": max(existing, counts.patients), "appointments": counts.patients * 2, "providers": counts.providers,
                "facilities": counts.facilities, "bills": counts.patients, "claims": counts.patients, "notes": counts.patients,
                "tasks": counts.patients, "emails": counts.patients, "phoneNumbers": counts.phoneNumbers, "products": counts.products,
                "inventoryChanges": 5, "observations": counts.patients * 4, "conditions": counts.patients, "allergyIntolerances": counts.patients]
    }

    // MARK: Clinical resources (FHIR)

    struct ClinicalSample {
        var id: String
        var type: String
        var category: String
        var code: String
        var system: String
        var status: String
        var date: String
        var content: JSONValue
    }

    static let loinc = "http://loinc.org"
    static let ucum = "http://unitsofmeasure.org"
    static let observationCategory = "http://terminology.hl7.org/CodeSystem/observation-category"

    /// Per patient: two vital signs and two laboratory results (LOINC), a condition (ICD-10-CM)
    /// and an allergy (SNOMED CT), all valid FHIR R4.
    static func clinicalResources(patient: String, encounter: String, day: String, index i: Int, id: (String, Int) -> String) -> [ClinicalSample] {
        let at = "\(day)T09:00:00Z"
        func observation(_ n: Int, category: (String, String), code: (String, String), value: JSONValue, unit: (String, String)) -> ClinicalSample {
            let obs = id("obs", i * 4 + n)
            return ClinicalSample(id: obs, type: "Observation", category: category.0, code: code.0, system: loinc, status: "final", date: at, content: [
                "resourceType": "Observation", "id": .string(FHIRID.fhir(obs)), "status": "final",
                "category": [["coding": [["system": .string(observationCategory), "code": .string(category.0), "display": .string(category.1)]]]],
                "code": ["coding": [["system": .string(loinc), "code": .string(code.0), "display": .string(code.1)]], "text": .string(code.1)],
                "subject": ["reference": .string(FHIRID.reference("Patient", patient))],
                "encounter": ["reference": .string(FHIRID.reference("Encounter", encounter))], "effectiveDateTime": .string(at),
                "valueQuantity": ["value": value, "unit": .string(unit.0), "system": .string(ucum), "code": .string(unit.1)],
            ])
        }
        let vital = ("vital-signs", "Vital Signs"), lab = ("laboratory", "Laboratory")
        let conditions = [("Z00.00", "Encounter for general adult medical examination"), ("L57.0", "Actinic keratosis"),
                          ("M25.561", "Pain in right knee"), ("I10", "Essential (primary) hypertension"), ("E11.9", "Type 2 diabetes mellitus"),
                          ("J06.9", "Acute upper respiratory infection")]
        let allergies = [("91936005", "Allergy to penicillin", "medication"), ("91935009", "Allergy to peanut", "food"),
                         ("418689008", "Allergy to grass pollen", "environment")]
        let condition = conditions[i % conditions.count], allergy = allergies[i % allergies.count]
        let conditionID = id("cnd", i), allergyID = id("alg", i)
        let clinicalStatus = i % 4 == 0 ? "resolved" : "active"
        let conditionCategory = i % 2 == 0 ? ("encounter-diagnosis", "Encounter Diagnosis") : ("problem-list-item", "Problem List Item")
        return [
            observation(0, category: vital, code: ("8867-4", "Heart rate"), value: .int(Int64(60 + i % 25)), unit: ("beats/minute", "/min")),
            observation(1, category: vital, code: ("29463-7", "Body weight"), value: .number("\(55 + i % 40).\(i % 10)"), unit: ("kg", "kg")),
            observation(2, category: lab, code: ("2339-0", "Glucose [Mass/volume] in Blood"), value: .int(Int64(80 + i % 60)), unit: ("mg/dL", "mg/dL")),
            observation(3, category: lab, code: ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood"), value: .number("\(5 + i % 3).\(i % 10)"), unit: ("%", "%")),
            ClinicalSample(id: conditionID, type: "Condition", category: conditionCategory.0, code: condition.0, system: "http://hl7.org/fhir/sid/icd-10-cm",
                           status: clinicalStatus, date: at, content: [
                "resourceType": "Condition", "id": .string(FHIRID.fhir(conditionID)),
                "clinicalStatus": ["coding": [["system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": .string(clinicalStatus)]]],
                "verificationStatus": ["coding": [["system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"]]],
                "category": [["coding": [["system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": .string(conditionCategory.0),
                                          "display": .string(conditionCategory.1)]]]],
                "code": ["coding": [["system": "http://hl7.org/fhir/sid/icd-10-cm", "code": .string(condition.0), "display": .string(condition.1)]],
                         "text": .string(condition.1)],
                "subject": ["reference": .string(FHIRID.reference("Patient", patient))],
                "encounter": ["reference": .string(FHIRID.reference("Encounter", encounter))], "recordedDate": .string(at),
            ]),
            ClinicalSample(id: allergyID, type: "AllergyIntolerance", category: allergy.2, code: allergy.0, system: "http://snomed.info/sct",
                           status: "active", date: at, content: [
                "resourceType": "AllergyIntolerance", "id": .string(FHIRID.fhir(allergyID)),
                "clinicalStatus": ["coding": [["system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"]]],
                "verificationStatus": ["coding": [["system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "code": "confirmed"]]],
                "type": "allergy", "category": [.string(allergy.2)], "criticality": "low",
                "code": ["coding": [["system": "http://snomed.info/sct", "code": .string(allergy.0), "display": .string(allergy.1)]], "text": .string(allergy.1)],
                "patient": ["reference": .string(FHIRID.reference("Patient", patient))], "recordedDate": .string(at),
            ]),
        ]
    }
}

/// Rows of one transaction, written in multi-row INSERTs, each table's in the order first
/// written, so that a record is always written before the records that name it; ids that exist
/// already are kept (ON CONFLICT DO NOTHING).
private final class SampleBatch {
    let db: any SQLDatabase
    let organization: String
    private var order: [String] = []
    private var pending: [String: (columns: [String], rows: [[any Encodable & Sendable]])] = [:]
    private var pendingRows = 0

    init(db: any SQLDatabase, organization: String) {
        self.db = db
        self.organization = organization
    }

    func insert(_ table: String, _ columns: [String], _ values: [any Encodable & Sendable]) async throws {
        if pending[table] == nil {
            order.append(table)
            pending[table] = (columns, [])
        }
        pending[table]!.rows.append(values)
        pendingRows += 1
        if pendingRows >= 400 { try await flush() }
    }

    func flush() async throws {
        for table in order {
            guard let batch = pending[table], !batch.rows.isEmpty else { continue }
            var query: SQLQueryString = "INSERT INTO \(ident: table) (organization_id, \(unsafeRaw: batch.columns.joined(separator: ", "))) VALUES "
            for (r, row) in batch.rows.enumerated() {
                query += r == 0 ? "(\(bind: organization)" : ", (\(bind: organization)"
                for value in row { query += ", \(bind: value)" }
                query += ")"
            }
            query += " ON CONFLICT (id) DO NOTHING"
            try await db.raw(query).run()
            pending[table]!.rows.removeAll(keepingCapacity: true)
        }
        pendingRows = 0
    }
}

