import Foundation
import SQLKit

/// The FHIR R4 resource types Caregate serves from the clinic database (SPEC §8).
public enum FHIRType: String, CaseIterable, Sendable {
    case Patient, Practitioner, Location, Organization, Appointment, Encounter, Observation, Condition, AllergyIntolerance

    /// Stored as FHIR JSON in `clinical_resources` and writable through FHIR; the other
    /// types are views of the records `/v3` serves, read-only here.
    public var isClinical: Bool { self == .Observation || self == .Condition || self == .AllergyIntolerance }

    /// Part of a patient's compartment; Practitioner, Location and Organization are not.
    public var inPatientCompartment: Bool {
        switch self {
        case .Practitioner, .Location, .Organization: false
        default: true
        }
    }

    /// The prefix of the ids the store gives new resources of the type.
    var idPrefix: String {
        switch self {
        case .Patient: "pat"
        case .Practitioner: "prv"
        case .Location: "fac"
        case .Organization: "org"
        case .Appointment, .Encounter: "apt"
        case .Observation: "obs"
        case .Condition: "cnd"
        case .AllergyIntolerance: "alg"
        }
    }
}

/// Caregate's record ids (`pat_<hex>`, as `/v3` shows them) as FHIR logical ids, which R4
/// allows only `A-Z a-z 0-9 - .` (`pat-<hex>`). The FHIR API, launch contexts and tokens speak
/// the FHIR form; the store converts at its edge.
public enum FHIRID {
    /// The FHIR id of a record id (idempotent).
    public static func fhir(_ id: String) -> String { id.replacingOccurrences(of: "_", with: "-") }
    /// The record id of a FHIR id (idempotent).
    public static func record(_ id: String) -> String { id.replacingOccurrences(of: "-", with: "_") }
    /// `Type/<FHIR id>` of a record.
    public static func reference(_ type: String, _ recordID: String) -> String { "\(type)/\(fhir(recordID))" }
}

/// A search condition on one of the fields the FHIR search parameters map to.
public struct FHIRFilter: Sendable, Hashable {
    /// What a FHIR search parameter reads.
    public enum Field: String, Sendable, Hashable {
        /// The logical id.
        case id
        /// The patient whose compartment holds the resource (a Patient's own id).
        case patient
        case category
        case code
        /// The FHIR status (`final`, `booked`, `active` …).
        case status
        /// The resource's clinical date: effective, recorded or start, as an ISO instant.
        case date
        /// When the record was last written (milliseconds; see ``FHIRStore/tracksLastUpdated(_:)``).
        case lastUpdated
    }

    public enum Test: Sendable, Hashable {
        /// Equal to one of the values.
        case anyOf([String])
        /// A code, with its system when one was given (`http://loinc.org|8867-4`).
        case codes([Coding])
        /// On or after this instant.
        case onOrAfter(String)
        /// Before this instant.
        case before(String)
        /// Within [from, until).
        case within(from: String, until: String)
        /// Outside [from, until).
        case outside(from: String, until: String)
        /// Matches nothing (a value that cannot occur, such as a category of a foreign system).
        case nothing
        /// Written at or after this time (milliseconds since 1970).
        case writtenSince(Int64)
    }

    public struct Coding: Sendable, Hashable {
        public var system: String?
        public var code: String
        public init(system: String?, code: String) {
            self.system = system
            self.code = code
        }
    }

    public var field: Field
    public var test: Test
    public init(_ field: Field, _ test: Test) {
        self.field = field
        self.test = test
    }
}

/// The clinic data as FHIR R4 resources: the records `/v3` serves (patients, providers,
/// facilities, the clinic, appointments) as their FHIR types, and the clinical resources
/// (Observation, Condition, AllergyIntolerance) stored as FHIR JSON. Every query is scoped to
/// one organization; access rules arrive as filters, so a search returns only what the
/// caller may see and a count never includes anything else.
public struct FHIRStore: Sendable {
    let database: Database
    public init(database: Database) { self.database = database }
    var sql: any SQLDatabase { database.sql }

    public struct Page: Sendable {
        public var resources: [JSONValue]
        public var total: Int
    }

