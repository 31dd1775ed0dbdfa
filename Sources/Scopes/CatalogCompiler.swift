/// Validates a ``CatalogDefinition`` and compiles it, collecting every problem.
///
/// `compile()` runs the phases in order. Each phase records what it finds wrong and goes
/// on, so that one run reports every problem of a catalog. A finished compiler holds
/// everything ``CompiledCatalog`` is made of; the catalog's initializer takes it from here.
struct CatalogCompiler {
    let definition: CatalogDefinition
    var problems: [CatalogProblem] = []
    var contexts = Set<ScopeContext>()
    /// Every scope, listed then generated, as the phases fill in their atoms and masks.
    var pending: [Pending] = []
    /// Scope name → its first entry in `pending`.
    var index: [String: Int] = [:]

    // The results, read by `CompiledCatalog.init(compiled:)`.
    var layout = AtomLayout()
    var scopes: [CatalogScope] = []
    var routes: [RouteInfo] = []
    var compiledRoutes: [CompiledRoute] = []
    var trie = RouteTrie()
    var knownMask = ScopeSet.Bits.zero
    var credentialMasks: [ScopeSet.Bits] = []
    var selfServiceMask = ScopeSet.Bits.zero
    var dependencies: [(scope: ScopeSet.Bits, requires: ScopeSet.Bits)] = []
    /// The global scope's index in `pending`, then (`globalEntry`) in `scopes`.
    var globalPending: Int?
    var globalEntry: Int?

    struct Pending {
        var name: String
        var scope: Scope?
        var entry: ScopeEntry
        var label: String
        var generated: Bool
        var credentialTypes: [CredentialType]
        var mask = ScopeSet.Bits.zero
        var atom = -1
    }

    init(_ definition: CatalogDefinition) { self.definition = definition }

    mutating func problem(_ entry: String, _ message: String) {
        problems.append(CatalogProblem(entry: entry, message: message))
    }

    /// Runs every phase but the last; throws the problems found, if any. The last phase,
    /// ``checkEndpoints(against:)``, decides listed endpoints, so it needs the built catalog.
    mutating func compile() throws(CatalogError) {
        checkHeader()
        collectScopes()
        let routeEntries = definition.routes.enumerated().map { (label: "routes[\($0.offset)] \($0.element.method) \($0.element.path)", route: $0.element) }
            + generatedRoutes().map { (label: "generated route \($0.method) \($0.path)", route: $0) }
        collectResources(routeEntries.map(\.route))
        try layOutAtoms()
        assignMasks()
        collectDependencies()
        compileRoutes(routeEntries)
        if !problems.isEmpty { throw CatalogError(surface: definition.surface, problems: problems) }
        resolveEndpoints()
    }

    // MARK: Header and scopes

