/// One scope string, parsed.
///
/// Scope strings are exact: case-sensitive, printable ASCII, no surrounding
/// whitespace. ``init(parsing:)`` accepts exactly the strings that
/// ``description`` prints, so `Scope(parsing: s).description == s` for every valid `s`:
/// a scope has one spelling, so that comparing names compares permissions.
///
/// Four families share one grammar:
/// - `action:resource` — marketplace scopes (`read:patients`, `write:soap_notes`)
/// - dotted product scopes — `cms.fhir.r4.read`, `horizon.query`
/// - `context/resource.permission[?constraints]` — SMART v1/v2 and the practice API
///   (`patient/Observation.read`, `user/*.write`, `system/patients.read`,
///   `patient/Observation.rs?category=laboratory`)
/// - bare scopes — `launch/patient`, `launch-ehr`, `fhirUser`, `openid`, `offline_access`, `apiv2`
public struct Scope: Hashable, Sendable, CustomStringConvertible {
    /// Which of the four families a scope belongs to, with its parts.
    public enum Form: Hashable, Sendable {
        /// `read:patients`: an action and a resource, both snake_case.
        case actionResource(action: String, resource: String)
        /// `cms.fhir.r4.read`: lower-case segments separated by dots.
        case dotted(segments: [String])
        /// `patient/Observation.rs`: a SMART or practice-API resource scope.
        case resource(ResourceScope)
        /// `fhirUser`, `launch/patient`: a name the grammar does not take apart.
        case bare(String)
    }

    /// The scope's parts; two scopes are equal when their forms are.
    public let form: Form
    /// The scope's exact text (its canonical printed form).
    public let description: String

    /// Builds a scope from its parts, printing its canonical text.
    /// - Parameter form: The scope's parts, assumed valid (they are not checked against the grammar).
    public init(_ form: Form) {
        self.form = form
        self.description = Scope.print(form)
    }

    /// Parses one scope.
    /// - Parameter text: The scope exactly as requested; nothing is trimmed or case-folded.
    /// - Throws: ``ScopeError`` naming the text (escaped) and the reason.
    public init(parsing text: some StringProtocol) throws(ScopeError) {
        self = try ScopeParser.parse(String(text))
    }

    init(form: Form, text: String) {
        self.form = form
        self.description = text
    }

    /// The resource scope, when the scope is one (`patient/Observation.rs`).
    public var resourceScope: ResourceScope? {
        if case .resource(let r) = form { return r }
        return nil
    }

    /// Compares parts rather than text (the two agree, as each scope has one spelling).
    /// - Parameters:
    ///   - lhs: A scope.
    ///   - rhs: Another scope.
    /// - Returns: Whether their forms are equal.
    public static func == (lhs: Scope, rhs: Scope) -> Bool { lhs.form == rhs.form }

    /// Hashes the form, consistently with ``==(_:_:)``.
    /// - Parameter hasher: The hasher to feed.
    public func hash(into hasher: inout Hasher) { hasher.combine(form) }

    static func print(_ form: Form) -> String {
        switch form {
        case .actionResource(let action, let resource): return "\(action):\(resource)"
        case .dotted(let segments): return segments.joined(separator: ".")
        case .bare(let name): return name
        case .resource(let r): return r.description
        }
    }
}

/// The SMART contexts of a `context/resource.permission` scope: whose data it reaches.
public enum ScopeContext: String, Hashable, Sendable, CaseIterable, Comparable {
    /// The data of the patient in context (`patient/…`).
    case patient
    /// What the signed-in user may see (`user/…`).
    case user
    /// Everything the client is entitled to, with no user present (`system/…`).
    case system

    /// Orders contexts as declared (`patient`, `user`, `system`), for stable listings.
    /// - Parameters:
    ///   - lhs: A context.
    ///   - rhs: Another context.
    /// - Returns: Whether `lhs` is declared before `rhs`.
    public static func < (lhs: ScopeContext, rhs: ScopeContext) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}

/// SMART v2 permission letters. A v1 `read` is `rs`, `write` is `cud`, `*` is `cruds`.
public struct Permissions: OptionSet, Hashable, Sendable, CustomStringConvertible {
    /// One bit per letter of `cruds`, `c` lowest.
    public let rawValue: UInt8