    /// One page of the resources of `type` matching every filter of `filters` and, unless
    /// `access` is nil, every filter of at least one element of `access` (an empty `access`
    /// matches nothing).
    public func search(
        _ type: FHIRType, organization: String, filters: [FHIRFilter], access: [[FHIRFilter]]?, count: Int, offset: Int
    ) async throws -> Page {
        let table = Table(type)
        var conditions: SQLQueryString = "\(unsafeRaw: table.organizationColumn) = \(bind: organization)"
        if type.isClinical { conditions += " AND resource_type = \(bind: type.rawValue)" }
        for filter in filters { conditions += " AND " + table.condition(filter) }
        if let access {
            guard let reachable = table.condition(access) else { return Page(resources: [], total: 0) }
            conditions += " AND " + reachable
        }
        let total = try await sql.raw("SELECT COUNT(*) AS n FROM \(ident: table.name) WHERE " + conditions).first(decodingColumn: "n", as: Int.self) ?? 0
        guard count > 0 else { return Page(resources: [], total: total) }
        let rows = try await sql.raw(
            "SELECT \(unsafeRaw: table.columns) FROM \(ident: table.name) WHERE " + conditions
                + " ORDER BY id LIMIT \(literal: count) OFFSET \(literal: offset)").all()
        return Page(resources: try rows.map { try table.resource($0, organization: organization) }, total: total)
    }

    /// One resource, if it exists in this organization and matches `access` (see ``search``).
    public func read(_ type: FHIRType, organization: String, id: String, access: [[FHIRFilter]]?) async throws -> JSONValue? {
        try await search(type, organization: organization, filters: [FHIRFilter(.id, .anyOf([id]))], access: access, count: 1, offset: 0).resources.first
    }

    /// Whether the store knows when records of `type` were last written (clinical resources;
    /// patients by their creation): `_since` can filter only those.
    public func tracksLastUpdated(_ type: FHIRType) -> Bool { type.isClinical || type == .Patient }

    /// Whether a patient with this id exists in this organization.
    public func patientExists(organization: String, id: String) async throws -> Bool {
        try await sql.raw("SELECT id FROM patients WHERE organization_id = \(bind: organization) AND id = \(bind: FHIRID.record(id))").first() != nil
    }

    // MARK: Clinical resources

    /// The searchable fields of a clinical resource, read from its JSON by the caller.
    public struct ClinicalIndex: Sendable {
        public var patient: String
        public var category: String
        public var code: String
        public var codeSystem: String
        public var status: String
        public var date: String
        public init(patient: String, category: String, code: String, codeSystem: String, status: String, date: String) {
            self.patient = patient
            self.category = category
            self.code = code
            self.codeSystem = codeSystem
            self.status = status
            self.date = date
        }
    }

    /// Stores a new clinical resource under a new id; returns it as read back.
    public func create(_ type: FHIRType, organization: String, resource: JSONValue, index: ClinicalIndex) async throws -> JSONValue {
        try await writing { try await $0.create(type, organization: organization, resource: resource, index: index) }
    }

    /// Replaces a clinical resource that exists and matches `access`; nil when there is none.
    public func update(
        _ type: FHIRType, organization: String, id: String, resource: JSONValue, index: ClinicalIndex, access: [[FHIRFilter]]?
    ) async throws -> JSONValue? {
        try await writing { try await $0.update(type, organization: organization, id: id, resource: resource, index: index, access: access) }
    }

    /// Deletes a clinical resource that exists and matches `access`; whether there was one.
    public func delete(_ type: FHIRType, organization: String, id: String, access: [[FHIRFilter]]?) async throws -> Bool {
        try await writing { try await $0.delete(type, organization: organization, id: id, access: access) }
    }

    /// Runs several writes in one transaction (a FHIR transaction Bundle): all or none of them.
    public func writing<R: Sendable>(_ body: @escaping @Sendable (FHIRWrites) async throws -> R) async throws -> R {
        try await database.transaction { db in try await body(FHIRWrites(db: db)) }
    }

    /// The stored JSON: without `meta`, which the store writes on every answer.
    static func stored(_ resource: JSONValue) -> JSONValue {
        guard case .object(let pairs) = resource else { return resource }
        return .object(pairs.filter { $0.0 != "meta" })
    }
}

/// The clinical writes of one transaction (``FHIRStore/writing(_:)``).
public struct FHIRWrites: Sendable {
    let db: any SQLDatabase

