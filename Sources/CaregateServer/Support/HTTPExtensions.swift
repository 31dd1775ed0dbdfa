import HTTPTypes
import Hummingbird
import Scopes

extension HTTPField.Name {
    static let traceID = HTTPField.Name("X-Trace-Id")!
    static let organizationID = HTTPField.Name("X-Organization-Id")!
    static let pragma = HTTPField.Name("Pragma")!
    static let xForwardedFor = HTTPField.Name("X-Forwarded-For")!
    static let xForwardedProto = HTTPField.Name("X-Forwarded-Proto")!
}

// Small readings of requests that run on every request, written not to allocate.

extension HTTPFields {
    /// The value of the field `name`: like `self[name]`, which joins repeated fields with
    /// ", ", but a single field (the usual case) is read without building anything.
    func value(_ name: HTTPField.Name) -> String? {
        var found: String?
        for i in indices where self[i].name == name {
            guard found == nil else { return self[name] }
            found = self[i].value
        }
        return found
    }
}

extension Request {
    /// `uri.path` without building a new string in the usual case: an origin-form target
    /// with no query is its own path (Hummingbird makes a new string on every `uri.path`).
    var targetPath: String {
        if let target = head.path, target.utf8.first == UInt8(ascii: "/"),
           !target.utf8.contains(where: { $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") }) {
            return target
        }
        return uri.path
    }
}

extension Scopes.HTTPMethod {
    /// The method of a request, when the catalogs know it.
    init?(_ method: HTTPRequest.Method) {
        switch method {
        case .get: self = .get
        case .head: self = .head
        case .post: self = .post
        case .put: self = .put
        case .patch: self = .patch
        case .delete: self = .delete
        case .options: self = .options
        default: return nil
        }
    }
}

extension String {
    /// Whether this request path is `prefix` or lies below it: `/v3` covers `/v3` and
    /// `/v3/…`, not `/v30`. Compares bytes, allocates nothing (it runs on every request).
    func isPath(under prefix: String) -> Bool {
        guard hasPrefix(prefix) else { return false }
        let rest = utf8.dropFirst(prefix.utf8.count)
        return rest.isEmpty || rest.first == UInt8(ascii: "/")
    }
}
