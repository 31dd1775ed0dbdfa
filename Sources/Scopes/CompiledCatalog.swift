/// A catalog compiled for enforcement: scopes to permission atoms (bit positions),
/// implications closed, routes in a trie. Immutable and safe to share between threads.
///
/// ```swift
/// let catalog = try CompiledCatalog(definition)
/// let key = try catalog.resolve("read:patients read:notes")
/// let grants = try catalog.resolve("read:patients")
/// let effective = catalog.effectiveSet(credential: key, grants: grants, credentialType: .apiKey)
/// switch catalog.decide(effective, method: .get, path: "/v3/patients/p1") { … }
/// ```
///
/// Compile each catalog once, at start-up or on reload, and share it; resolving and deciding
/// are cheap, compiling is not. The article <doc:EmbeddingTheEngine> walks through the steps.
public final class CompiledCatalog: Sendable {
    /// The catalog as written, kept for listings and for recompiling.
    public let definition: CatalogDefinition
    /// Every scope, explicit and generated, in catalog order.
    public let scopes: [CatalogScope]
    /// Every route, listed then generated, indexed by ``RouteID/index``.
    public let routes: [RouteInfo]

    let layout: AtomLayout
    let entryIndex: [String: Int]
    /// Masks and names by scope index, so that listing a set's scopes copies no `CatalogScope`.
    let scopeMasks: [ScopeSet.Bits]
    let scopeNameList: [String]
    let knownMask: ScopeSet.Bits
    let credentialMasks: [ScopeSet.Bits]  // by CredentialType.allCases index
    let selfServiceMask: ScopeSet.Bits
    let dependencies: [(scope: ScopeSet.Bits, requires: ScopeSet.Bits)]
    let globalEntry: Int?
    let compiledRoutes: [CompiledRoute]
    let trie: FrozenRouteTrie
    /// Per route, for the hot path: the single mask that opens it (if it has one) and
    /// whether it is public — plain values, so deciding touches no reference counts.
    let fastPath: [FastRoute]

    struct FastRoute {
        var mask: ScopeSet.Bits
        var kind: Kind
        enum Kind: UInt8 { case publicRoute, singleMask, general }
    }

    /// Takes a finished compiler's results; ``init(_:)`` runs the compiler.
    init(compiled c: CatalogCompiler) {
        definition = c.definition
        scopes = c.scopes
        routes = c.routes
        layout = c.layout
        var index: [String: Int] = [:]
        for (i, s) in c.scopes.enumerated() { index[s.name] = i }
        entryIndex = index
        scopeMasks = c.scopes.map(\.mask)
        scopeNameList = c.scopes.map(\.name)
        knownMask = c.knownMask
        credentialMasks = c.credentialMasks
        selfServiceMask = c.selfServiceMask
        dependencies = c.dependencies
        globalEntry = c.globalEntry
        compiledRoutes = c.compiledRoutes
        trie = c.trie.frozen(resourceTypes: c.definition.resourceTypes + c.definition.resourceTypeNames)
        fastPath = c.compiledRoutes.map { route in
            if route.isPublic { return FastRoute(mask: .zero, kind: .publicRoute) }
            if let mask = route.fastMask { return FastRoute(mask: mask, kind: .singleMask) }
            return FastRoute(mask: .zero, kind: .general)
        }
    }

    /// Validates and compiles a catalog.
    /// - Parameter definition: The catalog as written, usually decoded from its JSON file.
    /// - Throws: ``CatalogError`` listing every problem found, not just the first, so that
    ///   a catalog author can fix them in one pass.
    public convenience init(_ definition: CatalogDefinition) throws(CatalogError) {
        var compiler = CatalogCompiler(definition)
        try compiler.compile()
        self.init(compiled: compiler)
        try compiler.checkEndpoints(against: self)
    }

    /// The surface this catalog governs (`marketplace-v3`).
    public var surface: String { definition.surface }
    /// The scope that opens every route and stands alone, if the surface has one.
    public var globalScope: String? { globalEntry.map { scopes[$0].name } }
    /// How many of the ``ScopeSet/capacity`` permission atoms this catalog uses.
    public var atomCount: Int { layout.count }

    /// Whether the catalog has SMART resource scopes, and so takes the SMART grammar's
    /// identity and launch-context scopes (see ``SMARTContextScopes``).
    public var acceptsSMARTScopes: Bool { layout[contextBase: .patient] != nil || layout[contextBase: .user] != nil }

    /// Looks up a scope by its exact name.
    /// - Parameter name: The scope as written in the catalog.
    /// - Returns: The scope, or `nil` when the catalog has no scope of that name (SMART
    ///   scopes that are valid without being listed, such as `patient/Observation.rs`, are `nil`).
    public func scope(named name: String) -> CatalogScope? { entryIndex[name].map { scopes[$0] } }


