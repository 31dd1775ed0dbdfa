/// How a set grants one SMART permission on one resource type in one context: the answer a
/// backend needs to narrow what it returns, beyond whether the route opens
/// (``CompiledCatalog/grant(in:context:resource:permission:)``).
public enum ResourceGrant: Hashable, Sendable {
    /// No scope of the set grants it.
    case none
    /// A scope grants it without query constraints: every resource of the type.
    case unconstrained
    /// Only query-constrained scopes grant it (`patient/Observation.rs?category=laboratory`):
    /// a resource is reachable when it matches every constraint of at least one element.
    /// Each element's constraints are sorted by name, then value.
    case constrained([[QueryConstraint]])
}

extension CompiledCatalog {
    /// How `set` grants `permission` on `resource` in `context`. Several scopes for one type
    /// combine as an OR; a constrained scope's constraints combine as an AND (SMART v2).
    /// - Parameters:
    ///   - set: An effective set of this catalog.
    ///   - context: `patient`, `user` or `system`.
    ///   - resource: A resource type (`Observation`); a type the catalog does not list is
    ///     granted only by wildcard scopes.
    ///   - permission: One letter of `cruds`.
    /// - Returns: ``ResourceGrant/none`` also when the catalog has no scopes of `context`.
    public func grant(in set: ScopeSet, context: ScopeContext, resource: String, permission: Permissions) -> ResourceGrant {
        let required = layout.requirementMask(context: context, resource: layout.resourceIndex[resource] ?? 0, permissions: permission)
        guard required != .zero else { return .none }
        if set.covers(required) { return .unconstrained }
        let matching = set.constrained.filter { required & ~$0.mask == .zero }.map { grant in
            grant.constraints.sorted { ($0.name, $0.value) < ($1.name, $1.value) }
        }
        return matching.isEmpty ? .none : .constrained(matching)
    }
}