    /// Creates a set from its bits; bits above the five letters are dropped.
    /// - Parameter rawValue: One bit per letter of `cruds`, `c` lowest.
    public init(rawValue: UInt8) { self.rawValue = rawValue & 0b11111 }

    /// `c`: create.
    public static let create = Permissions(rawValue: 1 << 0)
    /// `r`: read one resource.
    public static let read = Permissions(rawValue: 1 << 1)
    /// `u`: update.
    public static let update = Permissions(rawValue: 1 << 2)
    /// `d`: delete.
    public static let delete = Permissions(rawValue: 1 << 3)
    /// `s`: search.
    public static let search = Permissions(rawValue: 1 << 4)

    /// What a SMART v1 `.read` means: `rs`.
    public static let v1Read: Permissions = [.read, .search]
    /// What a SMART v1 `.write` means: `cud`.
    public static let v1Write: Permissions = [.create, .update, .delete]
    /// Every letter: `cruds`, which a v1 `.*` means.
    public static let all: Permissions = [.create, .read, .update, .delete, .search]

    /// The letters in `cruds` order, paired with their permission.
    static let letters: [(letter: Character, permission: Permissions)] = [
        ("c", .create), ("r", .read), ("u", .update), ("d", .delete), ("s", .search),
    ]

    /// The v2 letters, in `cruds` order.
    public var description: String {
        String(Permissions.letters.filter { contains($0.permission) }.map(\.letter))
    }

    /// The v1 word for this set, when there is one.
    var v1Word: String? {
        switch self {
        case .v1Read: "read"
        case .v1Write: "write"
        case .all: "*"
        default: nil
        }
    }
}

/// A `context/resource.permission[?name=value&…]` scope (SMART v1 or v2, practice API).
public struct ResourceScope: Hashable, Sendable, CustomStringConvertible {
    /// How the permission was written; kept so that a scope prints as it was requested.
    public enum Syntax: Hashable, Sendable {
        /// SMART v1 words: `read`, `write`, `*`.
        case v1
        /// SMART v2 letters of `cruds`.
        case v2
    }

    /// Whose data the scope reaches.
    public var context: ScopeContext
    /// The resource type, or `nil` for the wildcard `*`.
    public var resource: String?
    /// What the scope allows on that resource.
    public var permissions: Permissions
    /// How the permission was written: v1 (`read`/`write`/`*`) or v2 letters.
    public var syntax: Syntax
    /// SMART v2 query constraints (`?category=laboratory`), in the order written.
    public var constraints: [QueryConstraint]

    /// Builds a resource scope from its parts (not checked against the grammar).
    /// - Parameters:
    ///   - context: Whose data the scope reaches.
    ///   - resource: The resource type, or `nil` for `*`.
    ///   - permissions: What the scope allows.
    ///   - syntax: How to print the permissions; v1 only when they are `rs`, `cud` or `cruds`.
    ///   - constraints: SMART v2 query constraints, which need v2 syntax.
    public init(
        context: ScopeContext, resource: String?, permissions: Permissions,
        syntax: Syntax = .v2, constraints: [QueryConstraint] = []
    ) {
        self.context = context
        self.resource = resource
        self.permissions = permissions
        self.syntax = syntax
        self.constraints = constraints
    }

    /// The scope's canonical text, in the syntax it was written in.
    public var description: String {
        var text = "\(context.rawValue)/\(resource ?? "*")."
        if syntax == .v1, let word = permissions.v1Word {
            text += word
        } else {
            text += permissions.description
        }
        if !constraints.isEmpty {
            text += "?" + constraints.map { "\($0.name)=\($0.value)" }.joined(separator: "&")
        }
        return text
    }
}

/// One `name=value` pair of a SMART v2 query-constrained scope.
public struct QueryConstraint: Hashable, Sendable {
    /// The query parameter's name.
    public var name: String
    /// The value the request's query must carry for that parameter.
    public var value: String

    /// Creates a constraint.
    /// - Parameters:
    ///   - name: The query parameter's name.
    ///   - value: The value the request must carry.
    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}
