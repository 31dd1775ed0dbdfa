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
    var isPublic: Bool
    var clauses: [Clause]
    var gates: [Gate]
    /// Set when the route needs exactly one fixed mask: the whole decision is one AND.
    var fastMask: ScopeSet.Bits?
}

/// What a `{param}` segment accepts.
enum ParameterKind: UInt8, Sendable {
    /// Any segment that does not name an operation (`$export`).
    case any
    /// A resource type name: one of the catalog's `resourceTypes` (or, in a catalog that lists
    /// none, `^[A-Z][A-Za-z]+$`), so that `$export`, `metadata` or `patient` never pass as a type.
    case resourceType
}

/// Method + path segments → route, as a trie of literal segments, `{param}` and a final `*`.
/// Literal segments are tried before parameters, parameters before `*`; the search
/// backtracks so that `POST /fhir/R4/Observation` finds `POST /fhir/R4/{ResourceType}`
/// when the literal `Observation` node has only `GET`. A segment that starts with `$` (a FHIR
/// operation) matches only a literal segment: never a parameter, never `*`.
///
/// Built with ``insert(_:method:route:)``, then ``frozen()`` lays it out flat — plain
/// integers and one byte pool — so that matching touches no reference counts.
struct RouteTrie: Sendable {
    enum Segment: Hashable {
        case literal(String)
        case param(String, ParameterKind)
        case tail
    }

    enum Conflict: Error {
        /// A route with the same method and path shape is already there.
        case duplicate(Int)
        /// Another route has a parameter of another kind at the same position.
        case parameterKind
    }

    private struct BuildNode {
        var literals: [[UInt8]] = []   // sorted
        var literalChildren: [Int] = []
        var param = -1
        var paramKind = ParameterKind.any
        var tail = -1
        var routes = [Int32](repeating: -1, count: HTTPMethod.allCases.count)
    }

    private var building = [BuildNode()]

    /// Inserts a route, unless it conflicts with one already there.
    mutating func insert(_ segments: [Segment], method: HTTPMethod, route: Int) throws(Conflict) {
        var node = 0
        for segment in segments {
            switch segment {
            case .literal(let text):
                let key = Array(text.utf8)
                if let i = building[node].literals.firstIndex(of: key) {
                    node = building[node].literalChildren[i]
                } else {
                    let child = newNode()
                    let at = building[node].literals.firstIndex { RouteTrie.compare($0, key) > 0 } ?? building[node].literals.count
                    building[node].literals.insert(key, at: at)
                    building[node].literalChildren.insert(child, at: at)
                    node = child
                }
            case .param(_, let kind):
                if building[node].param < 0 {
                    building[node].param = newNode()
                    building[node].paramKind = kind
                } else if building[node].paramKind != kind {
                    throw .parameterKind
                }
                node = building[node].param
            case .tail:
                if building[node].tail < 0 { building[node].tail = newNode() }
                node = building[node].tail
            }
        }
        let existing = building[node].routes[Int(method.rawValue)]
        if existing >= 0 { throw .duplicate(Int(existing)) }
        building[node].routes[Int(method.rawValue)] = Int32(route)
    }

    private mutating func newNode() -> Int {
        building.append(BuildNode())
        return building.count - 1
    }