    // MARK: Resolving requested scopes

    /// Resolves a space-separated scope list (an OAuth `scope` parameter) to a set.
    /// - Parameters:
    ///   - list: Scopes separated by single spaces; duplicates count once.
    ///   - credentialType: When given, scopes this type of credential may not carry are refused.
    /// - Returns: The permissions the list grants in this catalog.
    /// - Throws: ``ScopeResolutionError`` naming the first scope that cannot be granted.
    public func resolve(_ list: String, credentialType: CredentialType? = nil) throws(ScopeResolutionError) -> ScopeSet {
        try resolve(Self.parsed { () throws(ScopeError) in try ScopeList.parse(list) }, credentialType: credentialType)
    }

    /// Resolves scopes given one by one (a JSON array) to a set, with the list's limits.
    /// - Parameters:
    ///   - names: One scope per element; duplicates count once.
    ///   - credentialType: When given, scopes this type of credential may not carry are refused.
    /// - Returns: The permissions the scopes grant in this catalog.
    /// - Throws: ``ScopeResolutionError`` naming the first scope that cannot be granted.
    public func resolve(names: [String], credentialType: CredentialType? = nil) throws(ScopeResolutionError) -> ScopeSet {
        try resolve(Self.parsed { () throws(ScopeError) in try ScopeList.parse(names) }, credentialType: credentialType)
    }

    /// A list's parse, with a grammar error reported as a resolution error naming the scope.
    private static func parsed(_ parse: () throws(ScopeError) -> [Scope]) throws(ScopeResolutionError) -> [Scope] {
        do { return try parse() } catch { throw ScopeResolutionError(scope: error.text, reason: .syntax(error)) }
    }

    /// Resolves parsed scopes to a set. Refuses unknown scopes, writes to read-only
    /// resources, the global scope combined with others, and (when `credentialType`
    /// is given) scopes that credential type may not carry — naming the scope each time.
    /// - Parameters:
    ///   - requested: Parsed scopes.
    ///   - credentialType: When given, scopes this type of credential may not carry are refused.
    /// - Returns: The permissions the scopes grant in this catalog.
    /// - Throws: ``ScopeResolutionError`` naming the first scope that cannot be granted.
    public func resolve(_ requested: [Scope], credentialType: CredentialType? = nil) throws(ScopeResolutionError) -> ScopeSet {
        if let g = globalEntry, requested.count > 1, requested.contains(where: { $0.description == scopes[g].name }) {
            let other = requested.first { $0.description != scopes[g].name }!
            throw ScopeResolutionError(scope: other.description, reason: .globalCombined(global: scopes[g].name))
        }
        var bits = ScopeSet.Bits.zero
        var constrained: [ConstrainedGrant] = []
        for scope in requested {
            let mask = try grantMask(scope)
            if let type = credentialType {
                let allowed = credentialMasks[CredentialType.allCases.firstIndex(of: type)!]
                if mask & ~allowed != .zero {
                    let types = entryIndex[scope.description].map { scopes[$0].credentialTypes }
                        ?? CredentialType.allCases.filter { mask & ~credentialMasks[CredentialType.allCases.firstIndex(of: $0)!] == .zero }
                    throw ScopeResolutionError(scope: scope.description, reason: .credentialType(type, allowed: types))
                }
            }
            if let r = scope.resourceScope, !r.constraints.isEmpty {
                constrained.append(ConstrainedGrant(mask: mask, constraints: Set(r.constraints)))
            } else {
                bits |= mask
            }
        }
        return ScopeSet(bits: bits, constrained: ConstrainedGrant.normalise(constrained, unconstrained: bits))
    }

    func grantMask(_ scope: Scope) throws(ScopeResolutionError) -> ScopeSet.Bits {
        if let i = entryIndex[scope.description] { return scopes[i].mask }
        if case .bare(let name) = scope.form, acceptsSMARTScopes, let meaning = SMARTContextScopes.meaning[name] {
            // Identity, launch-context and refresh scopes: valid on a SMART catalog without
            // being entries; they open no route (or the same as the entry they spell differently).
            return meaning.flatMap { entryIndex[$0] }.map { scopes[$0].mask } ?? .zero
        }
        guard case .resource(let r) = scope.form else {
            throw ScopeResolutionError(scope: scope.description, reason: .unknown)
        }
        guard layout[contextBase: r.context] != nil else {
            throw ScopeResolutionError(scope: scope.description, reason: .unknown)
        }
        let resource: Int
        if let name = r.resource {
            guard let i = layout.resourceIndex[name] else {
                throw ScopeResolutionError(scope: scope.description, reason: .unknownResourceType(name))
            }
            if layout.readOnly[i] && !r.permissions.isDisjoint(with: .v1Write) {
                throw ScopeResolutionError(scope: scope.description, reason: .readOnlyResource(name))
            }
            resource = i
        } else {
            resource = 0
        }
        let mask = layout.grantMask(context: r.context, resource: resource, permissions: r.permissions)
        if mask == .zero || mask & ~knownMask != .zero {
            throw ScopeResolutionError(scope: scope.description, reason: .unknown)
        }
        return mask
    }

