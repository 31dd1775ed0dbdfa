/// The HTTP methods a route table knows. `HEAD` is served by a `GET` route.
public enum HTTPMethod: UInt8, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    case get, head, post, put, patch, delete, options

    public init?(_ name: some StringProtocol) {
        switch name {
        case "GET": self = .get
        case "HEAD": self = .head
        case "POST": self = .post
        case "PUT": self = .put
        case "PATCH": self = .patch
        case "DELETE": self = .delete
        case "OPTIONS": self = .options
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .get: "GET"
        case .head: "HEAD"
        case .post: "POST"
        case .put: "PUT"
        case .patch: "PATCH"
        case .delete: "DELETE"
        case .options: "OPTIONS"
        }
    }
}

/// Identifies a route of a ``CompiledCatalog``.
public struct RouteID: Hashable, Sendable, Comparable {
    public let index: Int
    public static func < (a: RouteID, b: RouteID) -> Bool { a.index < b.index }
}

/// The outcome of ``CompiledCatalog/decide(_:method:path:query:)``.
public enum Decision: Hashable, Sendable {
    /// The effective set opens the route (or the route is public).
    case allowed(RouteID)
    /// The route exists and needs `required`, which the set does not hold.
    /// `required` is the scope to name in the error (`Insufficient scope. Required: …`).
    case insufficientScope(RouteID, required: String)
    /// The path matches a route, but not with this method.
    case methodNotAllowed
    /// No route has this path.
    case notFound
    /// The path was refused before routing (see ``PathError``).
    case invalidPath(PathError)

    public var isAllowed: Bool {
        if case .allowed = self { return true }
        return false
    }

    public var route: RouteID? {
        switch self {
        case .allowed(let r), .insufficientScope(let r, _): r
        default: nil
        }
    }
}
