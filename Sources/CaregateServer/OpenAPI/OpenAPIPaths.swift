import CaregateStore

/// The `paths` of the document as they are filled in. Templates that differ only in their
/// parameters' names (`/v3/notes/{id}` for GET, `/v3/notes/{noteId}` for PATCH) are one path
/// to OpenAPI, so each operation is filed under the first spelling of its shape, its
/// parameters renamed by position.
struct OpenAPIPaths {
    private(set) var order: [String] = []
    private var operations: [String: [(method: String, operation: JSONValue)]] = [:]
    /// Shape (`/v3/notes/{}`) → the path the document uses.
    private var canonical: [String: String] = [:]

    static func shape(_ path: String) -> String {
        path.split(separator: "/", omittingEmptySubsequences: false).map { $0.hasPrefix("{") ? "{}" : String($0) }.joined(separator: "/")
    }

    static func parameterNames(_ path: String) -> [String] {
        path.split(separator: "/").filter { $0.hasPrefix("{") }.map { String($0.dropFirst().dropLast()) }
    }

    /// The path under which an operation on `path` is filed, and its parameters' names there by their names in `path`.
    mutating func file(_ path: String) -> (path: String, names: [String: String]) {
        let shape = Self.shape(path)
        let documented: String
        if let existing = canonical[shape] {
            documented = existing
        } else {
            canonical[shape] = path
            order.append(path)
            documented = path
        }
        return (documented, Dictionary(zip(Self.parameterNames(path), Self.parameterNames(documented)), uniquingKeysWith: { a, _ in a }))
    }

    func has(_ method: String, _ path: String) -> Bool {
        guard let documented = canonical[Self.shape(path)] else { return false }
        return operations[documented]?.contains { $0.method == method } ?? false
    }

    mutating func add(_ method: String, _ documentedPath: String, _ operation: JSONValue) {
        guard !(operations[documentedPath]?.contains { $0.method == method } ?? false) else { return }
        operations[documentedPath, default: []].append((method, operation))
    }

    var json: JSONValue {
        .object(order.map { path in (path, .object(operations[path, default: []].map { ($0.method, $0.operation) })) })
    }
}
