import CaregateStore
import Foundation
import Scopes

/// Who a FHIR request may reach, from the credential's scopes and launch context (SPEC §8):
/// `cms.fhir.r4.read` / `cms.fhir.rest.write` and `system/` scopes reach the whole clinic;
/// `user/` scopes what the signed-in person may see (a clinician: the clinic; a patient user:
/// their own compartment); `patient/` scopes the compartment of the token's patient. Several
/// scopes combine as an OR; a query-constrained scope narrows its own part to resources that
/// match its constraints. What is not granted is not reached: a grant whose constraint cannot
/// be checked, a `user/` scope without a signed-in person, reach nothing.
struct FHIRAccess {
    enum Interaction: Sendable {
        case read, search, create, update, delete

        var permission: Permissions {
            switch self {
            case .read: .read
            case .search: .search
            case .create: .create
            case .update: .update
            case .delete: .delete
            }
        }

        var isWrite: Bool { self == .create || self == .update || self == .delete }
    }

    /// One way the credential reaches a type: one patient's compartment or the whole clinic,
    /// narrowed to resources matching every filter.
    struct Reach: Sendable, Equatable {
        /// nil: the whole clinic.
        var patient: String?
        var constraints: [FHIRFilter]
        /// The constraints as the scope spells them, `name=value` query items (percent-encoded):
        /// what the gateway adds to a search so that another FHIR server narrows it the same way.
        var parameters: [String] = []
    }

    static let productRead = "cms.fhir.r4.read"
    static let productWrite = "cms.fhir.rest.write"
    /// Writes through transaction and batch Bundles, clinic-wide (seed 003: "ingest and upsert").
    static let productBundle = "cms.fhir.bundle.push"

    /// The reaches of `credential` for `interaction` on `type`; empty when nothing is granted.
    /// `inBundle`: the interaction is an entry of a Bundle, which `cms.fhir.bundle.push` also opens for writes.
    static func reaches(_ credential: Credential, on surface: Surface, type: FHIRType, interaction: Interaction, inBundle: Bool = false) -> [Reach] {
        let set = credential.effective[surface.index]
        let catalog = surface.catalog
        if catalog.contains(set, scope: interaction.isWrite ? productWrite : productRead) { return [Reach(patient: nil, constraints: [])] }
        if inBundle, interaction.isWrite, catalog.contains(set, scope: productBundle) { return [Reach(patient: nil, constraints: [])] }
        var reaches: [Reach] = []
        for context in [ScopeContext.system, .user, .patient] {
            // Whose data the context reaches; `.some(nil)` is the whole clinic.
            let confinement: String??
            switch context {
            case .system:
                confinement = .some(nil)
            case .user:
                guard let user = credential.person?.fhirUser else { confinement = nil; break }
                if user.hasPrefix("Practitioner/") {
                    confinement = .some(nil)
                } else if user.hasPrefix("Patient/") {
                    confinement = .some(String(user.dropFirst("Patient/".count)))
                } else {
                    confinement = nil
                }
            case .patient:
                guard let patient = credential.person?.patient else { confinement = nil; break }
                confinement = .some(patient)
            }
            guard let confinement else { continue }
            // Practitioner, Location and Organization are no patient's: readable with a matching scope.
            let patient = type.inPatientCompartment ? confinement : nil
            switch catalog.grant(in: set, context: context, resource: type.rawValue, permission: interaction.permission) {
            case .none:
                continue
            case .unconstrained:
                reaches.append(Reach(patient: patient, constraints: []))
            case .constrained(let grants):
                for constraints in grants {
                    guard let filters = try? FHIRSearch.filters(constraints.map { ($0.name, $0.value) }, type: type) else { continue }
                    let parameters = constraints.map { URLComponents.queryEncoded($0.name) + "=" + URLComponents.queryEncoded($0.value) }
                    reaches.append(Reach(patient: patient, constraints: filters, parameters: parameters))
                }
            }
        }
        return reaches
    }

    /// The reaches as the store's access filters: nil when one reaches the whole clinic unconstrained.
    static func storeAccess(_ reaches: [Reach]) -> [[FHIRFilter]]? {
        if reaches.contains(where: { $0.patient == nil && $0.constraints.isEmpty }) { return nil }
        return reaches.map { reach in
            (reach.patient.map { [FHIRFilter(.patient, .anyOf([$0]))] } ?? []) + reach.constraints
        }
    }

    /// The patients the reaches are confined to, when every reach is confined (nil otherwise).
    static func confinedPatients(_ reaches: [Reach]) -> Set<String>? {
        var patients = Set<String>()
        for reach in reaches {
            guard let patient = reach.patient else { return nil }
            patients.insert(patient)
        }
        return patients
    }

    /// Whether a resource with these searchable fields is within one of the reaches.
    static func admits(_ reaches: [Reach], _ index: FHIRStore.ClinicalIndex) -> Bool {
        reaches.contains { reach in
            if let patient = reach.patient, patient != index.patient { return false }
            return reach.constraints.allSatisfy { matches($0, index) }
        }
    }

    /// Whether a resource a FHIR server answered with is within one of the reaches: a confined
    /// reach admits it only when every patient it refers to is the reach's patient.
    static func admits(_ reaches: [Reach], _ facts: FHIRResourceFacts) -> Bool {
        reaches.contains { reach in
            if let patient = reach.patient, facts.patients.isEmpty || facts.patients.contains(where: { $0 != patient }) { return false }
            return reach.constraints.allSatisfy(facts.matches)
        }
    }

    /// `filter` evaluated on a resource about to be written, as the store evaluates it on stored ones.
    static func matches(_ filter: FHIRFilter, _ index: FHIRStore.ClinicalIndex) -> Bool {
        let value: String
        switch filter.field {
        case .id: return false
        case .patient: value = index.patient
        case .category: value = index.category
        case .code: value = index.code
        case .status: value = index.status
        case .date: value = index.date
        case .lastUpdated: return true
        }
        return holds(filter.test, value, codeSystem: filter.field == .code ? index.codeSystem : nil)
    }

    /// A filter's test on one value; `codeSystem` is the system of a code (nil: not a code, or none known).
    static func holds(_ test: FHIRFilter.Test, _ value: String, codeSystem: String?) -> Bool {
        switch test {
        case .nothing: return false
        case .writtenSince: return true
        case .anyOf(let values): return values.contains(value)
        case .codes(let codings):
            return codings.contains { $0.code == value && ($0.system == nil || codeSystem == nil || $0.system == codeSystem) }
        case .onOrAfter(let instant): return value >= instant
        // No date ('') matches no date filter, as in the store's query.
        case .before(let instant): return !value.isEmpty && value < instant
        case .within(let from, let until): return value >= from && value < until
        case .outside(let from, let until): return !value.isEmpty && (value < from || value >= until)
        }
    }
}