    /// Stores a new clinical resource under a new id; returns it as read back.
    public func create(_ type: FHIRType, organization: String, resource: JSONValue, index: FHIRStore.ClinicalIndex) async throws -> JSONValue {
        precondition(type.isClinical)
        let id = Identifier.random(type.idPrefix)
        var resource = resource
        resource.set("id", .string(FHIRID.fhir(id)))
        let now = Clock.millis()
        try await db.raw("""
            INSERT INTO clinical_resources (id, organization_id, resource_type, patient_id, category, code, code_system, status, recorded_at,
              version, updated_at, content)
            VALUES (\(bind: id), \(bind: organization), \(bind: type.rawValue), \(bind: FHIRID.record(index.patient)), \(bind: index.category), \(bind: index.code),
              \(bind: index.codeSystem), \(bind: index.status), \(bind: index.date), 1, \(bind: now),
              \(bind: String(decoding: FHIRStore.stored(resource).serialized(), as: UTF8.self)))
            """).run()
        return Table(type).render(resource, version: 1, updatedAt: now)
    }

    /// Replaces a clinical resource that exists and matches `access`; nil when there is none.
    public func update(
        _ type: FHIRType, organization: String, id: String, resource: JSONValue, index: FHIRStore.ClinicalIndex, access: [[FHIRFilter]]?
    ) async throws -> JSONValue? {
        precondition(type.isClinical)
        var resource = resource
        resource.set("id", .string(FHIRID.fhir(id)))
        let content = String(decoding: FHIRStore.stored(resource).serialized(), as: UTF8.self)
        let now = Clock.millis()
        guard try await isReachable(type, organization: organization, id: id, access: access) else { return nil }
        let row = try await db.raw("""
            UPDATE clinical_resources SET patient_id = \(bind: FHIRID.record(index.patient)), category = \(bind: index.category), code = \(bind: index.code),
              code_system = \(bind: index.codeSystem), status = \(bind: index.status), recorded_at = \(bind: index.date),
              version = version + 1, updated_at = \(bind: now), content = \(bind: content)
            WHERE organization_id = \(bind: organization) AND resource_type = \(bind: type.rawValue) AND id = \(bind: FHIRID.record(id))
            RETURNING version
            """).first()
        guard let version = try row?.decode(column: "version", as: Int64.self) else { return nil }
        return Table(type).render(resource, version: version, updatedAt: now)
    }

    /// Deletes a clinical resource that exists and matches `access`; whether there was one.
    public func delete(_ type: FHIRType, organization: String, id: String, access: [[FHIRFilter]]?) async throws -> Bool {
        precondition(type.isClinical)
        guard try await isReachable(type, organization: organization, id: id, access: access) else { return false }
        try await db.raw("""
            DELETE FROM clinical_resources WHERE organization_id = \(bind: organization) AND resource_type = \(bind: type.rawValue) AND id = \(bind: FHIRID.record(id))
            """).run()
        return true
    }

    /// Whether the resource exists and matches `access`.
    private func isReachable(_ type: FHIRType, organization: String, id: String, access: [[FHIRFilter]]?) async throws -> Bool {
        let table = Table(type)
        var conditions: SQLQueryString = "organization_id = \(bind: organization) AND resource_type = \(bind: type.rawValue) AND id = \(bind: FHIRID.record(id))"
        if let access {
            guard let reachable = table.condition(access) else { return false }
            conditions += " AND " + reachable
        }
        return try await db.raw("SELECT id FROM clinical_resources WHERE " + conditions).first() != nil
    }
}

/// Where a FHIR type lives and how its rows become resources.
private struct Table {
    let type: FHIRType

    init(_ type: FHIRType) { self.type = type }

    var name: String {
        switch type {
        case .Patient: "patients"
        case .Practitioner: "providers"
        case .Location: "facilities"
        case .Organization: "organizations"
        case .Appointment, .Encounter: "appointments"
        case .Observation, .Condition, .AllergyIntolerance: "clinical_resources"
        }
    }

    /// The clinic is its own row; every other record names its clinic.
    var organizationColumn: String { type == .Organization ? "id" : "organization_id" }

    var columns: String {
        switch type {
        case .Patient: "id, organization_id, first_name, last_name, date_of_birth, email, phone, gender"
        case .Practitioner: "id, first_name, last_name, specialty, npi, email"
        case .Location: "id, organization_id, name, address, city, state, phone"
        case .Organization: "id, name"
        case .Appointment, .Encounter: "id, patient_id, provider_id, facility_id, start_at, end_at, status, reason"
        case .Observation, .Condition, .AllergyIntolerance: "id, version, updated_at, content"
        }
    }

