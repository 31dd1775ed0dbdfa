/// A set of permissions compiled against one ``CompiledCatalog``: a fixed-width bitset
/// of the catalog's permission atoms, plus (rarely) SMART v2 query-constrained grants.
///
/// Bits mean nothing outside the catalog that produced them; combine only sets of the
/// same catalog. Wildcards, v1↔v2 equivalence, aliases and the global scope are
/// already closed into the bits, so intersection is a bitwise AND.
public struct ScopeSet: Hashable, Sendable {
    /// One bit per permission atom; SIMD so that intersection and coverage are a few vector ops.
    @usableFromInline typealias Bits = SIMD8<UInt64>
    /// How many permission atoms one catalog may have: the width of the bitset, fixed so
    /// that a set is a plain value and a decision needs no allocation.
    public static let capacity = 512

    @usableFromInline var bits: Bits
    /// Grants that cover their atoms only for requests carrying their query constraints.
    /// Kept normalised (sorted, merged by constraint set, none redundant with `bits`)
    /// so that equal sets compare equal.
    @usableFromInline var constrained: [ConstrainedGrant]

    /// No permissions: what a missing or revoked credential holds, and what public routes need.
    public static let empty = ScopeSet(bits: .zero, constrained: [])

    @inlinable init(bits: Bits, constrained: [ConstrainedGrant] = []) {
        self.bits = bits
        self.constrained = constrained
    }

    /// Whether the set holds no permission at all, constrained ones included.
    public var isEmpty: Bool { bits == .zero && constrained.isEmpty }

    /// The number of permission atoms held without query constraints: a size for comparing
    /// sets of one catalog (which of two scopes is narrower), not a count of scopes.
    public var atomCount: Int {
        var n = 0
        for i in 0..<Bits.scalarCount { n += bits[i].nonzeroBitCount }
        return n
    }

    /// The set as if every constrained grant held without its query constraints: what a
    /// backend that applies the constraints itself (narrowing a search, hiding a resource
    /// that does not match) decides routes with. Equal to `self` when nothing is constrained.
    public var liftingConstraints: ScopeSet {
        if constrained.isEmpty { return self }
        var lifted = bits
        for grant in constrained { lifted |= grant.mask }
        return ScopeSet(bits: lifted)
    }

    /// Permissions held by both sets: how a credential's scopes meet a clinic's grants.
    /// Constrained grants narrow, so both sets' constraints apply.
    /// - Parameter other: A set of the same catalog.
    /// - Returns: The common permissions.
    @inlinable public func intersection(_ other: ScopeSet) -> ScopeSet {
        if constrained.isEmpty && other.constrained.isEmpty {
            return ScopeSet(bits: bits & other.bits)
        }
        return intersectionSlow(other)
    }

    @usableFromInline func intersectionSlow(_ other: ScopeSet) -> ScopeSet {
        let common = bits & other.bits
        var grants: [ConstrainedGrant] = []
        for g in constrained { grants.append(ConstrainedGrant(mask: g.mask & other.bits, constraints: g.constraints)) }
        for h in other.constrained { grants.append(ConstrainedGrant(mask: h.mask & bits, constraints: h.constraints)) }
        for g in constrained {
            for h in other.constrained {
                grants.append(ConstrainedGrant(mask: g.mask & h.mask, constraints: g.constraints.union(h.constraints)))
            }
        }
        return ScopeSet(bits: common, constrained: ConstrainedGrant.normalise(grants, unconstrained: common))
    }

    /// Permissions held by either set.
    /// - Parameter other: A set of the same catalog.
    /// - Returns: Every permission of both.
    public func union(_ other: ScopeSet) -> ScopeSet {
        let all = bits | other.bits
        if constrained.isEmpty && other.constrained.isEmpty { return ScopeSet(bits: all) }
        return ScopeSet(bits: all, constrained: ConstrainedGrant.normalise(constrained + other.constrained, unconstrained: all))
    }

    /// Whether every permission of this set is also in `other`: whether a credential asks for
    /// no more than it was granted. A constrained grant is covered by grants with the same
    /// or fewer constraints.
    /// - Parameter other: A set of the same catalog.
    /// - Returns: `true` when `other` holds everything this set holds.
    public func isSubset(of other: ScopeSet) -> Bool {
        if bits & ~other.bits != .zero { return false }
        for g in constrained {
            var cover = other.bits
            for h in other.constrained where h.constraints.isSubset(of: g.constraints) { cover |= h.mask }
            if g.mask & ~cover != .zero { return false }
        }
        return true
    }

    @inlinable func covers(_ mask: Bits) -> Bool { mask & ~bits == .zero }
}

/// Atoms granted only to requests that carry every one of `constraints` in their query.
@usableFromInline struct ConstrainedGrant: Hashable, Sendable {
    @usableFromInline var mask: ScopeSet.Bits
    let constraints: Set<QueryConstraint>

    @usableFromInline init(mask: ScopeSet.Bits, constraints: Set<QueryConstraint>) {
        self.mask = mask
        self.constraints = constraints
    }

    var sortKey: String {
        constraints.map { "\($0.name)=\($0.value)" }.sorted().joined(separator: "&")
    }

    static func normalise(_ grants: [ConstrainedGrant], unconstrained: ScopeSet.Bits) -> [ConstrainedGrant] {
        var byConstraints: [Set<QueryConstraint>: ScopeSet.Bits] = [:]
        for g in grants {
            let mask = g.mask & ~unconstrained
            if mask == .zero { continue }
            byConstraints[g.constraints, default: .zero] |= mask
        }
        // A grant needing more constraints adds nothing where one needing fewer covers it.
        var result: [ConstrainedGrant] = []
        for (constraints, mask) in byConstraints {
            var narrowed = mask
            for (other, otherMask) in byConstraints where other != constraints && other.isSubset(of: constraints) {
                narrowed &= ~otherMask
            }
            if narrowed != .zero { result.append(ConstrainedGrant(mask: narrowed, constraints: constraints)) }
        }
        return result.sorted { $0.sortKey < $1.sortKey }
    }
}

extension ScopeSet.Bits {
    @inlinable static func bit(_ index: Int) -> Self {
        var b = Self.zero
        b[index >> 6] = 1 << UInt64(index & 63)
        return b
    }

    @inlinable func has(_ index: Int) -> Bool { self[index >> 6] & (1 << UInt64(index & 63)) != 0 }
}