    // MARK: Effective sets

    /// The runtime permission: the credential's scopes ∩ the clinic's grants, limited to
    /// what the credential's type may carry, with dependent scopes dropped when what they
    /// depend on is missing. Intersect `grants` with the app's declared scopes first when
    /// the declaration may have shrunk since the grant.
    /// - Parameters:
    ///   - credential: What the credential (key or token) was issued with.
    ///   - grants: What the clinic granted the app.
    ///   - credentialType: The credential's type.
    /// - Returns: The set to pass to ``decide(_:method:path:query:)`` on each request; compute
    ///   it once per credential, not per request.
    @inlinable
    public func effectiveSet(credential: ScopeSet, grants: ScopeSet, credentialType: CredentialType) -> ScopeSet {
        applyingDependencies(restricted(credential.intersection(grants), to: credentialType))
    }

    /// Drops what a credential of `type` may not carry.
    /// - Parameters:
    ///   - set: A set of this catalog.
    ///   - type: The credential's type.
    /// - Returns: The part of `set` that `type` may carry.
    public func restricted(_ set: ScopeSet, to type: CredentialType) -> ScopeSet {
        set.intersection(ScopeSet(bits: credentialMasks[CredentialType.allCases.firstIndex(of: type)!]))
    }

    /// Removes dependent scopes whose required scopes are not in the set
    /// (`read:soap_notes` without `read:notes` has no effect).
    /// - Parameter set: A set of this catalog.
    /// - Returns: `set` without the scopes whose requirements it lacks.
    public func applyingDependencies(_ set: ScopeSet) -> ScopeSet {
        if dependencies.isEmpty { return set }
        var result = set
        var changed = true
        while changed {
            changed = false
            for d in dependencies where result.covers(d.scope) && !result.covers(d.requires) {
                result.bits &= ~d.scope
                changed = true
            }
        }
        if !result.constrained.isEmpty {
            result.constrained = ConstrainedGrant.normalise(result.constrained, unconstrained: result.bits)
        }
        return result
    }

    /// The part of `set` a partner may assign to its own credentials without clinic approval.
    /// - Parameter set: A set of this catalog.
    /// - Returns: The self-service scopes of `set`.
    public func selfService(_ set: ScopeSet) -> ScopeSet { set.intersection(ScopeSet(bits: selfServiceMask)) }

    /// The catalog scopes a set holds, in catalog order (aliases both listed).
    /// A set that holds the global scope is named by it alone.
    /// - Parameter set: A set of this catalog.
    /// - Returns: Scope names to show or to put in a token's `scope` claim.
    public func scopeNames(in set: ScopeSet) -> [String] {
        if let g = globalEntry, set.covers(scopeMasks[g]) { return [scopes[g].name] }
        var names: [String] = []
        for i in scopeMasks.indices where scopeMasks[i] != .zero && set.covers(scopeMasks[i]) { names.append(scopeNameList[i]) }
        return names
    }

    /// Whether `set` holds every permission of the named catalog scope: how a handler checks
    /// a scope that changes what a route returns rather than whether it opens.
    /// - Parameters:
    ///   - set: A set of this catalog.
    ///   - name: A scope listed in the catalog.
    /// - Returns: `false` also when the catalog has no scope of that name.
    public func contains(_ set: ScopeSet, scope name: String) -> Bool {
        guard let i = entryIndex[name] else { return false }
        return set.covers(scopeMasks[i])
    }

    // MARK: Deciding

