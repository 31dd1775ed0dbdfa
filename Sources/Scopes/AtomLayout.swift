/// Where each permission lives in a ``ScopeSet``: one atom per non-resource scope
/// (aliases share their target's), then for every context in use a grid of
/// resource types × the five `cruds` letters, with the wildcard `*` as resource 0.
struct AtomLayout: Sendable {
    static let letters = 5

    private(set) var count = 0
    private var contextBases = [Int](repeating: -1, count: ScopeContext.allCases.count)
    /// Resource names; index 0 is the wildcard `*`.
    private(set) var resourceNames = ["*"]
    private(set) var resourceIndex: [String: Int] = ["*": 0]
    private(set) var readOnly = [false]
    private var sortedResources: [[UInt8]] = []
    private var sortedResourceIndex: [Int] = []

    mutating func addNamedAtom() -> Int {
        count += 1
        return count - 1
    }

    /// Adds a resource type (before the grid is laid out); returns its index.
    @discardableResult
    mutating func addResource(_ name: String, readOnly isReadOnly: Bool = false) -> Int {
        if let i = resourceIndex[name] {
            if isReadOnly { readOnly[i] = true }
            return i
        }
        resourceNames.append(name)
        readOnly.append(isReadOnly)
        resourceIndex[name] = resourceNames.count - 1
        return resourceNames.count - 1
    }

    /// Lays out the resource grid for each context in use; call once, after every resource was added.
    mutating func layOut(contexts: Set<ScopeContext>) {
        for context in ScopeContext.allCases where contexts.contains(context) {
            contextBases[ScopeContext.allCases.firstIndex(of: context)!] = count
            count += resourceNames.count * AtomLayout.letters
        }
        let order = resourceNames.indices.sorted { RouteTrie.compare(Array(resourceNames[$0].utf8), Array(resourceNames[$1].utf8)) < 0 }
        sortedResources = order.map { Array(resourceNames[$0].utf8) }
        sortedResourceIndex = order
    }

    subscript(contextBase context: ScopeContext) -> Int? {
        let base = contextBases[ScopeContext.allCases.firstIndex(of: context)!]
        return base < 0 ? nil : base
    }

    /// Atoms a grant of `context/resource.permissions` holds: a wildcard holds the letters
    /// of every resource type, known now or not (writes excepted on read-only types).
    func grantMask(context: ScopeContext, resource: Int, permissions: Permissions) -> ScopeSet.Bits {
        guard let base = self[contextBase: context] else { return .zero }
        var mask = ScopeSet.Bits.zero
        let resources = resource == 0 ? Array(resourceNames.indices) : [resource]
        for r in resources {
            for letter in 0..<AtomLayout.letters where permissions.contains(Permissions(rawValue: 1 << letter)) {
                if readOnly[r] && Permissions.v1Write.contains(Permissions(rawValue: 1 << letter)) { continue }
                mask |= .bit(base + r * AtomLayout.letters + letter)
            }
        }
        return mask
    }

    /// Atoms a request on `context/resource` needs: only that resource's letters
    /// (for `*`, the wildcard's own — a specific grant never opens a wildcard route).
    @inline(__always)
    func requirementMask(context: ScopeContext, resource: Int, permissions: Permissions) -> ScopeSet.Bits {
        guard let base = self[contextBase: context] else { return .zero }
        var mask = ScopeSet.Bits.zero
        for letter in 0..<AtomLayout.letters where permissions.rawValue & (1 << letter) != 0 {
            mask |= .bit(base + resource * AtomLayout.letters + letter)
        }
        return mask
    }

    /// The resource index of a decoded path segment; unknown types map to the wildcard
    /// (so only wildcard grants open them).
    func resource(matching key: UnsafeBufferPointer<UInt8>) -> Int {
        var low = 0, high = sortedResources.count - 1
        while low <= high {
            let mid = (low + high) >> 1
            let order = sortedResources[mid].withUnsafeBufferPointer { RouteTrie.compare($0, key) }
            if order == 0 { return sortedResourceIndex[mid] }
            if order < 0 { low = mid + 1 } else { high = mid - 1 }
        }
        return 0
    }
}
