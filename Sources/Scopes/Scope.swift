/// One scope string, parsed.
///
/// Scope strings are exact: case-sensitive, printable ASCII, no surrounding
/// whitespace. `Scope(parsing:)` accepts exactly the strings that
/// `description` prints, so `Scope(parsing: s).description == s` for every valid `s`.
///
/// Four families share one grammar:
/// - `action:resource` — marketplace scopes (`read:patients`, `write:soap_notes`)
/// - dotted product scopes — `cms.fhir.r4.read`, `horizon.query`
/// - `context/resource.permission[?constraints]` — SMART v1/v2 and the practice API
///   (`patient/Observation.read`, `user/*.write`, `system/patients.read`,
///   `patient/Observation.rs?category=laboratory`)
/// - bare scopes — `launch/patient`, `launch-ehr`, `fhirUser`, `openid`, `offline_access`, `apiv2`
public struct Scope: Hashable, Sendable, CustomStringConvertible {
    public enum Form: Hashable, Sendable {
        case actionResource(action: String, resource: String)
        case dotted(segments: [String])
        case resource(ResourceScope)
        case bare(String)
    }

    public let form: Form
    /// The scope's exact text (its canonical printed form).
    public let description: String

    public init(_ form: Form) {
        self.form = form
        self.description = Scope.print(form)
    }

    /// Parses one scope. Throws a ``ScopeError`` naming the text and the reason.
    public init(parsing text: some StringProtocol) throws(ScopeError) {
        self = try ScopeParser.parse(String(text))
    }

    init(form: Form, text: String) {
        self.form = form
        self.description = text
    }

    public var resourceScope: ResourceScope? {
        if case .resource(let r) = form { return r }
        return nil
    }

    public static func == (lhs: Scope, rhs: Scope) -> Bool { lhs.form == rhs.form }
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

/// The SMART launch/user/system contexts of a `context/resource.permission` scope.
public enum ScopeContext: String, Hashable, Sendable, CaseIterable, Comparable {
    case patient, user, system

    public static func < (lhs: ScopeContext, rhs: ScopeContext) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}

/// SMART v2 permission letters. A v1 `read` is `rs`, `write` is `cud`, `*` is `cruds`.
public struct Permissions: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue & 0b11111 }

    public static let create = Permissions(rawValue: 1 << 0)
    public static let read = Permissions(rawValue: 1 << 1)
    public static let update = Permissions(rawValue: 1 << 2)
    public static let delete = Permissions(rawValue: 1 << 3)
    public static let search = Permissions(rawValue: 1 << 4)

    public static let v1Read: Permissions = [.read, .search]
    public static let v1Write: Permissions = [.create, .update, .delete]
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
    public enum Syntax: Hashable, Sendable { case v1, v2 }

    public var context: ScopeContext
    /// The resource type, or `nil` for the wildcard `*`.
    public var resource: String?
    public var permissions: Permissions
    /// How the permission was written: v1 (`read`/`write`/`*`) or v2 letters.
    public var syntax: Syntax
    /// SMART v2 query constraints (`?category=laboratory`), in the order written.
    public var constraints: [QueryConstraint]

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
    public var name: String
    public var value: String
    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}