    private mutating func checkHeader() {
        if definition.format != 1 { problem("format", "unsupported format \(definition.format); this engine reads format 1") }
        if definition.surface.isEmpty || !definition.surface.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: "-") }) {
            problem("surface", "\"\(definition.surface)\" must be lower-case letters, digits and -")
        }
        if definition.title.isEmpty { problem("title", "must not be empty") }
        if definition.categories.isEmpty { problem("categories", "at least one category is required") }
        var seen = Set<String>()
        for (i, c) in definition.categories.enumerated() where !seen.insert(c).inserted || c.isEmpty {
            problem("categories[\(i)]", c.isEmpty ? "empty category name" : "duplicate category \"\(c)\"")
        }
        if definition.defaultCredentialTypes.isEmpty { problem("defaultCredentialTypes", "at least one credential type is required") }
        for (key, names) in [("resourceTypes", definition.resourceTypes), ("resourceTypeNames", definition.resourceTypeNames)] {
            for (i, type) in names.enumerated() where (try? Scope(parsing: "system/\(type).read"))?.resourceScope?.resource != type {
                problem("\(key)[\(i)]", "\"\(type)\" is not a valid resource type name")
            }
        }
    }

    /// The listed scopes, then those the `resources` rules generate; duplicates are problems.
    private mutating func collectScopes() {
        var result: [Pending] = []
        for (i, entry) in definition.scopes.enumerated() {
            result.append(pending(entry, label: "scopes[\(i)] \"\(entry.name)\"", generated: false))
        }
        if let rules = definition.resources {
            if !rules.pathPrefix.hasPrefix("/") || rules.pathPrefix.hasSuffix("/") {
                problem("resources.pathPrefix", "\"\(rules.pathPrefix)\" must start with / and not end with /")
            }
            for (g, group) in rules.groups.enumerated() {
                for (r, resource) in group.resources.enumerated() {
                    let label = "resources.groups[\(g)].resources[\(r)] \"\(resource.name)\""
                    var kinds: [(String, String)] = [("read", "Read access to \(resource.label)")]
                    if !group.readOnly { kinds.append(("write", "Write access to \(resource.label)")) }
                    for (permission, description) in kinds {
                        let entry = ScopeEntry(
                            name: "\(rules.context.rawValue)/\(resource.name).\(permission)", category: group.category,
                            description: description, credentialTypes: rules.credentialTypes)
                        result.append(pending(entry, label: label, generated: true))
                    }
                }
            }
        }
        pending = result
        for (i, p) in pending.enumerated() where p.scope != nil {
            if let first = index[p.name] {
                problem(p.label, "duplicate scope (also \(pending[first].label))")
            } else {
                index[p.name] = i
            }
        }
    }

    private mutating func pending(_ entry: ScopeEntry, label: String, generated: Bool) -> Pending {
        var scope: Scope?
        do { scope = try Scope(parsing: entry.name) } catch { problem(label, error.description) }
        if !definition.categories.contains(entry.category) {
            problem(label, "category \"\(entry.category)\" is not listed in categories")
        }
        if entry.description.isEmpty { problem(label, "description must not be empty") }
        if let types = entry.credentialTypes, types.isEmpty { problem(label, "credentialTypes must not be empty when given") }
        return Pending(
            name: entry.name, scope: scope, entry: entry, label: label, generated: generated,
            credentialTypes: entry.credentialTypes ?? definition.defaultCredentialTypes)
    }

    /// Every resource type and context that a scope or a route requirement names.
    private mutating func collectResources(_ routes: [RouteEntry]) {
        for type in definition.resourceTypes { layout.addResource(type) }
        if let rules = definition.resources {
            contexts.insert(rules.context)
            for group in rules.groups {
                for r in group.resources { layout.addResource(r.name, readOnly: group.readOnly) }
            }
        }
        func note(_ r: ResourceScope) {
            contexts.insert(r.context)
            if let name = r.resource { layout.addResource(name) }
        }
        for p in pending { if let r = p.scope?.resourceScope { note(r) } }
        for route in routes {
            for text in (route.anyOf ?? []) + [route.scope].compactMap({ $0 }) + route.when.map(\.scope) {
                switch parseRequirement(text) {
                case .scope(let s)?: if let r = s.resourceScope { note(r) }
                case .template(let context, _, _)?: contexts.insert(context)
                case nil: break
                }
            }
        }
    }

    // MARK: Atoms and masks

    /// Named atoms first (aliases share their target's), then the resource grid.
    private mutating func layOutAtoms() throws(CatalogError) {
        for i in pending.indices where pending[i].scope != nil {
            if case .resource = pending[i].scope!.form { continue }
            if pending[i].entry.aliasOf == nil { pending[i].atom = layout.addNamedAtom() }
        }
        layout.layOut(contexts: contexts)
        if layout.count > ScopeSet.capacity {
            problem("", "the catalog needs \(layout.count) permission atoms; a catalog may have at most \(ScopeSet.capacity)")
            throw CatalogError(surface: definition.surface, problems: problems)
        }
    }

    /// Each scope's grant mask: its own atom, its alias target's, its resource letters,
    /// or every atom for the global scope. Then the masks per credential type and self-service.
    private mutating func assignMasks() {
        var all = ScopeSet.Bits.zero
        for i in 0..<layout.count { all |= .bit(i) }
        if let global = definition.globalScope {
            if let g = index[global] {
                globalPending = g
            } else {
                problem("globalScope", "\"\(global)\" is not a scope of this catalog")
            }
        }
        for i in pending.indices {
            guard let scope = pending[i].scope else { continue }
            if i == globalPending {
                pending[i].mask = all
                continue
            }
            switch scope.form {
            case .resource(let r):
                if !r.constraints.isEmpty {
                    problem(pending[i].label, "catalog scopes may not carry query constraints")
                    continue
                }
                let resource = r.resource.flatMap { layout.resourceIndex[$0] } ?? 0
                if r.resource != nil && layout.readOnly[resource] && !r.permissions.isDisjoint(with: .v1Write) {
                    problem(pending[i].label, "\(r.resource!) is read-only; it can have no write scope")
                    continue
                }
                pending[i].mask = layout.grantMask(context: r.context, resource: resource, permissions: r.permissions)
            default:
                if let target = pending[i].entry.aliasOf {
                    guard let t = index[target] else {
                        problem(pending[i].label, "aliasOf \"\(target)\" is not a scope of this catalog")
                        continue
                    }
                    if pending[t].entry.aliasOf != nil || pending[t].atom < 0 || t == i {
                        problem(pending[i].label, "aliasOf \"\(target)\" must name a non-alias, non-resource scope")
                        continue
                    }
                    pending[i].mask = .bit(pending[t].atom)
                } else {
                    pending[i].mask = .bit(pending[i].atom)
                }
            }
        }
        for p in pending where p.entry.aliasOf != nil {
            if case .resource = p.scope?.form { problem(p.label, "a resource scope cannot be an alias") }
        }
        for p in pending { knownMask |= p.mask }
        credentialMasks = CredentialType.allCases.map { type in
            pending.filter { $0.credentialTypes.contains(type) }.reduce(ScopeSet.Bits.zero) { $0 | $1.mask }
        }
        // A SMART catalog (one with patient/ or user/ scopes) takes every scope the SMART grammar
        // spells for its resource types, in each of its contexts (SPEC §7: `patient/Observation.c`
        // as well as the listed `patient/Observation.read`), carried by the credential types
        // that carry that context's listed scopes.
        if layout[contextBase: .patient] != nil || layout[contextBase: .user] != nil {
            for context in ScopeContext.allCases where layout[contextBase: context] != nil {
                let grid = layout.grantMask(context: context, resource: 0, permissions: .all)
                knownMask |= grid
                for (t, type) in CredentialType.allCases.enumerated() {
                    let carried = pending.contains { p in
                        if case .resource(let r)? = p.scope?.form { return r.context == context && p.credentialTypes.contains(type) }
                        return false
                    }
                    if carried { credentialMasks[t] |= grid }
                }
            }
        }
        selfServiceMask = pending.filter(\.entry.selfService).reduce(ScopeSet.Bits.zero) { $0 | $1.mask }
    }

    /// `requires`: a scope that has no effect without others.
    private mutating func collectDependencies() {
        for p in pending where !p.entry.requires.isEmpty {
            var required = ScopeSet.Bits.zero
            for name in p.entry.requires {
                if name == p.name {
                    problem(p.label, "a scope cannot require itself")
                } else if let r = index[name] {
                    required |= pending[r].mask
                } else {
                    problem(p.label, "requires \"\(name)\", which is not a scope of this catalog")
                }
            }
            dependencies.append((p.mask, required))
        }
    }

    // MARK: Endpoints

    /// The catalog's scopes as published, each with its endpoints: as listed, or derived
    /// from the routes it opens (an alias's from its target's).
    private mutating func resolveEndpoints() {
        scopes = pending.indices.compactMap { i -> CatalogScope? in
            let p = pending[i]
            guard let scope = p.scope else { return nil }
            let target = p.entry.aliasOf.flatMap { index[$0] } ?? i
            return CatalogScope(
                name: p.name, scope: scope, category: p.entry.category, description: p.entry.description,
                credentialTypes: p.credentialTypes, products: p.entry.products, selfService: p.entry.selfService,
                endpoints: p.entry.endpoints ?? derivedEndpoints(for: pending[target].name), aliasOf: p.entry.aliasOf,
                requires: p.entry.requires, generated: p.generated, mask: p.mask)
        }
        globalEntry = globalPending.map { g in scopes.firstIndex { $0.name == pending[g].name }! }
    }

    private func derivedEndpoints(for name: String) -> [String] {
        var result: [String] = []
        for (route, info) in zip(compiledRoutes, routes) {
            if route.clauses.contains(where: { $0.texts.contains(name) }) { result.append(info.template) }
            for gate in route.gates where gate.clause.texts.contains(name) {
                result.append("\(info.template)?\(gate.nameText)=true")
            }
        }
        return result
    }

    /// Listed endpoints are checked by deciding them, so against the built catalog: the
    /// scope (with the scopes it requires) must open each one.
    mutating func checkEndpoints(against catalog: CompiledCatalog) throws(CatalogError) {
        for p in pending where p.scope != nil {
            if let listed = p.entry.endpoints { checkEndpoints(listed, of: p, catalog: catalog) }
        }
        if !problems.isEmpty { throw CatalogError(surface: definition.surface, problems: problems) }
    }

    private mutating func checkEndpoints(_ listed: [String], of p: Pending, catalog: CompiledCatalog) {
        var set = p.mask
        for name in p.entry.requires { if let r = index[name] { set |= pending[r].mask } }
        for endpoint in listed {
            let parts = endpoint.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, HTTPMethod(parts[0]) != nil, parts[1].hasPrefix("/") else {
                problem(p.label, "endpoint \"\(endpoint)\" must read \"METHOD /path\"")
                continue
            }
            // Fill parameters and * with a sample value (a resource type name, which any
            // parameter accepts), then ask the route table.
            let value = Substring(definition.resourceTypes.first ?? "Sample")
            let sample = parts[1].split(separator: "/", omittingEmptySubsequences: false).map { segment -> Substring in
                segment == "*" || (segment.hasPrefix("{") && segment.hasSuffix("}")) ? value : segment
            }.joined(separator: "/")
            let decision = catalog.decide(ScopeSet(bits: set), method: String(parts[0]), target: sample)
            if !decision.isAllowed {
                problem(p.label, "lists endpoint \"\(endpoint)\", but the route table does not let this scope open it (\(decision))")
            }
        }
    }
}
