import Scopes
import Testing

@Suite("Properties")
struct PropertyTests {
    static func randomScope(_ rng: inout SplitMix64) -> String {
        let words = ["patients", "notes", "soap_notes", "x1", "a_b_c"]
        let types = ["Observation", "Patient", "*", "patient-provider-team-members", "Condition"]
        switch rng.next() % 5 {
        case 0: return "\(["read", "write", "admin"].randomElement(using: &rng)!):\(words.randomElement(using: &rng)!)"
        case 1: return (0..<Int(2 + rng.next() % 3)).map { _ in words.randomElement(using: &rng)! }.joined(separator: ".")
        case 2:
            let letters = Array("cruds")
            var perms = ""
            for l in letters where rng.next() % 2 == 0 { perms.append(l) }
            if perms.isEmpty { perms = ["read", "write", "*"].randomElement(using: &rng)! }
            var text = "\(["patient", "user", "system"].randomElement(using: &rng)!)/\(types.randomElement(using: &rng)!).\(perms)"
            if perms.count <= 5 && !["read", "write", "*"].contains(perms) && rng.next() % 3 == 0 {
                text += "?category=lab\(rng.next() % 3)"
            }
            return text
        case 3: return ["launch/patient", "launch-ehr", "fhirUser", "openid", "offline_access", "apiv2"].randomElement(using: &rng)!
        default: return "system/\(words.randomElement(using: &rng)!).\(["read", "write"].randomElement(using: &rng)!)"
        }
    }

    @Test("parse ∘ print is the identity")
    func parsePrint() throws {
        var rng = SplitMix64(seed: 42)
        for _ in 0..<5_000 {
            let text = Self.randomScope(&rng)
            let scope = try Scope(parsing: text)
            #expect(scope.description == text)
            #expect(try Scope(parsing: Scope(scope.form).description) == scope)
        }
    }

    @Test("intersection is commutative and never grows a set", arguments: ["marketplace-v3", "platform", "practice-api"])
    func intersection(_ surface: String) throws {
        let c = catalog(surface)
        var names = c.scopes.map(\.name).filter { $0 != c.globalScope }
        if surface == "platform" {
            names += ["patient/Observation.rs?category=laboratory", "patient/*.rs?category=vital-signs",
                      "user/Patient.r", "system/Condition.s", "patient/Observation.s?status=final"]
        }
        var rng = SplitMix64(seed: 7)
        func randomSet() throws -> ScopeSet {
            let count = Int(rng.next() % 8)
            return try c.resolve(names: (0..<count).map { _ in names.randomElement(using: &rng)! })
        }
        for _ in 0..<500 {
            let a = try randomSet(), b = try randomSet(), d = try randomSet()
            let ab = a.intersection(b)
            #expect(ab == b.intersection(a))
            #expect(ab.isSubset(of: a) && ab.isSubset(of: b))
            #expect(ab.intersection(d) == a.intersection(b.intersection(d)))
            #expect(a.intersection(a) == a)
            #expect(a.isSubset(of: a.union(b)))
            #expect(c.applyingDependencies(a).isSubset(of: a))
        }
    }
}
