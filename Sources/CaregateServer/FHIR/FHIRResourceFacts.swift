import CaregateStore

/// What the access rules read from a resource another FHIR server answered with (or a client
/// sends through the gateway): whose it is, and the values its scopes' query constraints
/// compare. Read leniently, since the resource is not ours to refuse, and trusted in nothing:
/// a value that cannot be read matches no constraint that needs it.
struct FHIRResourceFacts {
    var id: String
    /// Every patient the resource refers to, in any spelling of the reference (its own id for a
    /// Patient); "" for a reference typed `Patient` that names no id.
    var patients: [String]
    var categories: [String]
    var codes: [FHIRFilter.Coding]
    var statuses: [String]
    /// The clinical date's first instant, as the store writes instants.
    var date: String?

    init(_ resource: JSONValue, type: FHIRType) {
        id = resource["id"]?.stringValue ?? ""
        var references: [String] = []
        FHIRClinicalInput.collectPatientReferences(resource, into: &references)
        patients = (type == .Patient ? [id] : []) + references
        func codings(_ value: JSONValue?) -> [JSONValue] {
            switch value {
            case .array(let items)?: items.flatMap { codings($0) }
            case .object?: value?["coding"]?.arrayValue ?? []
            default: []
            }
        }
        let categorySystem = FHIRSearch.categorySystem(type)
        if type == .AllergyIntolerance {
            categories = resource["category"]?.arrayValue?.compactMap(\.stringValue) ?? []
        } else {
            categories = codings(resource["category"]).compactMap { coding in
                let system = coding["system"]?.stringValue
                return system == nil || system == categorySystem ? coding["code"]?.stringValue : nil
            }
        }
        codes = codings(resource["code"]).compactMap { coding in
            coding["code"]?.stringValue.map { FHIRFilter.Coding(system: coding["system"]?.stringValue, code: $0) }
        }
        let clinicalStatus = codings(resource["clinicalStatus"]).compactMap { $0["code"]?.stringValue }
        statuses = clinicalStatus.isEmpty ? [resource["status"]?.stringValue].compactMap { $0 } : clinicalStatus
        let date: String? = switch type {
        case .Observation: resource["effectiveDateTime"]?.stringValue ?? resource["effectiveInstant"]?.stringValue ?? resource["effectivePeriod"]?["start"]?.stringValue
        case .Condition: resource["recordedDate"]?.stringValue ?? resource["onsetDateTime"]?.stringValue
        case .AllergyIntolerance: resource["recordedDate"]?.stringValue
        case .Encounter: resource["period"]?["start"]?.stringValue
        case .Appointment: resource["start"]?.stringValue
        case .Patient, .Practitioner, .Location, .Organization: nil
        }
        self.date = date.flatMap(FHIRDate.interval).map(\.0)
    }

    /// Whether the resource matches a filter (a scope's query constraint).
    func matches(_ filter: FHIRFilter) -> Bool {
        switch filter.field {
        case .id: FHIRAccess.holds(filter.test, id, codeSystem: nil)
        case .patient: patients.contains { FHIRAccess.holds(filter.test, $0, codeSystem: nil) }
        case .category: categories.contains { FHIRAccess.holds(filter.test, $0, codeSystem: nil) }
        case .code: codes.contains { FHIRAccess.holds(filter.test, $0.code, codeSystem: $0.system ?? "") }
        case .status: statuses.contains { FHIRAccess.holds(filter.test, $0, codeSystem: nil) }
        case .date: date.map { FHIRAccess.holds(filter.test, $0, codeSystem: nil) } ?? false
        case .lastUpdated: true
        }
    }
}