    func column(_ field: FHIRFilter.Field) -> String? {
        switch (field, type) {
        case (.id, _): "id"
        case (.patient, .Patient): "id"
        case (.patient, .Appointment), (.patient, .Encounter): "patient_id"
        case (.date, .Appointment), (.date, .Encounter): "start_at"
        case (.status, .Appointment), (.status, .Encounter): "status"
        case (.patient, _) where type.isClinical: "patient_id"
        case (.category, _) where type.isClinical: "category"
        case (.code, _) where type.isClinical: "code"
        case (.status, _) where type.isClinical: "status"
        case (.date, _) where type.isClinical: "recorded_at"
        case (.lastUpdated, .Patient): "created_at"
        case (.lastUpdated, _) where type.isClinical: "updated_at"
        default: nil
        }
    }

    /// Stored appointment statuses by the FHIR status each type shows for them.
    func storedStatuses(_ fhirStatus: String) -> [String] {
        switch type {
        case .Appointment: Self.appointmentStatus.filter { $0.value == fhirStatus }.map(\.key).sorted()
        case .Encounter: Self.encounterStatus.filter { $0.value == fhirStatus }.map(\.key).sorted()
        default: [fhirStatus]
        }
    }

    static let appointmentStatus = ["scheduled": "booked", "completed": "fulfilled", "cancelled": "cancelled", "no_show": "noshow"]
    static let encounterStatus = ["scheduled": "planned", "completed": "finished", "cancelled": "cancelled", "no_show": "cancelled"]

    /// Access filters as one condition: any element, each of its filters (nil when there is no element: nothing is reachable).
    func condition(_ access: [[FHIRFilter]]) -> SQLQueryString? {
        guard !access.isEmpty else { return nil }
        let alternatives = access.map { all -> SQLQueryString in
            all.isEmpty ? "1 = 1" : "(" + all.dropFirst().reduce(condition(all[0])) { $0 + " AND " + condition($1) } + ")"
        }
        return "(" + alternatives.dropFirst().reduce(alternatives[0]) { $0 + " OR " + $1 } + ")"
    }

    func condition(_ filter: FHIRFilter) -> SQLQueryString {
        // A field the type does not have matches nothing: a constraint that cannot be checked must not widen.
        guard let column = column(filter.field) else { return "1 = 0" }
        switch filter.test {
        case .nothing:
            return "1 = 0"
        case .anyOf(let values):
            let stored = switch filter.field {
            case .status: values.flatMap(storedStatuses)
            case .id, .patient: values.map(FHIRID.record)
            default: values
            }
            guard !stored.isEmpty else { return "1 = 0" }
            let list = stored.dropFirst().reduce(SQLQueryString("\(bind: stored[0])")) { $0 + ", " + SQLQueryString("\(bind: $1)") }
            return "\(ident: column) IN (" + list + ")"
        case .codes(let codings):
            guard !codings.isEmpty else { return "1 = 0" }
            let parts = codings.map { coding -> SQLQueryString in
                if let system = coding.system, filter.field == .code {
                    return "(\(ident: column) = \(bind: coding.code) AND code_system = \(bind: system))"
                }
                return "\(ident: column) = \(bind: coding.code)"
            }
            return "(" + parts.dropFirst().reduce(parts[0]) { $0 + " OR " + $1 } + ")"
        case .writtenSince(let millis):
            return "\(ident: column) >= \(bind: millis)"
        case .onOrAfter(let instant):
            return "\(ident: column) >= \(bind: instant)"
        // A resource without a searched date (stored as '') matches no date filter: `before` and
        // `outside` would otherwise take '' for the earliest date of all.
        case .before(let instant):
            return "(\(ident: column) <> '' AND \(ident: column) < \(bind: instant))"
        case .within(let from, let until):
            return "(\(ident: column) >= \(bind: from) AND \(ident: column) < \(bind: until))"
        case .outside(let from, let until):
            return "(\(ident: column) <> '' AND (\(ident: column) < \(bind: from) OR \(ident: column) >= \(bind: until)))"
        }
    }

