/// The HTTP methods a route table knows. `HEAD` is served by a `GET` route.
///
/// The engine's own type, so that `Scopes` depends on no HTTP library; a server maps its
/// request method to it (or uses ``CompiledCatalog/decide(_:method:target:)``).
public enum HTTPMethod: UInt8, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    /// `GET`.
    case get
    /// `HEAD`, decided by the path's `GET` route.
    case head
    /// `POST`.
    case post
    /// `PUT`.
    case put
    /// `PATCH`.
    case patch
    /// `DELETE`.
    case delete
    /// `OPTIONS`.
    case options

    /// Reads a method name, case-sensitively as HTTP defines it.
    /// - Parameter name: The method as it appears in the request line (`GET`).
    /// - Returns: `nil` for a method no route can have, which a server answers with 405.
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

    /// The method's name as it appears in a request line.
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
    /// The route's position in ``CompiledCatalog/routes``: servers index their own per-route
    /// tables (handlers, metrics) with it instead of hashing paths.
    public let index: Int

    /// Orders routes as the catalog lists them.
    /// - Parameters:
    ///   - a: A route.
    ///   - b: Another route of the same catalog.
    /// - Returns: Whether `a` comes before `b` in the catalog.
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

    /// Whether the request may proceed, for callers that need no more than that.
    public var isAllowed: Bool {
        if case .allowed = self { return true }
        return false
    }

    /// The matched route, when there is one (allowed, or refused for scope).
    public var route: RouteID? {
        switch self {
        case .allowed(let r), .insufficientScope(let r, _): r
        default: nil
        }
    }
}
