import Scopes
import Testing

@Suite("Scope semantics (SPEC §1)")
struct SemanticsTests {
    let v3 = catalog("marketplace-v3")
    let platform = catalog("platform")
    let practice = catalog("practice-api")

    @Test("read:encounters is read:bills, both directions")
    func legacyAlias() {
        #expect(v3.set("read:encounters") == v3.set("read:bills"))
        #expect(v3.decide("read:encounters", "GET", "/v3/bills/b1").isAllowed)
        #expect(v3.decide("read:bills", "GET", "/v3/bills").isAllowed)
        #expect(v3.scopeNames(in: v3.set("read:bills")) == ["read:bills", "read:encounters"])
        // The alias opens nothing else.
        #expect(v3.decide("read:encounters", "GET", "/v3/claims") == .insufficientScope(RouteID.claims(v3), required: "read:claims"))
    }

    @Test("read:soap_notes has effect only with read:notes")
    func dependentScope() {
        #expect(v3.decide("read:notes", "GET", "/v3/notes?includeSoapNote=true") == .insufficientScope(RouteID.notes(v3), required: "read:soap_notes"))
        #expect(v3.decide("read:soap_notes", "GET", "/v3/notes?includeSoapNote=true") == .insufficientScope(RouteID.notes(v3), required: "read:notes"))
        #expect(v3.decide("read:notes read:soap_notes", "GET", "/v3/notes?includeSoapNote=true").isAllowed)
        #expect(v3.decide("read:notes read:soap_notes", "GET", "/v3/notes/n1?includeSoapNote=true").isAllowed)
        #expect(v3.decide("read:notes", "GET", "/v3/notes").isAllowed)
        #expect(v3.decide("read:notes", "GET", "/v3/notes?includeSoapNote=false").isAllowed)
        // Every spelling a handler could read as "yes" needs the extra scope.
        for query in ["includeSoapNote=TRUE", "includeSoapNote=1", "includeSoapNote=", "includeSoapNote",
                      "include%53oapNote=true", "includeSoapNote=false&includeSoapNote=true", "limit=5&includeSoapNote=true"] {
            #expect(!v3.decide("read:notes", "GET", "/v3/notes?\(query)").isAllowed, "\(query)")
        }
        // The effective set drops the dependent scope.
        #expect(v3.scopeNames(in: v3.effective("read:soap_notes read:patients")) == ["read:patients"])
        #expect(v3.scopeNames(in: v3.effective("read:soap_notes read:notes")) == ["read:notes", "read:soap_notes"])
    }

    @Test("wildcards cover every resource type, known or not")
    func wildcards() {
        #expect(platform.decide("patient/*.read", "GET", "/fhir/R4/Observation").isAllowed)
        #expect(platform.decide("patient/*.read", "GET", "/fhir/R4/Condition/c1").isAllowed)
        #expect(platform.decide("patient/*.read", "GET", "/fhir/R4/ImagingStudy").isAllowed)   // not in resourceTypes
        #expect(platform.decide("system/*.read", "GET", "/fhir/R4/Patient/p1").isAllowed)
        #expect(platform.decide("system/*.read", "GET", "/fhir/R4/$export").isAllowed)
        #expect(platform.decide("user/*.write", "POST", "/fhir/R4/Observation").isAllowed)
        #expect(platform.decide("user/*.write", "DELETE", "/fhir/R4/Observation/o1").isAllowed)
        // A specific scope never opens a wildcard route, nor another type.
        #expect(!platform.decide("system/Patient.read", "GET", "/fhir/R4/$export").isAllowed)
        #expect(!platform.decide("patient/Observation.read", "GET", "/fhir/R4/Condition").isAllowed)
        #expect(!platform.decide("patient/Observation.read", "GET", "/fhir/R4/ImagingStudy").isAllowed)
        // Write does not imply read.
        #expect(!platform.decide("user/*.write", "GET", "/fhir/R4/Observation").isAllowed)
        // The wildcard grant covers the specific one as a set.
        #expect(platform.set("patient/Observation.read").isSubset(of: platform.set("patient/*.read")))
    }

    @Test("several families in one token are a union; none shadows another")
    func union() {
        let both = "patient/*.read system/*.read"
        #expect(platform.decide(both, "GET", "/fhir/R4/$export").isAllowed)
        #expect(platform.decide(both, "GET", "/fhir/R4/Observation").isAllowed)
        #expect(platform.decide("patient/Observation.read cms.fhir.bundle.push", "POST", "/fhir/R4").isAllowed)
    }

    @Test("SMART v1 and v2 spellings are the same permission")
    func v1v2() {
        #expect(platform.set("patient/Observation.read") == platform.set("patient/Observation.rs"))
        #expect(platform.set("user/*.write") == platform.set("user/*.cud"))
        #expect(platform.set("patient/*.read") == platform.set("patient/*.rs"))
        #expect(practice.set("system/patients.read") == practice.set("system/patients.rs"))
        // v2 letters narrow: r (read) without s (search).
        #expect(platform.decide("patient/Observation.r", "GET", "/fhir/R4/Observation/o1").isAllowed)
        #expect(!platform.decide("patient/Observation.r", "GET", "/fhir/R4/Observation").isAllowed)
        #expect(platform.decide("patient/Observation.s", "GET", "/fhir/R4/Observation").isAllowed)
        #expect(practice.decide("system/patients.c", "POST", "/api/2.0/patients/").isAllowed)
        #expect(!practice.decide("system/patients.c", "DELETE", "/api/2.0/patients/1").isAllowed)
    }

