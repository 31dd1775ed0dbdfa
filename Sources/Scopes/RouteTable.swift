/// What a route needs: every clause must hold; a clause holds when any of its
/// alternatives is covered by the effective set.
struct Clause: Sendable {
    var alternatives: [Alternative]
    /// The scope named in a 403 when the clause does not hold.
    var display: String
    /// Human text of every alternative (for `caregate check` and the docs).
    var texts: [String]
}

struct Alternative: Sendable {
    enum Source: Sendable {
        /// A fixed set of atoms.
        case fixed
        /// `context/{param}.letters`: the resource type is the path segment at this index.
        case pathSegment(Int)
        /// `context/{query.name}.letters`: every type listed (comma-separated) in that query parameter.
        case queryList([UInt8])
    }

    var source: Source
    var mask: ScopeSet.Bits
    var context: ScopeContext
    var permissions: Permissions
}

/// A query parameter that adds a clause when present with a value other than `false`.
struct Gate: Sendable {
    var name: [UInt8]
    var nameText: String
    var clause: Clause
}

struct CompiledRoute: Sendable {
    var method: HTTPMethod
    var template: String
    var isPublic: Bool
    var clauses: [Clause]
    var gates: [Gate]
    var description: String?
    /// Set when the route needs exactly one fixed mask: the whole decision is one AND.
    var fastMask: ScopeSet.Bits?
}

/// Method + path segments → route, as a trie of literal segments, `{param}` and a final `*`.
/// Literal segments are tried before parameters, parameters before `*`; the search
/// backtracks so that `POST /fhir/R4/Observation` finds `POST /fhir/R4/{ResourceType}`
/// when the literal `Observation` node has only `GET`.
struct RouteTrie: Sendable {
    struct Node: Sendable {
        var literals: [[UInt8]] = []   // sorted
        var literalChildren: [Int] = []
        var param = -1
        var tail = -1
        var routes = [Int](repeating: -1, count: HTTPMethod.allCases.count)
        var hasRoutes: Bool { routes.contains { $0 >= 0 } }
    }

    private(set) var nodes = [Node()]

    enum Segment: Hashable {
        case literal(String)
        case param(String)
        case tail
    }

    /// Inserts a route; returns the route already there for this method and shape, if any.
    mutating func insert(_ segments: [Segment], method: HTTPMethod, route: Int) -> Int? {
        var node = 0
        for segment in segments {
            switch segment {
            case .literal(let text):
                let key = Array(text.utf8)
                if let i = nodes[node].literals.firstIndex(of: key) {
                    node = nodes[node].literalChildren[i]
                } else {
                    let child = newNode()
                    let at = nodes[node].literals.firstIndex { RouteTrie.compare($0, key) > 0 } ?? nodes[node].literals.count
                    nodes[node].literals.insert(key, at: at)
                    nodes[node].literalChildren.insert(child, at: at)
                    node = child
                }
            case .param:
                if nodes[node].param < 0 { nodes[node].param = newNode() }
                node = nodes[node].param
            case .tail:
                if nodes[node].tail < 0 { nodes[node].tail = newNode() }
                node = nodes[node].tail
            }
        }
        let existing = nodes[node].routes[Int(method.rawValue)]
        if existing >= 0 { return existing }
        nodes[node].routes[Int(method.rawValue)] = route
        return nil
    }

    private mutating func newNode() -> Int {
        nodes.append(Node())
        return nodes.count - 1
    }

    /// Finds the route for `method` over the decoded segments. `pathMatched` tells,
    /// when no route is found, whether some route had this path with another method.
    func match(
        method: HTTPMethod, bytes: UnsafeMutableBufferPointer<UInt8>,
        bounds: UnsafeMutableBufferPointer<Int>, count: Int, pathMatched: inout Bool
    ) -> Int {
        match(node: 0, segment: 0, method: method, bytes: bytes, bounds: bounds, count: count, pathMatched: &pathMatched)
    }

    private func match(
        node index: Int, segment: Int, method: HTTPMethod, bytes: UnsafeMutableBufferPointer<UInt8>,
        bounds: UnsafeMutableBufferPointer<Int>, count: Int, pathMatched: inout Bool
    ) -> Int {
        let node = nodes[index]
        if segment == count { return route(node, method, &pathMatched) }
        let key = UnsafeBufferPointer(rebasing: bytes[bounds[2 * segment]..<bounds[2 * segment + 1]])
        // Binary search over the sorted literal children.
        var low = 0, high = node.literals.count - 1
        while low <= high {
            let mid = (low + high) >> 1
            let order = node.literals[mid].withUnsafeBufferPointer { RouteTrie.compare($0, key) }
            if order == 0 {
                let found = match(
                    node: node.literalChildren[mid], segment: segment + 1, method: method,
                    bytes: bytes, bounds: bounds, count: count, pathMatched: &pathMatched)
                if found >= 0 { return found }
                break
            }
            if order < 0 { low = mid + 1 } else { high = mid - 1 }
        }
        if node.param >= 0 {
            let found = match(
                node: node.param, segment: segment + 1, method: method,
                bytes: bytes, bounds: bounds, count: count, pathMatched: &pathMatched)
            if found >= 0 { return found }
        }
        if node.tail >= 0 { return route(nodes[node.tail], method, &pathMatched) }
        return -1
    }

    @inline(__always) private func route(_ node: Node, _ method: HTTPMethod, _ pathMatched: inout Bool) -> Int {
        let direct = node.routes[Int(method.rawValue)]
        if direct >= 0 { return direct }
        if method == .head {
            let get = node.routes[Int(HTTPMethod.get.rawValue)]
            if get >= 0 { return get }
        }
        if node.hasRoutes { pathMatched = true }
        return -1
    }

    static func compare(_ a: [UInt8], _ b: [UInt8]) -> Int {
        a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in compare(pa, pb) } }
    }

    @inline(__always) static func compare(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Int {
        let n = min(a.count, b.count)
        var i = 0
        while i < n {
            if a[i] != b[i] { return a[i] < b[i] ? -1 : 1 }
            i += 1
        }
        return a.count == b.count ? 0 : (a.count < b.count ? -1 : 1)
    }
}
