import CaregateStore
import Scopes

/// A FHIR search request read strictly: every parameter is one this server applies, or the
/// request is refused naming the ones it is not (ignoring a filter would widen the search).
struct FHIRSearch {
    var filters: [FHIRFilter] = []
    /// The patients the request names in its compartment parameter (`patient`, `subject`, or
    /// `_id` of a Patient search), each occurrence's values; nil when it names none.
    var namedPatients: [String]?
    var count = FHIRSearch.defaultCount
    var offset = 0

    static let defaultCount = 50
    static let maxCount = 200
    static let maxRequestedCount = 1_000_000
    static let maxOffset = 1_000_000
    static let maxValues = 1_024
    /// In code points, as the document's maxLength counts them.
    static let maxValueLength = 2_048

    /// Parameters every search takes.
    static let common = ["_id", "_count", "_offset", "_format"]

    /// The search parameters of each type, beyond ``common``.
    static func parameters(of type: FHIRType) -> [String] {
        switch type {
        case .Patient, .Practitioner, .Location, .Organization: []
        case .Appointment: ["patient", "date", "status"]
        case .Encounter: ["patient", "subject", "date", "status"]
        case .Observation: ["patient", "subject", "category", "code", "date", "status"]
        case .Condition: ["patient", "subject", "category", "code", "clinical-status", "recorded-date"]
        case .AllergyIntolerance: ["patient", "category", "code", "clinical-status", "date"]
        }
    }

    /// The system of a type's `category` codes, when its categories are codings.
    static func categorySystem(_ type: FHIRType) -> String? {
        switch type {
        case .Observation: "http://terminology.hl7.org/CodeSystem/observation-category"
        case .Condition: "http://terminology.hl7.org/CodeSystem/condition-category"
        default: nil
        }
    }

    init(type: FHIRType, query: String?) throws {
        let items = QueryItems.parse(query)
        let allowed = Set(Self.common + Self.parameters(of: type))
        let unknown = items.map(\.name).filter { !allowed.contains($0) }
        if !unknown.isEmpty {
            var seen = Set<String>()
            let names = unknown.filter { seen.insert($0).inserted }.map { "\"\(Validate.safe($0))\"" }.joined(separator: ", ")
            throw APIError(
                .badRequest, "not_supported",
                "Search parameter\(seen.count == 1 ? "" : "s") \(names) \(seen.count == 1 ? "is" : "are") not supported on \(type.rawValue) (supported: \(Self.common.joined(separator: ", "))\(Self.parameters(of: type).isEmpty ? "" : ", " + Self.parameters(of: type).joined(separator: ", ")))")
        }
        for (name, value) in items {
            switch name {
            case "_count":
                guard let n = Int(value), (0...Self.maxRequestedCount).contains(n) else {
                    throw APIError.badRequest("_count must be a whole number from 0 to \(Self.maxRequestedCount) (at most \(Self.maxCount) are returned)")
                }
                count = min(n, Self.maxCount)
            case "_offset":
                guard let n = Int(value), (0...Self.maxOffset).contains(n) else { throw APIError.badRequest("_offset must be a whole number from 0 to \(Self.maxOffset)") }
                offset = n
            case "_format":
                guard ["json", "application/json", "application/fhir+json"].contains(value) else {
                    throw APIError(.notAcceptable, "not_acceptable", "Only JSON is served (_format json or application/fhir+json)")
                }
            default:
                let filter = try Self.filter(name, value, type: type)
                filters.append(filter)
                if name == "patient" || name == "subject" || (type == .Patient && name == "_id") {
                    if case .anyOf(let ids) = filter.test {
                        namedPatients = (namedPatients ?? []) + ids
                    } else {
                        namedPatients = (namedPatients ?? []) + [""]
                    }
                }
            }
        }
    }

    /// Filters for `name=value` pairs of a type (a SMART scope's query constraints).
    static func filters(_ pairs: [(String, String)], type: FHIRType) throws -> [FHIRFilter] {
        let allowed = Set(["_id"] + parameters(of: type))
        return try pairs.map { name, value in
            guard allowed.contains(name) else { throw APIError.badRequest("unsupported parameter \(name)") }
            return try filter(name, value, type: type)
        }
    }