    /// `resourceTypes`: what a ``ParameterKind/resourceType`` parameter accepts (empty: the pattern).
    func frozen(resourceTypes: [String]) -> FrozenRouteTrie {
        var nodes: [FrozenRouteTrie.Node] = []
        var edges: [FrozenRouteTrie.Edge] = []
        var pool: [UInt8] = []
        var routes: [Int32] = []
        for node in building {
            nodes.append(FrozenRouteTrie.Node(
                firstEdge: Int32(edges.count), edgeCount: Int32(node.literals.count),
                param: Int32(node.param), paramKind: node.paramKind, tail: Int32(node.tail),
                hasRoutes: node.routes.contains { $0 >= 0 }))
            for (key, child) in zip(node.literals, node.literalChildren) {
                edges.append(FrozenRouteTrie.Edge(offset: Int32(pool.count), length: Int32(key.count), child: Int32(child)))
                pool += key
            }
            routes += node.routes
        }
        var types: [FrozenRouteTrie.Edge] = []
        for name in Set(resourceTypes.map { Array($0.utf8) }).sorted(by: { RouteTrie.compare($0, $1) < 0 }) {
            types.append(FrozenRouteTrie.Edge(offset: Int32(pool.count), length: Int32(name.count), child: -1))
            pool += name
        }
        return FrozenRouteTrie(nodes: nodes, edges: edges, pool: pool, routes: routes, resourceTypes: types)
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

/// The flat, read-only form of a ``RouteTrie``.
struct FrozenRouteTrie: Sendable {
    struct Node: Sendable {
        var firstEdge: Int32
        var edgeCount: Int32
        var param: Int32
        var paramKind: ParameterKind
        var tail: Int32
        var hasRoutes: Bool
    }

    struct Edge: Sendable {
        var offset: Int32
        var length: Int32
        var child: Int32
    }

    let nodes: [Node]
    let edges: [Edge]
    let pool: [UInt8]
    /// `HTTPMethod.allCases.count` entries per node: the route index, or -1.
    let routes: [Int32]
    /// The names a resource-type parameter accepts, sorted, in `pool` (empty: the pattern).
    let resourceTypes: [Edge]

    /// Finds the route for `method` over the decoded segments. `pathMatched` tells,
    /// when no route is found, whether some route had this path with another method.
    func match(
        method: HTTPMethod, bytes: UnsafeMutableBufferPointer<UInt8>,
        bounds: UnsafeMutableBufferPointer<Int>, count: Int, pathMatched: inout Bool
    ) -> Int {
        nodes.withUnsafeBufferPointer { nodes in
            edges.withUnsafeBufferPointer { edges in
                pool.withUnsafeBufferPointer { pool in
                    routes.withUnsafeBufferPointer { routes in
                        resourceTypes.withUnsafeBufferPointer { types in
                            let walker = Walker(
                                nodes: nodes, edges: edges, pool: pool, routes: routes, types: types, method: Int(method.rawValue),
                                isHead: method == .head, bytes: UnsafeBufferPointer(bytes), bounds: UnsafeBufferPointer(bounds), count: count)
                            return walker.match(node: 0, segment: 0, pathMatched: &pathMatched)
                        }
                    }
                }
            }
        }
    }

    private struct Walker {
        let nodes: UnsafeBufferPointer<Node>
        let edges: UnsafeBufferPointer<Edge>
        let pool: UnsafeBufferPointer<UInt8>
        let routes: UnsafeBufferPointer<Int32>
        let types: UnsafeBufferPointer<Edge>
        let method: Int
        let isHead: Bool
        let bytes: UnsafeBufferPointer<UInt8>
        let bounds: UnsafeBufferPointer<Int>
        let count: Int

        func match(node index: Int, segment: Int, pathMatched: inout Bool) -> Int {
            let node = nodes[index]
            if segment == count { return route(index, node, &pathMatched) }
            let key = UnsafeBufferPointer(rebasing: bytes[bounds[2 * segment]..<bounds[2 * segment + 1]])
            // Binary search over the node's sorted literal edges.
            var low = Int(node.firstEdge), high = Int(node.firstEdge + node.edgeCount) - 1
            while low <= high {
                let mid = (low + high) >> 1
                let edge = edges[mid]
                let literal = UnsafeBufferPointer(rebasing: pool[Int(edge.offset)..<Int(edge.offset + edge.length)])
                let order = RouteTrie.compare(literal, key)
                if order == 0 {
                    let found = match(node: Int(edge.child), segment: segment + 1, pathMatched: &pathMatched)
                    if found >= 0 { return found }
                    break
                }
                if order < 0 { low = mid + 1 } else { high = mid - 1 }
            }
            // An operation (`$export`) is never a parameter's value, nor part of a `*` tail.
            if node.param >= 0 && !Self.isOperation(key) && (node.paramKind == .any || isResourceType(key)) {
                let found = match(node: Int(node.param), segment: segment + 1, pathMatched: &pathMatched)
                if found >= 0 { return found }
            }
            if node.tail >= 0 && !(segment..<count).contains(where: { isOperation(segment: $0) }) {
                return route(Int(node.tail), nodes[Int(node.tail)], &pathMatched)
            }
            return -1
        }

        @inline(__always) static func isOperation(_ key: UnsafeBufferPointer<UInt8>) -> Bool {
            !key.isEmpty && key[0] == UInt8(ascii: "$")
        }

        func isOperation(segment s: Int) -> Bool {
            bounds[2 * s] < bounds[2 * s + 1] && bytes[bounds[2 * s]] == UInt8(ascii: "$")
        }

        func isResourceType(_ key: UnsafeBufferPointer<UInt8>) -> Bool {
            if types.isEmpty {
                // ^[A-Z][A-Za-z]+$
                guard key.count >= 2, (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(key[0]) else { return false }
                return key.allSatisfy { (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) }
            }
            var low = 0, high = types.count - 1
            while low <= high {
                let mid = (low + high) >> 1
                let name = UnsafeBufferPointer(rebasing: pool[Int(types[mid].offset)..<Int(types[mid].offset + types[mid].length)])
                let order = RouteTrie.compare(name, key)
                if order == 0 { return true }
                if order < 0 { low = mid + 1 } else { high = mid - 1 }
            }
            return false
        }

        @inline(__always) func route(_ index: Int, _ node: Node, _ pathMatched: inout Bool) -> Int {
            let base = index * HTTPMethod.allCases.count
            let direct = routes[base + method]
            if direct >= 0 { return Int(direct) }
            if isHead {
                let get = routes[base + Int(HTTPMethod.get.rawValue)]
                if get >= 0 { return Int(get) }
            }
            if node.hasRoutes { pathMatched = true }
            return -1
        }
    }
}
