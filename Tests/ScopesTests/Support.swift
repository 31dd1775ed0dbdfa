import Foundation
import Scopes

/// The repository root, from this file's path.
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// The shipped catalogs, compiled once.
let shippedCatalogs: [String: CompiledCatalog] = {
    var result: [String: CompiledCatalog] = [:]
    let dir = repositoryRoot.appendingPathComponent("Catalogs")
    for name in ["marketplace-v3", "marketplace-v1", "platform", "practice-api"] {
        let data = try! Data(contentsOf: dir.appendingPathComponent("\(name).json"))
        let definition = try! JSONDecoder().decode(CatalogDefinition.self, from: data)
        result[name] = try! CompiledCatalog(definition)
    }
    return result
}()

func catalog(_ surface: String) -> CompiledCatalog { shippedCatalogs[surface]! }

extension CompiledCatalog {
    /// Resolves a scope list that the test knows to be valid.
    func set(_ scopes: String) -> ScopeSet { try! resolve(scopes) }

    /// The set a credential holding `scopes` has at runtime (dependencies applied).
    func effective(_ scopes: String) -> ScopeSet { applyingDependencies(set(scopes)) }

    func decide(_ scopes: String, _ method: String, _ target: String) -> Decision {
        decide(effective(scopes), method: method, target: target)
    }
}

/// Replaces `{param}` and a final `*` with sample values (a resource type for `{ResourceType}`,
/// which accepts type names only).
func samplePath(_ template: String, sample: String = "x1") -> String {
    template.split(separator: "/", omittingEmptySubsequences: false).map { segment in
        if segment == "{ResourceType}" { return "Patient" }
        return segment == "*" || (segment.hasPrefix("{") && segment.hasSuffix("}")) ? sample : String(segment)
    }.joined(separator: "/")
}

/// A small deterministic PRNG so that property and fuzz tests are repeatable.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
