import CaregateStore
import Hummingbird

/// A clinical resource as a client writes it: read strictly, with the fields its search
/// parameters and access rules read taken out of it.
enum FHIRClinicalInput {
    /// FHIR R4's `dateTime` (a time has seconds and a zone), as the specification writes it.
    nonisolated(unsafe) static let dateTime =
        #/([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?/#

    static let observationStatuses: Set<String> = ["registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown"]

    /// The body as a JSON object: `application/fhir+json`, at most `limit` bytes, read strictly.
    static func body(_ request: inout Request, limit: Int = FHIRAPI.maxBodyBytes) async throws -> JSONValue {
        try await bodyWithBytes(&request, limit: limit).resource
    }

    /// The body as ``body(_:limit:)`` reads it, with its bytes as they came (for passing it on).
    static func bodyWithBytes(_ request: inout Request, limit: Int = FHIRAPI.maxBodyBytes) async throws -> (bytes: ByteBuffer, resource: JSONValue) {
        guard let contentType = request.headers[.contentType]?.lowercased(),
              contentType.hasPrefix("application/fhir+json") || contentType.hasPrefix("application/json")
        else { throw APIError(.unsupportedMediaType, "unsupported_media_type", "the body must be application/fhir+json") }
        let buffer: ByteBuffer
        do {
            buffer = try await request.collectBody(upTo: limit)
        } catch {
            throw APIError(.contentTooLarge, "payload_too_large", "a FHIR body may be at most \(limit) bytes")
        }
        let resource: JSONValue
        do {
            resource = try JSONValue.parse(buffer.readableBytesView, maxDepth: 32)
        } catch {
            throw APIError.badRequest("the body is not a JSON resource: \(error)")
        }
        guard case .object = resource else { throw APIError.badRequest("the body must be a JSON object (a FHIR resource)") }
        return (buffer, resource)
    }

    /// A resource to write, checked, with the fields its search parameters and access rules read.
    static func index(_ resource: JSONValue, type: FHIRType, id: String?) throws -> (JSONValue, FHIRStore.ClinicalIndex) {
        guard case .object = resource else { throw APIError.badRequest("a resource must be a JSON object") }
        guard resource["resourceType"]?.stringValue == type.rawValue else {
            throw APIError.badRequest("resourceType must be \"\(type.rawValue)\" on this path")
        }
        if let id {
            guard resource["id"]?.stringValue == id else { throw APIError.badRequest("the resource's id must be \"\(id)\", the id in the path") }
        }
        let patient: String
        let status: String
        var category = ""
        var code = "", codeSystem = ""
        if let coding = resource["code"]?["coding"]?.first {
            code = coding["code"]?.stringValue ?? ""
            codeSystem = coding["system"]?.stringValue ?? ""
        }
        switch type {
        case .Observation:
            patient = try reference(resource["subject"], "subject")
            guard let value = resource["status"]?.stringValue, observationStatuses.contains(value) else {
                throw APIError.badRequest("status must be one of \(observationStatuses.sorted().joined(separator: ", "))")
            }
            status = value
            guard !code.isEmpty else { throw APIError.badRequest("code.coding[0].code is required") }
            category = resource["category"]?.first?["coding"]?.first?["code"]?.stringValue ?? ""
        case .Condition:
            patient = try reference(resource["subject"], "subject")
            status = resource["clinicalStatus"]?["coding"]?.first?["code"]?.stringValue ?? ""
            category = resource["category"]?.first?["coding"]?.first?["code"]?.stringValue ?? ""
        case .AllergyIntolerance:
            patient = try reference(resource["patient"], "patient")
            status = resource["clinicalStatus"]?["coding"]?.first?["code"]?.stringValue ?? ""
            category = resource["category"]?.first?.stringValue ?? ""
        default:
            throw APIError.badRequest("\(type.rawValue) is read-only here")
        }
        try onlyOneType(resource, choiceElements(of: type), at: "")
        // Every date present must be a real one; the first of the searched ones present is the
        // one `date` (or `recorded-date`) searches (a Period's start, as the gateway reads it).
        var instant = ""
        for (field, kind) in searchedDates(of: type) {
            guard let value = resource[field] else { continue }
            let from = try checkDate(value, field, kind)
            if instant.isEmpty { instant = from ?? "" }
        }
        for (field, kind) in otherDates(of: type) {
            guard let value = resource[field] else { continue }
            _ = try checkDate(value, field, kind)
        }
        for nested in nestedElements(of: type) {
            guard let list = resource[nested.array] else { continue }
            guard case .array(let items) = list else { throw APIError.badRequest("\(nested.array) must be an array") }
            for (i, item) in items.enumerated() {
                let at = "\(nested.array)[\(i)]"
                guard case .object = item else { throw APIError.badRequest("\(at) must be an object") }
                try onlyOneType(item, nested.choices, at: at + ".")
                for (field, kind) in nested.dates {
                    guard let value = item[field] else { continue }
                    _ = try checkDate(value, "\(at).\(field)", kind)
                }
            }
        }
        // Writes that reference another patient are refused: every Patient reference is the subject.
        var references: [String] = []
        collectPatientReferences(resource, into: &references)
        if let other = references.first(where: { $0 != patient }) {
            throw APIError.forbidden(other.isEmpty
                ? "The resource refers to a patient by identifier alone; every Patient reference must be its subject, Patient/\(Validate.safe(patient))"
                : "The resource refers to Patient/\(Validate.safe(other)) as well as to its subject Patient/\(Validate.safe(patient))")
        }
        return (resource, FHIRStore.ClinicalIndex(patient: patient, category: category, code: code, codeSystem: codeSystem, status: status, date: instant))
    }