    @Test("a query-constrained v2 scope covers only requests that carry the constraint")
    func queryConstrained() throws {
        let lab = "patient/Observation.rs?category=laboratory"
        #expect(platform.decide(lab, "GET", "/fhir/R4/Observation?category=laboratory").isAllowed)
        #expect(platform.decide(lab, "GET", "/fhir/R4/Observation?_count=10&category=laboratory").isAllowed)
        #expect(!platform.decide(lab, "GET", "/fhir/R4/Observation").isAllowed)
        #expect(!platform.decide(lab, "GET", "/fhir/R4/Observation?category=vital-signs").isAllowed)
        #expect(!platform.decide(lab, "GET", "/fhir/R4/Observation/o1").isAllowed)
        let coded = "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
        #expect(platform.decide(coded, "GET", "/fhir/R4/Observation?category=http%3A%2F%2Fterminology.hl7.org%2FCodeSystem%2Fobservation-category%7Claboratory").isAllowed)
        // Intersected with an unconstrained grant it keeps its constraint.
        let key = platform.set(lab)
        let grants = platform.set("patient/*.read")
        let effective = key.intersection(grants)
        #expect(effective == key)
        #expect(!platform.decide(effective, method: .get, path: "/fhir/R4/Observation").isAllowed)
        #expect(platform.decide(effective, method: .get, path: "/fhir/R4/Observation", query: "category=laboratory").isAllowed)
        // …and with a grant that does not cover it, it is gone.
        #expect(key.intersection(platform.set("patient/Patient.read")).isEmpty)
    }