    func resource(_ row: any SQLRow, organization: String) throws -> JSONValue {
        func text(_ column: String) throws -> String { try row.decode(column: column, as: String.self) }
        func id() throws -> JSONValue { .string(FHIRID.fhir(try text("id"))) }
        func ref(_ type: String, _ column: String) throws -> JSONValue { ["reference": .string(FHIRID.reference(type, try text(column)))] }
        let clinic: JSONValue = ["reference": .string(FHIRID.reference("Organization", organization))]
        func optional(_ column: String) throws -> String? { try row.decodeNil(column: column) ? nil : try text(column) }
        switch type {
        case .Patient:
            var telecom: [JSONValue] = []
            if let phone = try optional("phone") { telecom.append(["system": "phone", "value": .string(phone), "use": "mobile"]) }
            if let email = try optional("email") { telecom.append(["system": "email", "value": .string(email)]) }
            var resource: JSONValue = [
                "resourceType": "Patient", "id": try id(), "active": true,
                "name": [["use": "official", "family": .string(try text("last_name")), "given": [.string(try text("first_name"))]]],
            ]
            if !telecom.isEmpty { resource.set("telecom", .array(telecom)) }
            if let gender = try optional("gender") { resource.set("gender", .string(["female", "male", "other"].contains(gender) ? gender : "unknown")) }
            resource.set("birthDate", .string(try text("date_of_birth")))
            resource.set("managingOrganization", clinic)
            return resource
        case .Practitioner:
            return [
                "resourceType": "Practitioner", "id": try id(), "active": true,
                "identifier": [["system": "http://hl7.org/fhir/sid/us-npi", "value": .string(try text("npi"))]],
                "name": [["use": "official", "family": .string(try text("last_name")), "given": [.string(try text("first_name"))], "prefix": ["Dr."]]],
                "telecom": [["system": "email", "value": .string(try text("email")), "use": "work"]],
                "qualification": [["code": ["text": .string(try text("specialty"))]]],
            ]
        case .Location:
            return [
                "resourceType": "Location", "id": try id(), "status": "active", "name": .string(try text("name")),
                "telecom": [["system": "phone", "value": .string(try text("phone")), "use": "work"]],
                "address": ["line": [.string(try text("address"))], "city": .string(try text("city")), "state": .string(try text("state")), "country": "US"],
                "managingOrganization": clinic,
            ]
        case .Organization:
            return ["resourceType": "Organization", "id": try id(), "active": true, "name": .string(try text("name"))]
        case .Appointment:
            let status = try text("status")
            return [
                "resourceType": "Appointment", "id": try id(), "status": .string(Self.appointmentStatus[status] ?? "proposed"),
                "description": .string(try text("reason")), "start": .string(try text("start_at")), "end": .string(try text("end_at")),
                "participant": [
                    ["actor": try ref("Patient", "patient_id"), "status": "accepted"],
                    ["actor": try ref("Practitioner", "provider_id"), "status": "accepted"],
                    ["actor": try ref("Location", "facility_id"), "status": "accepted"],
                ],
            ]
        case .Encounter:
            let status = try text("status")
            return [
                "resourceType": "Encounter", "id": try id(), "status": .string(Self.encounterStatus[status] ?? "unknown"),
                "class": ["system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"],
                "subject": try ref("Patient", "patient_id"),
                "participant": [["individual": try ref("Practitioner", "provider_id")]],
                "appointment": [try ref("Appointment", "id")],
                "period": ["start": .string(try text("start_at")), "end": .string(try text("end_at"))],
                "reasonCode": [["text": .string(try text("reason"))]],
                "location": [["location": try ref("Location", "facility_id")]],
                "serviceProvider": clinic,
            ]
        case .Observation, .Condition, .AllergyIntolerance:
            let content = try JSONValue.parse(try text("content"))
            return render(content, version: try row.decode(column: "version", as: Int64.self), updatedAt: try row.decode(column: "updated_at", as: Int64.self))
        }
    }

    /// A stored clinical resource with `meta` as of its last write, right after `id`.
    func render(_ stored: JSONValue, version: Int64, updatedAt: Int64) -> JSONValue {
        guard case .object(let pairs) = stored else { return stored }
        let meta: JSONValue = ["versionId": .string(String(version)), "lastUpdated": .string(FHIRDate.instant(millis: updatedAt))]
        var out: [(String, JSONValue)] = []
        for pair in pairs where pair.0 != "meta" {
            out.append(pair)
            if pair.0 == "id" { out.append(("meta", meta)) }
        }
        return .object(out)
    }
}

