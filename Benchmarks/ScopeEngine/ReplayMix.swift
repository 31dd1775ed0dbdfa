import Scopes

/// 100,000 requests as a server sees them, generated from a catalog for `decide` to replay:
/// every route, with random record ids (and random tails for `*`), list routes with their
/// query strings (a route's gate parameter in a third of them), 2 % of paths on no route,
/// callers holding 1–20 of the catalog's scopes (their sets resolved once, as the server
/// caches them), and for each request a caller it allows or one it denies, half and half
/// where the callers offer both. Deterministic: the same catalog gives the same mix.
struct ReplayMix {
    struct Request {
        var caller: Int
        var method: HTTPMethod
        var path: String
        var query: String?
    }

    let sets: [ScopeSet]
    let requests: [Request]
    /// Shares of the mix, for the report.
    let denied: Double
    let unrouted: Double

    init(_ catalog: CompiledCatalog, count: Int = 100_000, callers: Int = 256, seed: UInt64 = 0x5EED) {
        var random = SplitMix64(seed: seed)
        let names = catalog.scopes.map(\.name)
        sets = (0..<callers).map { _ in
            let held = (0..<random.int(1...20)).map { _ in names[random.int(0...(names.count - 1))] }
            return (try? catalog.resolve(names: held)) ?? .empty
        }
        let routes = catalog.routes
        var requests: [Request] = []
        requests.reserveCapacity(count)
        var denied = 0, unrouted = 0
        for _ in 0..<count {
            if random.int(0...99) < 2 {
                let prefix = routes[random.int(0...(routes.count - 1))].path.split(separator: "/").first.map(String.init) ?? "v3"
                requests.append(Request(caller: random.int(0...(callers - 1)), method: .get, path: "/\(prefix)/no-such-\(random.hex(6))/\(random.hex(8))"))
                unrouted += 1
                continue
            }
            let route = routes[random.int(0...(routes.count - 1))]
            let path = "/" + route.path.split(separator: "/").map { segment -> String in
                if segment == "*" { return "\(random.hex(4))/\(random.hex(10))" }
                guard segment.hasPrefix("{") else { return String(segment) }
                return segment.contains(":resourceType") ? ["Patient", "Observation", "Encounter", "Condition"][random.int(0...3)] : "\(random.hex(3))_\(random.hex(16))"
            }.joined(separator: "/")
            var query: String?
            if route.method == .get, !route.path.hasSuffix("}") {
                query = "limit=\(random.int(1...200))&cursor=\(random.hex(12))"
                if let gate = Self.gate(route.requirement), random.int(0...2) == 0 { query! += "&\(gate)=true" }
            }
            // A caller it allows or one it denies, half and half where both exist.
            let wantAllowed = random.int(0...1) == 0
            var caller = random.int(0...(callers - 1))
            var allowed = false
            for _ in 0..<callers {
                switch catalog.decide(sets[caller], method: route.method, path: path, query: query) {
                case .allowed: allowed = true
                default: allowed = false
                }
                if allowed == wantAllowed { break }
                caller = (caller + 1) % callers
            }
            if !allowed { denied += 1 }
            requests.append(Request(caller: caller, method: route.method, path: path, query: query))
        }
        self.requests = requests
        self.denied = Double(denied) / Double(count)
        self.unrouted = Double(unrouted) / Double(count)
    }

    /// The query parameter that adds a clause to a route (`includeSoapNote` of "… when `includeSoapNote` is set").
    static func gate(_ requirement: String) -> String? {
        guard let end = requirement.range(of: "` is set") else { return nil }
        let before = requirement[..<end.lowerBound]
        guard let start = before.lastIndex(of: "`") else { return nil }
        return String(before[before.index(after: start)...])
    }
}

/// A small, fast, seedable generator (Steele, Lea & Flood's SplitMix64).
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func int(_ range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(next() % UInt64(range.count))
    }

    mutating func hex(_ digits: Int) -> String {
        String((0..<digits).map { _ in "0123456789abcdef".randomElement(using: &self)! })
    }
}

extension SplitMix64: RandomNumberGenerator {}
