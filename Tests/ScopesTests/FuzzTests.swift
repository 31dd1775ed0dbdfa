import Scopes
import Testing

/// Bad input never crashes: random and mutated strings get a clean error or a valid result.
@Suite("Fuzz")
struct FuzzTests {
    static let seeds = [
        "read:patients", "cms.fhir.r4.read", "patient/Observation.rs?category=laboratory", "user/*.write",
        "system/patients.read", "launch/patient", "fhirUser", "apiv2", "velocity.clearinghouse.claims.write",
    ]
    static let alphabet: [Character] = Array("abcdrsuwxyz:/.?=&*_-{} %\t\n\u{0}\u{7F}AZ09é\u{430}\u{200B}🙂")

    static func mutate(_ text: String, _ rng: inout SplitMix64) -> String {
        var chars = Array(text)
        for _ in 0..<Int(1 + rng.next() % 4) {
            switch rng.next() % 4 {
            case 0 where !chars.isEmpty: chars.remove(at: Int(rng.next() % UInt64(chars.count)))
            case 1: chars.insert(alphabet.randomElement(using: &rng)!, at: Int(rng.next() % UInt64(chars.count + 1)))
            case 2 where !chars.isEmpty: chars[Int(rng.next() % UInt64(chars.count))] = alphabet.randomElement(using: &rng)!
            default: chars += Array(seeds.randomElement(using: &rng)!)
            }
        }
        return String(chars)
    }

    @Test("100k random and mutated scope strings")
    func scopes() {
        var rng = SplitMix64(seed: 2026)
        var valid = 0, invalid = 0
        let platform = catalog("platform")
        for i in 0..<100_000 {
            let text: String
            if i % 2 == 0 {
                text = Self.mutate(Self.seeds.randomElement(using: &rng)!, &rng)
            } else {
                text = String((0..<Int(rng.next() % 40)).map { _ in Self.alphabet.randomElement(using: &rng)! })
            }
            do {
                let scope = try Scope(parsing: text)
                // A valid scope prints back exactly, and is plain ASCII without spaces.
                #expect(scope.description == text)
                #expect(text.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F })
                valid += 1
                _ = try? platform.resolve([scope])
            } catch {
                #expect(!error.explanation.isEmpty)
                #expect(error.description.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F || $0 >= 0x80 })
                invalid += 1
            }
        }
        #expect(valid > 1_000 && invalid > 1_000)
    }

    @Test("100k random and mutated request paths")
    func paths() {
        var rng = SplitMix64(seed: 99)
        let v3 = catalog("marketplace-v3")
        let set = v3.set("read:patients read:notes")
        let bases = ["/v3/patients/p1", "/v3/notes?includeSoapNote=true", "/v3/inventory/changes/c1/products", "/v3/marketplace/me"]
        var counts = [String: Int]()
        for _ in 0..<100_000 {
            let target = Self.mutate(bases.randomElement(using: &rng)!, &rng)
            let decision = v3.decide(set, method: "GET", target: target)
            switch decision {
            case .allowed: counts["allowed", default: 0] += 1
            case .insufficientScope(_, let required): #expect(!required.isEmpty); counts["denied", default: 0] += 1
            case .invalidPath: counts["invalid", default: 0] += 1
            default: counts["other", default: 0] += 1
            }
        }
        #expect(counts.count == 4)
    }
}
