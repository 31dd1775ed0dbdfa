import Foundation
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
        var path = self, prefix = prefix
        return path.withUTF8 { path in prefix.withUTF8 { UnsafeRawBufferPointer(path).isPath(under: UnsafeRawBufferPointer($0)) } }
    }
}

extension UnsafeRawBufferPointer {
    /// The same rule, of a path and a prefix as bytes.
    func isPath(under prefix: UnsafeRawBufferPointer) -> Bool {
        guard count >= prefix.count, count == prefix.count || self[prefix.count] == UInt8(ascii: "/") else { return false }
        return prefix.isEmpty || memcmp(baseAddress!, prefix.baseAddress!, prefix.count) == 0
    }
}

extension URLComponents {
    /// `uri` with `items` added to its query, or nil when `uri` is not a URL. A query the URI
    /// already has is kept byte for byte; the added names and values are percent-encoded down
    /// to RFC 3986's unreserved characters (so a `+` never reads as a space); nil values are left out.
    static func adding(_ items: KeyValuePairs<String, String?>, to uri: String) -> String? {
        guard var components = URLComponents(string: uri) else { return nil }
        let added = items.compactMap { name, value in value.map { queryEncoded(name) + "=" + queryEncoded($0) } }
        let kept = components.percentEncodedQuery.flatMap { $0.isEmpty ? nil : $0 }
        components.percentEncodedQuery = ((kept.map { [$0] } ?? []) + added).joined(separator: "&")
        return components.string
    }

    /// `text` percent-encoded down to RFC 3986's unreserved characters, for a query name or value.
    static func queryEncoded(_ text: String) -> String { text.addingPercentEncoding(withAllowedCharacters: unreserved) ?? "" }

    private static let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
}