/// FHIR instants as the store writes and compares them (`2026-03-04T09:00:00Z`), by the
/// proleptic Gregorian calendar's arithmetic (Foundation's switches to Julian dates before 1582).
public enum FHIRDate {
    public static func instant(millis: Int64) -> String {
        instant(seconds: millis >= 0 ? millis / 1000 : (millis - 999) / 1000)
    }

    /// - Parameter seconds: Seconds since 1970-01-01T00:00:00Z.
    public static func instant(seconds: Int64) -> String {
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let rest = seconds - days * 86_400
        let (y, m, d) = civil(days)
        let year = String(y)
        return String(repeating: "0", count: max(0, 4 - year.count)) + year + "-\(two(m))-\(two(d))T" + clock(rest)
    }

    private static func two(_ n: Int64) -> String { n < 10 ? "0\(n)" : "\(n)" }
    /// `hh:mm:ssZ` of seconds into a day (hours past 23 too).
    private static func clock(_ seconds: Int64) -> String { "\(two(seconds / 3600)):\(two(seconds % 3600 / 60)):\(two(seconds % 60))Z" }

    /// An instant as the `date` index stores and compares it: ``instant(seconds:)``, except past
    /// 9999-12-31T23:59:59Z, which a FHIR date reaches only as the end of a year-9999 interval or
    /// with a negative offset (under 24 hours in what the server reads): written as hours 24 and
    /// up of 9999-12-31 (at most 99), so that text order stays time order (year 10000 written out
    /// sorts before year 2026).
    public static func sortable(seconds: Int64) -> String {
        let lastDay = days(year: 9999, month: 12, day: 31) * 86_400
        guard seconds >= lastDay + 86_400 else { return instant(seconds: seconds) }
        return "9999-12-31T" + clock(min(seconds - lastDay, 99 * 3600 + 3599))
    }

    /// The interval [from, until) of instants a FHIR date or dateTime stands for, as the store
    /// writes instants.
    public static func interval(_ text: String) -> (String, String)? {
        bounds(text).map { (sortable(seconds: $0.0), sortable(seconds: $0.1)) }
    }

    /// The interval [from, until) a FHIR date or dateTime stands for, in seconds since 1970
    /// (proleptic Gregorian, UTC; an offset is applied).
    public static func bounds(_ text: String) -> (Int64, Int64)? {
        let pattern = #/^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2}))?)?)?$/#
        guard let m = try? pattern.wholeMatch(in: text), let year = Int(m.1), year >= 1 else { return nil }
        let month = m.2.flatMap { Int($0) } ?? 1, day = m.3.flatMap { Int($0) } ?? 1
        guard (1...12).contains(month), (1...daysIn(month: month, year: year)).contains(day) else { return nil }
        var start = days(year: year, month: month, day: day) * 86_400
        let end: Int64
        if let hour = m.4.flatMap({ Int($0) }), let minute = m.5.flatMap({ Int($0) }) {
            let second = m.6.flatMap { Int($0) } ?? 0
            guard hour < 24, minute < 60, second < 60 else { return nil }
            start += Int64(hour * 3600 + minute * 60 + second)
            if let zone = m.7, zone != "Z" {
                let parts = zone.dropFirst().split(separator: ":")
                guard let h = Int(parts[0]), let mi = Int(parts[1]), h < 24, mi < 60 else { return nil }
                start -= Int64((zone.hasPrefix("-") ? -1 : 1) * (h * 3600 + mi * 60))
            }
            end = start + (m.6 == nil ? 60 : 1)
        } else if m.3 != nil {
            end = start + 86_400
        } else if m.2 != nil {
            end = (month == 12 ? days(year: year + 1, month: 1, day: 1) : days(year: year, month: month + 1, day: 1)) * 86_400
        } else {
            end = days(year: year + 1, month: 1, day: 1) * 86_400
        }
        return (start, end)
    }

    /// Days from 1970-01-01 to a date (H. Hinnant's days_from_civil).
    public static func days(year: Int, month: Int, day: Int) -> Int64 {
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = Int64((month + 9) % 12)
        let doy = (153 * mp + 2) / 5 + Int64(day) - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// The date (year, month, day) of a day count from 1970-01-01 (civil_from_days).
    public static func civil(_ days: Int64) -> (Int64, Int64, Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }

    public static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }
}