    /// The date elements of a written type that `date` (or `recorded-date`) searches, the one it
    /// searches first. FHIR names an instant's type in a choice's field (`effectiveInstant`).
    static func searchedDates(of type: FHIRType) -> [(String, DateKind)] {
        switch type {
        case .Observation: [("effectiveDateTime", .dateTime), ("effectiveInstant", .instant), ("effectivePeriod", .period)]
        case .Condition: [("recordedDate", .dateTime), ("onsetDateTime", .dateTime)]
        case .AllergyIntolerance: [("recordedDate", .dateTime)]
        default: []
        }
    }

    /// What a checked date element holds.
    enum DateKind {
        case dateTime
        /// A dateTime with its time, and so with seconds and a zone.
        case instant
        /// A Period: both ends dateTimes, the end not before the start (FHIR's per-1).
        case period
    }

    /// The other date elements at a written type's top level: checked as the searched ones are,
    /// not searched.
    static func otherDates(of type: FHIRType) -> [(String, DateKind)] {
        switch type {
        case .Observation: [("issued", .instant), ("valueDateTime", .dateTime), ("valuePeriod", .period)]
        case .Condition: [("abatementDateTime", .dateTime), ("onsetPeriod", .period), ("abatementPeriod", .period)]
        case .AllergyIntolerance: [("onsetDateTime", .dateTime), ("lastOccurrence", .dateTime), ("onsetPeriod", .period)]
        default: []
        }
    }

    /// An array of a written type whose elements carry dates and choice elements, checked in each
    /// element as they are at the top level.
    struct NestedElements {
        let array: String
        let dates: [(String, DateKind)]
        let choices: [(String, [String])]
    }

    static func nestedElements(of type: FHIRType) -> [NestedElements] {
        let note = NestedElements(array: "note", dates: [("time", .dateTime)], choices: [])
        switch type {
        case .Observation:
            return [note, NestedElements(array: "component", dates: [("valueDateTime", .dateTime), ("valuePeriod", .period)],
                                         choices: [("value", observationValues)])]
        case .Condition: return [note]
        case .AllergyIntolerance: return [note, NestedElements(array: "reaction", dates: [("onset", .dateTime)], choices: [])]
        default: return []
        }
    }