    static func filter(_ name: String, _ value: String, type: FHIRType) throws -> FHIRFilter {
        guard value.unicodeScalars.count <= maxValueLength else { throw APIError.badRequest("\(name) may be at most \(maxValueLength) characters") }
        let values = value.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard !value.isEmpty, values.allSatisfy({ !$0.isEmpty }) else { throw APIError.badRequest("\(name) needs a value") }
        guard values.count <= maxValues else { throw APIError.badRequest("\(name) takes at most \(maxValues) values") }
        switch name {
        case "_id":
            return FHIRFilter(.id, .anyOf(values.map(FHIRID.fhir)))
        case "patient", "subject":
            // A reference to a Patient: `pat_…`, `Patient/pat_…`, or an absolute URL ending so.
            // Anything else names no patient, so matches nothing.
            let ids = values.compactMap { reference -> String? in
                let parts = reference.split(separator: "/", omittingEmptySubsequences: false)
                if parts.count == 1 { return FHIRID.fhir(reference) }
                guard parts.count >= 2, parts[parts.count - 2] == "Patient", !parts[parts.count - 1].isEmpty else { return nil }
                return FHIRID.fhir(String(parts[parts.count - 1]))
            }
            return FHIRFilter(.patient, ids.isEmpty ? .nothing : .anyOf(ids))
        case "category":
            let codes = tokens(values).compactMap { coding -> String? in
                guard let system = coding.system else { return coding.code }
                return system == categorySystem(type) ? coding.code : nil
            }
            return FHIRFilter(.category, codes.isEmpty ? .nothing : .anyOf(codes))
        case "code":
            return FHIRFilter(.code, .codes(tokens(values)))
        case "status", "clinical-status":
            let codes = tokens(values).compactMap { $0.system == nil ? $0.code : nil }
            return FHIRFilter(.status, codes.isEmpty ? .nothing : .anyOf(codes))
        case "date", "recorded-date":
            guard values.count == 1 else { throw APIError.badRequest("\(name) takes one value per parameter (repeat the parameter for a range)") }
            return try date(name, value)
        default:
            throw APIError(.badRequest, "not_supported", "Search parameter \"\(Validate.safe(name))\" is not supported on \(type.rawValue)")
        }
    }

    /// `system|code`, `|code` (no system) or `code`.
    static func tokens(_ values: [String]) -> [FHIRFilter.Coding] {
        values.map { value in
            guard let bar = value.firstIndex(of: "|") else { return FHIRFilter.Coding(system: nil, code: value) }
            let system = String(value[..<bar])
            return FHIRFilter.Coding(system: system.isEmpty ? nil : system, code: String(value[value.index(after: bar)...]))
        }
    }

    /// A date parameter: an optional prefix (`eq`, `ne`, `gt`, `lt`, `ge`, `le`) and a FHIR
    /// date or dateTime, which stands for the whole interval its precision names.
    static func date(_ name: String, _ value: String) throws -> FHIRFilter {
        var text = Substring(value)
        var prefix = "eq"
        if let first = text.first, first.isLetter {
            prefix = String(text.prefix(2))
            text = text.dropFirst(2)
            guard ["eq", "ne", "gt", "lt", "ge", "le"].contains(prefix) else {
                throw APIError(.badRequest, "not_supported", "\(name): the prefix \"\(Validate.safe(prefix))\" is not supported (eq, ne, gt, lt, ge, le)")
            }
        }
        guard let (from, until) = FHIRDate.interval(String(text)) else {
            throw APIError.badRequest("\(name) must be a FHIR date or dateTime (2026-03-04, 2026-03, 2026, 2026-03-04T09:30:00Z), optionally after a prefix")
        }
        switch prefix {
        case "ne": return FHIRFilter(.date, .outside(from: from, until: until))
        case "gt": return FHIRFilter(.date, .onOrAfter(until))
        case "lt": return FHIRFilter(.date, .before(from))
        case "ge": return FHIRFilter(.date, .onOrAfter(from))
        case "le": return FHIRFilter(.date, .before(until))
        default: return FHIRFilter(.date, .within(from: from, until: until))
        }
    }
}
