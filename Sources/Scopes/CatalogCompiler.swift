/// What compiling a catalog produces; ``CompiledCatalog`` wraps it.
struct CompiledParts {
    var definition: CatalogDefinition
    var scopes: [CatalogScope]
    var routes: [RouteInfo]
    var layout: AtomLayout
    var knownMask: ScopeSet.Bits
    var credentialMasks: [ScopeSet.Bits]
    var selfServiceMask: ScopeSet.Bits
    var dependencies: [(scope: ScopeSet.Bits, requires: ScopeSet.Bits)]
    var globalEntry: Int?
    var compiledRoutes: [CompiledRoute]
    var trie: RouteTrie
}

/// Validates a ``CatalogDefinition`` and compiles it, collecting every problem.
struct CatalogCompiler {
    private let def: CatalogDefinition
    private var problems: [CatalogProblem] = []
    private var layout = AtomLayout()
    private var contexts = Set<ScopeContext>()

    private struct Pending {
        var name: String
        var scope: Scope?
        var entry: ScopeEntry
        var label: String
        var generated: Bool
        var credentialTypes: [CredentialType]
        var mask = ScopeSet.Bits.zero
        var atom = -1
    }

    /// A route requirement as written: a scope, or a SMART scope whose resource type
    /// comes from a path parameter or a query parameter.
    private enum Requirement {
        case scope(Scope)
        case template(context: ScopeContext, parameter: String, permissions: Permissions)
    }

    init(_ definition: CatalogDefinition) { self.def = definition }

    private mutating func problem(_ entry: String, _ message: String) {
        problems.append(CatalogProblem(entry: entry, message: message))
    }