    /// A date element checked (400 naming it at `name` otherwise): the start of the interval it
    /// stands for, as the index writes instants (nil for a Period without a start).
    static func checkDate(_ value: JSONValue, _ name: String, _ kind: DateKind) throws -> String? {
        func interval(_ value: JSONValue, _ name: String, instantOnly: Bool) throws -> (from: String, until: String) {
            guard let date = value.stringValue, (try? Self.dateTime.wholeMatch(in: date)) != nil, !instantOnly || date.contains("T"),
                  let interval = FHIRDate.interval(date)
            else {
                throw APIError.badRequest(
                    "\(name): \(value.stringValue.map { "\"\(Validate.safe($0))\"" } ?? "that") is not a FHIR \(instantOnly ? "instant" : "dateTime")")
            }
            return interval
        }
        switch kind {
        case .dateTime, .instant:
            return try interval(value, name, instantOnly: kind == .instant).from
        case .period:
            guard case .object = value else { throw APIError.badRequest("\(name) must be a Period (an object)") }
            let from = try value["start"].map { try interval($0, "\(name).start", instantOnly: false).from }
            let until = try value["end"].map { try interval($0, "\(name).end", instantOnly: false).until }
            if let from, let until, from >= until { throw APIError.badRequest("\(name).end is before \(name).start") }
            return from
        }
    }

    /// A choice element ([x]) is given in one of its types at most (`at` prefixes the names in the message).
    static func onlyOneType(_ object: JSONValue, _ choices: [(String, [String])], at: String) throws {
        for (element, members) in choices {
            let given = members.filter { object[$0] != nil }
            if given.count > 1 {
                throw APIError.badRequest(
                    "\(at)\(element)[x] may be given once, in one type: \(given.map { at + $0 }.joined(separator: " and ")) were both given")
            }
        }
    }

    /// The choice elements ([x]) of a written type's top level, with their fields in FHIR R4.
    static func choiceElements(of type: FHIRType) -> [(String, [String])] {
        let onset = ["DateTime", "Age", "Period", "Range", "String"]
        switch type {
        case .Observation:
            return [("effective", ["effectiveDateTime", "effectivePeriod", "effectiveTiming", "effectiveInstant"]), ("value", observationValues)]
        case .Condition: return [("onset", onset.map { "onset" + $0 }), ("abatement", onset.map { "abatement" + $0 })]
        case .AllergyIntolerance: return [("onset", onset.map { "onset" + $0 })]
        default: return []
        }
    }

    /// An Observation's (and each of its components') `value[x]` in FHIR R4.
    static let observationValues = ["Quantity", "CodeableConcept", "String", "Boolean", "Integer", "Range", "Ratio", "SampledData", "Time", "DateTime", "Period"]
        .map { "value" + $0 }

    /// The patient id of a `{"reference": "Patient/<id>"}`.
    static func reference(_ value: JSONValue?, _ name: String) throws -> String {
        guard let text = value?["reference"]?.stringValue, text.hasPrefix("Patient/"), let id = try? FHIRAPI.id(String(text.dropFirst("Patient/".count)))
        else { throw APIError.badRequest("\(name).reference must be \"Patient/<id>\"") }
        return id
    }

    /// The ids of every reference to a Patient anywhere in the resource: relative, absolute,
    /// versioned (`Patient/x/_history/2`) or with a trailing slash; a reference typed `Patient`
    /// that names no id (an identifier alone) counts as an unknown patient ("").
    static func collectPatientReferences(_ value: JSONValue, into out: inout [String]) {
        switch value {
        case .object(let pairs):
            var named = false
            for (key, member) in pairs {
                if key == "reference", let text = member.stringValue {
                    let parts = text.split(separator: "/")
                    for (i, part) in parts.enumerated() where part == "Patient" && i + 1 < parts.count {
                        out.append(FHIRID.fhir(String(parts[i + 1])))
                        named = true
                    }
                } else {
                    collectPatientReferences(member, into: &out)
                }
            }
            if !named, value["type"]?.stringValue == "Patient" { out.append("") }
        case .array(let items):
            for item in items { collectPatientReferences(item, into: &out) }
        default:
            break
        }
    }
}

extension JSONValue {
    /// The first element of an array.
    var first: JSONValue? {
        if case .array(let items) = self { return items.first }
        return nil
    }

    /// The elements of an array.
    var arrayValue: [JSONValue]? {
        if case .array(let items) = self { return items }
        return nil
    }

    /// Removes a key of an object.
    mutating func remove(_ key: String) {
        guard case .object(var pairs) = self else { return }
        pairs.removeAll { $0.0 == key }
        self = .object(pairs)
    }
}