    /// Decides one request. `path` is the raw request path (percent-encoded, no query);
    /// `query` the raw query string without `?`. Allocation-free for an ordinary hit.
    /// - Parameters:
    ///   - set: The credential's effective set (``effectiveSet(credential:grants:credentialType:)``).
    ///   - method: The request method.
    ///   - path: The raw request path, percent-encoded, without the query.
    ///   - query: The raw query string without `?`, or `nil`; query gates and SMART query
    ///     constraints read it.
    /// - Returns: Whether the request may proceed and, if not, why.
    public func decide(_ set: ScopeSet, method: HTTPMethod, path: String, query: String? = nil) -> Decision {
        var path = path
        return path.withUTF8 { raw -> Decision in
            if raw.count > RequestPath.maxBytes { return .invalidPath(.tooLong) }
            return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: max(raw.count, 1)) { out in
                withUnsafeTemporaryAllocation(of: Int.self, capacity: 2 * RequestPath.maxSegments) { bounds in
                    switch RequestPath.split(raw, into: out, bounds: bounds) {
                    case .failure(let error):
                        return .invalidPath(error)
                    case .success(let count):
                        var pathMatched = false
                        let index = trie.match(method: method, bytes: out, bounds: bounds, count: count, pathMatched: &pathMatched)
                        if index < 0 { return pathMatched ? .methodNotAllowed : .notFound }
                        return evaluate(index, set, out, bounds, query)
                    }
                }
            }
        }
    }

    /// Decides a request given as method name and request target (`/path?query`), for tools
    /// and servers that hold the request line as text.
    /// - Parameters:
    ///   - set: The credential's effective set.
    ///   - method: The method's name (`GET`); an unknown one is ``Decision/methodNotAllowed``.
    ///   - target: The raw request target: path, then optionally `?` and the query.
    /// - Returns: Whether the request may proceed and, if not, why.
    public func decide(_ set: ScopeSet, method: String, target: String) -> Decision {
        guard let m = HTTPMethod(method) else { return .methodNotAllowed }
        if let q = target.utf8.firstIndex(of: UInt8(ascii: "?")) {
            return decide(set, method: m, path: String(target[..<q]), query: String(target[target.index(after: q)...]))
        }
        return decide(set, method: m, path: target, query: nil)
    }

    private func evaluate(
        _ index: Int, _ set: ScopeSet, _ bytes: UnsafeMutableBufferPointer<UInt8>,
        _ bounds: UnsafeMutableBufferPointer<Int>, _ query: String?
    ) -> Decision {
        let id = RouteID(index: index)
        let fast = fastPath.withUnsafeBufferPointer { $0[index] }
        switch fast.kind {
        case .publicRoute:
            return .allowed(id)
        case .singleMask:
            if set.covers(fast.mask) { return .allowed(id) }
            if set.constrained.isEmpty { return .insufficientScope(id, required: compiledRoutes[index].clauses[0].display) }
        case .general:
            break
        }
        let route = compiledRoutes[index]
        for clause in route.clauses where !holds(clause, set, bytes, bounds, query) {
            return .insufficientScope(id, required: clause.display)
        }
        if !route.gates.isEmpty, let query {
            for gate in route.gates where QueryString.fires(gate.name, in: query) {
                if !holds(gate.clause, set, bytes, bounds, query) {
                    return .insufficientScope(id, required: gate.clause.display)
                }
            }
        }
        return .allowed(id)
    }

    private func holds(
        _ clause: Clause, _ set: ScopeSet, _ bytes: UnsafeMutableBufferPointer<UInt8>,
        _ bounds: UnsafeMutableBufferPointer<Int>, _ query: String?
    ) -> Bool {
        for alternative in clause.alternatives {
            guard let mask = requirement(alternative, bytes, bounds, query) else { continue }
            if set.covers(mask) { return true }
            if !set.constrained.isEmpty, let query {
                var cover = set.bits
                for grant in set.constrained where QueryString.carries(grant.constraints, in: query) { cover |= grant.mask }
                if mask & ~cover == .zero { return true }
            }
        }
        return false
    }

    private func requirement(
        _ alternative: Alternative, _ bytes: UnsafeMutableBufferPointer<UInt8>,
        _ bounds: UnsafeMutableBufferPointer<Int>, _ query: String?
    ) -> ScopeSet.Bits? {
        switch alternative.source {
        case .fixed:
            return alternative.mask
        case .pathSegment(let s):
            let key = UnsafeBufferPointer(rebasing: bytes[bounds[2 * s]..<bounds[2 * s + 1]])
            let resource = layout.resource(matching: key)
            return layout.requirementMask(context: alternative.context, resource: resource, permissions: alternative.permissions)
        case .queryList(let name):
            guard let query else { return nil }
            let values = QueryString.values(name, in: query)
            if values.isEmpty { return nil }
            var mask = ScopeSet.Bits.zero
            for value in values {
                for type in value.split(separator: ",", omittingEmptySubsequences: false) {
                    let resource = Array(type.utf8).withUnsafeBufferPointer { layout.resource(matching: $0) }
                    mask |= layout.requirementMask(context: alternative.context, resource: resource, permissions: alternative.permissions)
                }
            }
            return mask
        }
    }
}