    mutating func compile() throws(CatalogError) -> CompiledParts {
        checkHeader()
        var pending = collectScopes()
        var index: [String: Int] = [:]
        for (i, p) in pending.enumerated() where p.scope != nil {
            if let first = index[p.name] {
                problem(p.label, "duplicate scope (also \(pending[first].label))")
            } else {
                index[p.name] = i
            }
        }
        let routeEntries = def.routes.enumerated().map { (label: "routes[\($0.offset)] \($0.element.method) \($0.element.path)", route: $0.element, generated: false) }
            + generatedRoutes().map { (label: "generated route \($0.method) \($0.path)", route: $0, generated: true) }
        collectResources(pending, routeEntries.map(\.route))

        // Named atoms first (aliases share their target's), then the resource grid.
        for i in pending.indices where pending[i].scope != nil {
            if case .resource = pending[i].scope!.form { continue }
            if pending[i].entry.aliasOf == nil { pending[i].atom = layout.addNamedAtom() }
        }
        layout.layOut(contexts: contexts)
        if layout.count > ScopeSet.capacity {
            problem("", "the catalog needs \(layout.count) permission atoms; a catalog may have at most \(ScopeSet.capacity)")
            throw CatalogError(surface: def.surface, problems: problems)
        }
        var all = ScopeSet.Bits.zero
        for i in 0..<layout.count { all |= .bit(i) }

        var globalEntry: Int?
        if let global = def.globalScope {
            if let g = index[global] {
                globalEntry = g
            } else {
                problem("globalScope", "\"\(global)\" is not a scope of this catalog")
            }
        }
        for i in pending.indices {
            guard let scope = pending[i].scope else { continue }
            if i == globalEntry {
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

        var knownMask = ScopeSet.Bits.zero
        for p in pending { knownMask |= p.mask }
        let credentialMasks = CredentialType.allCases.map { type in
            pending.filter { $0.credentialTypes.contains(type) }.reduce(ScopeSet.Bits.zero) { $0 | $1.mask }
        }
        let selfServiceMask = pending.filter(\.entry.selfService).reduce(ScopeSet.Bits.zero) { $0 | $1.mask }

        var dependencies: [(scope: ScopeSet.Bits, requires: ScopeSet.Bits)] = []
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

        // Routes.
        var trie = RouteTrie()
        var compiledRoutes: [CompiledRoute] = []
        var routeInfos: [RouteInfo] = []
        var labels: [String] = []
        for (label, entry, _) in routeEntries {
            guard let (route, segments) = compileRoute(entry, label: label, pending: pending, index: index, knownMask: knownMask)
            else { continue }
            do {
                try trie.insert(segments, method: route.method, route: compiledRoutes.count)
            } catch {
                switch error {
                case .duplicate(let existing): problem(label, "duplicate route: same method and path shape as \(labels[existing])")
                case .parameterKind: problem(label, "another route has a parameter of another type at the same position")
                }
                continue
            }
            labels.append(label)
            compiledRoutes.append(route)
            routeInfos.append(RouteInfo(
                method: route.method, path: Self.displayPath(entry.path), isPublic: route.isPublic,
                requirement: requirementText(route), description: entry.description))
        }

        var scopes = pending.compactMap { p -> CatalogScope? in
            guard let scope = p.scope else { return nil }
            return CatalogScope(
                name: p.name, scope: scope, category: p.entry.category, description: p.entry.description,
                credentialTypes: p.credentialTypes, products: p.entry.products, selfService: p.entry.selfService,
                endpoints: p.entry.endpoints ?? [], aliasOf: p.entry.aliasOf, requires: p.entry.requires,
                generated: p.generated, mask: p.mask)
        }
        var parts = CompiledParts(
            definition: def, scopes: scopes, routes: routeInfos, layout: layout, knownMask: knownMask,
            credentialMasks: credentialMasks, selfServiceMask: selfServiceMask, dependencies: dependencies,
            globalEntry: globalEntry.map { g in scopes.firstIndex { $0.name == pending[g].name }! },
            compiledRoutes: compiledRoutes, trie: trie)

        // Endpoints: check the listed ones against the route table, derive the others.
        if problems.isEmpty {
            let catalog = CompiledCatalog(parts)
            for (i, p) in pending.enumerated() where p.scope != nil {
                guard let s = scopes.firstIndex(where: { $0.name == p.name }) else { continue }
                if let listed = p.entry.endpoints {
                    checkEndpoints(listed, of: p, catalog: catalog, pending: pending, index: index)
                } else {
                    let target = p.entry.aliasOf.flatMap { index[$0] } ?? i
                    scopes[s] = scopes[s].with(endpoints: derivedEndpoints(for: pending[target].name, routes: compiledRoutes, infos: routeInfos))
                }
            }
            parts.scopes = scopes
        }
        if !problems.isEmpty { throw CatalogError(surface: def.surface, problems: problems) }
        return parts
    }

    // MARK: Header and scopes

    private mutating func checkHeader() {
        if def.format != 1 { problem("format", "unsupported format \(def.format); this engine reads format 1") }
        if def.surface.isEmpty || !def.surface.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: "-") }) {
            problem("surface", "\"\(def.surface)\" must be lower-case letters, digits and -")
        }
        if def.title.isEmpty { problem("title", "must not be empty") }
        if def.categories.isEmpty { problem("categories", "at least one category is required") }
        var seen = Set<String>()
        for (i, c) in def.categories.enumerated() where !seen.insert(c).inserted || c.isEmpty {
            problem("categories[\(i)]", c.isEmpty ? "empty category name" : "duplicate category \"\(c)\"")
        }
        if def.defaultCredentialTypes.isEmpty { problem("defaultCredentialTypes", "at least one credential type is required") }
        for (key, names) in [("resourceTypes", def.resourceTypes), ("resourceTypeNames", def.resourceTypeNames)] {
            for (i, type) in names.enumerated() where (try? Scope(parsing: "system/\(type).read"))?.resourceScope?.resource != type {
                problem("\(key)[\(i)]", "\"\(type)\" is not a valid resource type name")
            }
        }
    }

    private mutating func collectScopes() -> [Pending] {
        var result: [Pending] = []
        for (i, entry) in def.scopes.enumerated() {
            result.append(pending(entry, label: "scopes[\(i)] \"\(entry.name)\"", generated: false))
        }
        if let rules = def.resources {
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
        return result
    }

    private mutating func pending(_ entry: ScopeEntry, label: String, generated: Bool) -> Pending {
        var scope: Scope?
        do { scope = try Scope(parsing: entry.name) } catch { problem(label, error.description) }
        if !def.categories.contains(entry.category) {
            problem(label, "category \"\(entry.category)\" is not listed in categories")
        }
        if entry.description.isEmpty { problem(label, "description must not be empty") }
        if let types = entry.credentialTypes, types.isEmpty { problem(label, "credentialTypes must not be empty when given") }
        return Pending(
            name: entry.name, scope: scope, entry: entry, label: label, generated: generated,
            credentialTypes: entry.credentialTypes ?? def.defaultCredentialTypes)
    }

    private mutating func collectResources(_ pending: [Pending], _ routes: [RouteEntry]) {
        for type in def.resourceTypes { layout.addResource(type) }
        if let rules = def.resources {
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

    // MARK: Routes

    private func generatedRoutes() -> [RouteEntry] {
        guard let rules = def.resources else { return [] }
        var routes: [RouteEntry] = []
        let ctx = rules.context.rawValue
        for group in rules.groups {
            for r in group.resources {
                let base = "\(rules.pathPrefix)/\(r.name)"
                func add(_ method: String, _ path: String, _ letters: String, _ what: String) {
                    routes.append(RouteEntry(method: method, path: path, scope: "\(ctx)/\(r.name).\(letters)", description: "\(what) \(r.label)"))
                }
                add("GET", base, "s", "List")
                add("GET", base + "/{id}", "r", "Get one of the")
                add("GET", base + "/{id}/*", "r", "Read nested resources of")
                if !group.readOnly {
                    add("POST", base, "c", "Create")
                    for (method, letters, what) in [("PUT", "u", "Update"), ("PATCH", "u", "Update"), ("DELETE", "d", "Delete")] {
                        add(method, base + "/{id}", letters, what)
                        add(method, base + "/{id}/*", letters, "\(what) nested resources of")
                    }
                    add("POST", base + "/{id}/*", "c", "Create nested resources of")
                }
            }
        }
        return routes
    }

    private func parseRequirement(_ text: String) -> Requirement? {
        guard let open = text.firstIndex(of: "{") else { return (try? Scope(parsing: text)).map { .scope($0) } }
        guard let close = text[open...].firstIndex(of: "}") else { return nil }
        let parameter = String(text[text.index(after: open)..<close])
        let substituted = text[..<open] + "Placeholder" + text[text.index(after: close)...]
        guard let r = (try? Scope(parsing: substituted))?.resourceScope, r.resource == "Placeholder", r.constraints.isEmpty
        else { return nil }
        return .template(context: r.context, parameter: parameter, permissions: r.permissions)
    }

    private mutating func compileRoute(
        _ entry: RouteEntry, label: String, pending: [Pending], index: [String: Int], knownMask: ScopeSet.Bits
    ) -> (CompiledRoute, [RouteTrie.Segment])? {
        guard let method = HTTPMethod(entry.method), method != .head else {
            problem(label, "method \"\(entry.method)\" must be one of GET POST PUT PATCH DELETE OPTIONS (HEAD follows GET)")
            return nil
        }
        guard let segments = templateSegments(entry.path, label: label) else { return nil }
        let given = [entry.scope != nil, entry.anyOf != nil, entry.public].filter { $0 }.count
        if given != 1 {
            problem(label, given == 0 ? "a route needs a scope, anyOf or public: true" : "give only one of scope, anyOf, public")
            return nil
        }
        if entry.public && !entry.when.isEmpty { problem(label, "a public route cannot have query gates") }
        if let anyOf = entry.anyOf, anyOf.isEmpty { problem(label, "anyOf must not be empty") }

        var clauses: [Clause] = []
        if let texts = entry.anyOf ?? entry.scope.map({ [$0] }) {
            guard let clause = compileClause(texts, segments: segments, label: label, pending: pending, index: index, knownMask: knownMask)
            else { return nil }
            clauses.append(clause)
        }
        var gates: [Gate] = []
        for gate in entry.when {
            if gate.query.isEmpty { problem(label, "a query gate needs a parameter name") }
            guard let clause = compileClause([gate.scope], segments: segments, label: label, pending: pending, index: index, knownMask: knownMask)
            else { return nil }
            gates.append(Gate(name: Array(gate.query.utf8), nameText: gate.query, clause: clause))
        }
        var fastMask: ScopeSet.Bits?
        if clauses.count == 1, gates.isEmpty, clauses[0].alternatives.count == 1, case .fixed = clauses[0].alternatives[0].source {
            fastMask = clauses[0].alternatives[0].mask
        }
        let route = CompiledRoute(method: method, isPublic: entry.public, clauses: clauses, gates: gates, fastMask: fastMask)
        return (route, segments)
    }

    /// A route's path as people and documents see it: `{ResourceType:resourceType}` → `{ResourceType}`.
    static func displayPath(_ path: String) -> String {
        let suffix = ":resourceType}"
        return path.split(separator: "/", omittingEmptySubsequences: false).map { segment in
            segment.hasPrefix("{") && segment.hasSuffix(suffix) ? segment.dropLast(suffix.count) + "}" : String(segment)
        }.joined(separator: "/")
    }

    private mutating func templateSegments(_ path: String, label: String) -> [RouteTrie.Segment]? {
        guard path.hasPrefix("/") else {
            problem(label, "path must start with /")
            return nil
        }
        var body = path.dropFirst()
        if body.hasSuffix("/") { body = body.dropLast() }
        if body.isEmpty { return [] }
        var segments: [RouteTrie.Segment] = []
        var names = Set<String>()
        let parts = body.split(separator: "/", omittingEmptySubsequences: false)
        for (i, part) in parts.enumerated() {
            if part == "*" {
                if i != parts.count - 1 {
                    problem(label, "* may only be the last segment")
                    return nil
                }
                segments.append(.tail)
            } else if part.hasPrefix("{") && part.hasSuffix("}") && part.count > 2 {
                var name = String(part.dropFirst().dropLast())
                var kind = ParameterKind.any
                if let colon = name.firstIndex(of: ":") {
                    guard name[name.index(after: colon)...] == "resourceType" else {
                        problem(label, "parameter {\(name)}: the only parameter type is resourceType ({Name:resourceType})")
                        return nil
                    }
                    kind = .resourceType
                    name = String(name[..<colon])
                }
                if !name.utf8.allSatisfy({ ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: "_") }) {
                    problem(label, "parameter name \"\(name)\" must be letters, digits and _")
                    return nil
                }
                if !names.insert(name).inserted {
                    problem(label, "parameter {\(name)} appears twice")
                    return nil
                }
                segments.append(.param(name, kind))
            } else {
                let ok = !part.isEmpty && part != "." && part != ".."
                    && part.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && !"%;?{}\\#".utf8.contains($0) }
                if !ok {
                    problem(label, "segment \"\(ScopeError.escape(part))\" is not a valid literal segment")
                    return nil
                }
                segments.append(.literal(String(part)))
            }
        }
        return segments
    }

    private mutating func compileClause(
        _ texts: [String], segments: [RouteTrie.Segment], label: String,
        pending: [Pending], index: [String: Int], knownMask: ScopeSet.Bits
    ) -> Clause? {
        var alternatives: [Alternative] = []
        var displays: [String] = []
        for text in texts {
            switch parseRequirement(text) {
            case nil:
                problem(label, "\"\(ScopeError.escape(text))\" is not a scope or a scope template")
                return nil
            case .template(let context, let parameter, let permissions)?:
                let source: Alternative.Source
                if parameter.hasPrefix("query.") && parameter.count > 6 {
                    source = .queryList(Array(parameter.dropFirst(6).utf8))
                } else if let at = segments.firstIndex(where: { if case .param(parameter, _) = $0 { true } else { false } }) {
                    // An untyped parameter would let `$export` or any word pass as a type, and open
                    // an operation with a resource scope.
                    guard segments[at] == .param(parameter, .resourceType) else {
                        problem(label, "\"\(text)\" takes a resource type from {\(parameter)}: declare it {\(parameter):resourceType} so that it cannot swallow an operation ($export) or a word that is not a type")
                        return nil
                    }
                    source = .pathSegment(at)
                } else {
                    problem(label, "\"\(text)\" names {\(parameter)}, which is not a parameter of the path (or query.<name>)")
                    return nil
                }
                alternatives.append(Alternative(source: source, mask: .zero, context: context, permissions: permissions))
                displays.append(text)
            case .scope(let scope)?:
                var mask = ScopeSet.Bits.zero
                var display = text
                if let i = index[text], pending[i].scope?.resourceScope == nil {
                    mask = pending[i].atom >= 0 ? .bit(pending[i].atom) : pending[i].mask
                } else if let r = scope.resourceScope, r.constraints.isEmpty,
                          let resource = r.resource == nil ? 0 : layout.resourceIndex[r.resource!] {
                    mask = layout.requirementMask(context: r.context, resource: resource, permissions: r.permissions)
                    // Name the narrowest catalog scope that grants it (system/patients.s → system/patients.read).
                    let covering = pending.filter { $0.scope != nil && $0.mask != .zero && mask & ~$0.mask == .zero }
                    if let best = covering.min(by: { ScopeSet(bits: $0.mask).atomCount < ScopeSet(bits: $1.mask).atomCount }) {
                        display = best.name
                    }
                } else {
                    problem(label, "\"\(ScopeError.escape(text))\" is not a scope of this catalog")
                    return nil
                }
                if mask == .zero || mask & ~knownMask != .zero {
                    problem(label, "no scope of this catalog grants \"\(text)\"")
                    return nil
                }
                alternatives.append(Alternative(source: .fixed, mask: mask, context: .system, permissions: []))
                displays.append(display)
            }
        }
        return Clause(alternatives: alternatives, display: displays[0], texts: displays)
    }

    private func requirementText(_ route: CompiledRoute) -> String {
        if route.isPublic { return "no scope (public)" }
        var text = route.clauses.map { $0.texts.joined(separator: " or ") }.joined(separator: " and ")
        for gate in route.gates {
            text += " (+ \(gate.clause.texts.joined(separator: " or ")) when \(gate.nameText) is set)"
        }
        return text
    }

    // MARK: Endpoints

    private mutating func checkEndpoints(
        _ listed: [String], of p: Pending, catalog: CompiledCatalog, pending: [Pending], index: [String: Int]
    ) {
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
            let value = Substring(def.resourceTypes.first ?? "Sample")
            let sample = parts[1].split(separator: "/", omittingEmptySubsequences: false).map { segment -> Substring in
                segment == "*" || (segment.hasPrefix("{") && segment.hasSuffix("}")) ? value : segment
            }.joined(separator: "/")
            let decision = catalog.decide(ScopeSet(bits: set), method: String(parts[0]), target: sample)
            if !decision.isAllowed {
                problem(p.label, "lists endpoint \"\(endpoint)\", but the route table does not let this scope open it (\(decision))")
            }
        }
    }

    private func derivedEndpoints(for name: String, routes: [CompiledRoute], infos: [RouteInfo]) -> [String] {
        var result: [String] = []
        for (route, info) in zip(routes, infos) {
            if route.clauses.contains(where: { $0.texts.contains(name) }) { result.append(info.template) }
            for gate in route.gates where gate.clause.texts.contains(name) {
                result.append("\(info.template)?\(gate.nameText)=true")
            }
        }
        return result
    }
}

extension CatalogScope {
    func with(endpoints: [String]) -> CatalogScope {
        CatalogScope(
            name: name, scope: scope, category: category, description: description, credentialTypes: credentialTypes,
            products: products, selfService: selfService, endpoints: endpoints, aliasOf: aliasOf, requires: requires,
            generated: generated, mask: mask)
    }
}
