extension CatalogCompiler {
    /// A route requirement as written: a scope, or a SMART scope whose resource type
    /// comes from a path parameter or a query parameter.
    enum Requirement {
        case scope(Scope)
        case template(context: ScopeContext, parameter: String, permissions: Permissions)
    }

    /// Every route into one trie; a route that clashes with one already there is a problem.
    mutating func compileRoutes(_ entries: [(label: String, route: RouteEntry)]) {
        var labels: [String] = []
        for (label, entry) in entries {
            guard let (route, segments) = compileRoute(entry, label: label) else { continue }
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
            routes.append(RouteInfo(
                method: route.method, path: Self.displayPath(entry.path), isPublic: route.isPublic,
                requirement: requirementText(route), description: entry.description))
        }
    }

    func generatedRoutes() -> [RouteEntry] {
        guard let rules = definition.resources else { return [] }
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

    func parseRequirement(_ text: String) -> Requirement? {
        guard let open = text.firstIndex(of: "{") else { return (try? Scope(parsing: text)).map { .scope($0) } }
        guard let close = text[open...].firstIndex(of: "}") else { return nil }
        let parameter = String(text[text.index(after: open)..<close])
        let substituted = text[..<open] + "Placeholder" + text[text.index(after: close)...]
        guard let r = (try? Scope(parsing: substituted))?.resourceScope, r.resource == "Placeholder", r.constraints.isEmpty
        else { return nil }
        return .template(context: r.context, parameter: parameter, permissions: r.permissions)
    }

    private mutating func compileRoute(_ entry: RouteEntry, label: String) -> (CompiledRoute, [RouteTrie.Segment])? {
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
            guard let clause = compileClause(texts, segments: segments, label: label)
            else { return nil }
            clauses.append(clause)
        }
        var gates: [Gate] = []
        for gate in entry.when {
            if gate.query.isEmpty { problem(label, "a query gate needs a parameter name") }
            guard let clause = compileClause([gate.scope], segments: segments, label: label)
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

    private mutating func compileClause(_ texts: [String], segments: [RouteTrie.Segment], label: String) -> Clause? {
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
}