    @Test("the global scope opens everything and is never combined")
    func globalScope() throws {
        #expect(practice.globalScope == "apiv2")
        let all = practice.set("apiv2")
        for route in practice.routes where !route.isPublic {
            #expect(practice.decide(all, method: route.method, path: samplePath(route.path)).isAllowed, "\(route.template)")
        }
        #expect(throws: ScopeResolutionError(scope: "system/patients.read", reason: .globalCombined(global: "apiv2"))) {
            try practice.resolve("apiv2 system/patients.read")
        }
        #expect(throws: ScopeResolutionError(scope: "system/patients.read", reason: .globalCombined(global: "apiv2"))) {
            try practice.resolve("system/patients.read apiv2")
        }
        #expect(practice.scopeNames(in: all) == ["apiv2"])
    }

    @Test("read-only reference data has no write scope")
    func readOnly() throws {
        for resource in ["languages", "packaged_medication_labelers", "packaged_medications", "pharmacies", "reference_medications"] {
            #expect(throws: ScopeResolutionError(scope: "system/\(resource).write", reason: .readOnlyResource(resource))) {
                try practice.resolve("system/\(resource).write")
            }
            #expect(throws: ScopeResolutionError.self) { try practice.resolve("system/\(resource).c") }
            #expect(practice.decide("system/\(resource).read", "GET", "/api/2.0/\(resource)/").isAllowed)
            #expect(practice.decide("apiv2", "POST", "/api/2.0/\(resource)/") == .methodNotAllowed)
        }
        #expect(practice.scope(named: "system/languages.write") == nil)
    }

    @Test("nested resources follow their parent; signing needs visit_notes.write")
    func nested() {
        let card = "/api/2.0/patients/12/policies/3/card-images"
        #expect(practice.decide("system/patients.read", "GET", card).isAllowed)
        #expect(practice.decide("system/patients.write", "POST", card).isAllowed)
        #expect(practice.decide("system/patients.write", "DELETE", card + "/9").isAllowed)
        #expect(!practice.decide("system/patients.read", "POST", card).isAllowed)
        #expect(!practice.decide("system/allergies.write system/allergies.read", "GET", card).isAllowed)
        for path in ["/api/2.0/visit_notes/5/sign", "/api/2.0/clinical_documents/5/sign"] {
            #expect(practice.decide("system/visit_notes.write", "POST", path).isAllowed, "\(path)")
            guard case .insufficientScope(_, let required) = practice.decide("system/clinical_documents.write", "POST", path) else {
                Issue.record("expected a refusal for \(path)")
                continue
            }
            #expect(required == "system/visit_notes.write")
        }
    }

    @Test("unknown scopes are refused, named")
    func unknown() {
        #expect(throws: ScopeResolutionError(scope: "read:everything", reason: .unknown)) { try v3.resolve("read:patients read:everything") }
        #expect(throws: ScopeResolutionError(scope: "system/widgets.read", reason: .unknownResourceType("widgets"))) {
            try practice.resolve("system/widgets.read")
        }
        #expect(throws: ScopeResolutionError(scope: "patient/Widget.rs", reason: .unknownResourceType("Widget"))) { try platform.resolve("patient/Widget.rs") }
        // The SMART grammar spells writes in the patient context too, though seed 003 lists only reads (SPEC §7).
        #expect(throws: Never.self) { try platform.resolve("patient/Observation.c user/Condition.cud", credentialType: .smartOnFHIR) }
        #expect(throws: ScopeResolutionError.self) { try platform.resolve("patient/Observation.c", credentialType: .apiKey) }
        #expect(throws: ScopeResolutionError(scope: "read:marketplace", reason: .unknown)) { try v3.resolve("read:marketplace") }
        // A syntax error names the scope too.
        do {
            _ = try v3.resolve("read:patients READ:notes")
            Issue.record("expected an error")
        } catch {
            #expect(error.description.contains("READ:notes"))
        }
    }

    @Test("credential types are checked at issue time and at call time")
    func credentialTypes() throws {
        #expect(throws: ScopeResolutionError(scope: "identity.merge", reason: .credentialType(.apiKey, allowed: [.serviceKey, .oauth2]))) {
            try platform.resolve("cms.identity.match identity.merge", credentialType: .apiKey)
        }
        #expect(throws: ScopeResolutionError.self) { try platform.resolve("patient/*.read", credentialType: .apiKey) }
        _ = try platform.resolve("identity.merge", credentialType: .serviceKey)
        _ = try platform.resolve("patient/*.read launch/patient", credentialType: .smartOnFHIR)
        // A set resolved without a type loses what an API key may not carry.
        let set = platform.set("identity.merge cms.identity.match")
        let effective = platform.effectiveSet(credential: set, grants: set, credentialType: .apiKey)
        #expect(platform.scopeNames(in: effective) == ["cms.identity.match"])
        #expect(!platform.decide(effective, method: .post, path: "/api/identity/merge").isAllowed)
    }

    @Test("effective set = credential ∩ grants")
    func intersection() {
        let key = v3.set("read:patients read:notes read:soap_notes write:tasks")
        let grants = v3.set("read:patients read:soap_notes write:tasks read:claims")
        let effective = v3.effectiveSet(credential: key, grants: grants, credentialType: .apiKey)
        // read:soap_notes survives the intersection but has no effect without read:notes.
        #expect(v3.scopeNames(in: effective) == ["read:patients", "write:tasks"])
    }

    @Test func selfService() {
        let set = platform.set("cms.fhir.r4.read identity.merge cms.pipeline.read")
        #expect(platform.scopeNames(in: platform.selfService(set)) == ["cms.fhir.r4.read", "cms.pipeline.read"])
    }

    @Test("seed 003 page counts, computed from the catalog")
    func platformCounts() {
        #expect(platform.stats == CatalogStats(scopes: 40, categories: 10, smart: 12, selfService: 11))
        #expect(platform.scopes.filter(\.selfService).allSatisfy { $0.name.hasPrefix("cms.") })
    }

    @Test("/v3/marketplace/me is public; /v1 needs read:marketplace")
    func me() {
        #expect(v3.decide(ScopeSet.empty, method: .get, path: "/v3/marketplace/me").isAllowed)
        let v1 = catalog("marketplace-v1")
        guard case .insufficientScope(_, let required) = v1.decide(ScopeSet.empty, method: .get, path: "/v1/marketplace/me") else {
            Issue.record("expected a refusal")
            return
        }
        #expect(required == "read:marketplace")
    }
}

extension RouteID {
    static func claims(_ c: CompiledCatalog) -> RouteID { route(c, "GET /v3/claims") }
    static func notes(_ c: CompiledCatalog) -> RouteID { route(c, "GET /v3/notes") }
    static func route(_ c: CompiledCatalog, _ template: String) -> RouteID {
        c.decide(c.set(c.scopes[0].name), method: "GET", target: samplePath(String(template.split(separator: " ")[1]))).route
            ?? { fatalError("no route \(template)") }()
    }
}

/// SMART App Launch's identity, launch-context and refresh scopes are valid on a catalog with
/// SMART resource scopes without being entries, open no route, and `launch` is `launch-ehr`.
@Suite struct SMARTContextScopeTests {
    @Test("openid, launch, launch/encounter and online_access resolve on the platform catalog only")
    func accepted() throws {
        let platform = catalog("platform")
        #expect(platform.acceptsSMARTScopes)
        for name in ["openid", "launch/encounter", "online_access"] {
            #expect(platform.scope(named: name) == nil, "\(name) is not an entry")
            #expect(try platform.resolve(name).isEmpty, "\(name) opens nothing")
        }
        #expect(try platform.resolve("launch") == platform.resolve("launch-ehr"))
        #expect(try platform.resolve("openid fhirUser launch/patient patient/Observation.rs") == platform.resolve("fhirUser launch/patient patient/Observation.rs"))
        #expect(platform.decide("openid", "GET", "/fhir/R4/Patient/x1").isAllowed == false)
        // A catalog without SMART scopes still refuses them.
        let v3 = catalog("marketplace-v3")
        #expect(!v3.acceptsSMARTScopes)
        #expect(throws: ScopeResolutionError.self) { try v3.resolve("openid") }
    }
}
