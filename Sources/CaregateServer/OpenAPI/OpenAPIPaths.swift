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
        if canonical[shape] == nil {
            canonical[shape] = path
            order.append(path)
        }
        return documented(path)!
    }

    /// The path an operation on `path` is filed under, and its parameters' names there, if one is.
    func documented(_ path: String) -> (path: String, names: [String: String])? {
        guard let documented = canonical[Self.shape(path)] else { return nil }
        return (documented, Dictionary(zip(Self.parameterNames(path), Self.parameterNames(documented)), uniquingKeysWith: { a, _ in a }))
    }

    /// An OpenAPI link from the `status` answer of one operation to another (both filed already):
    /// the target's path parameters (by their names in `target.path`) from runtime expressions
    /// on that answer (`$response.body#/data/0/id`), so that a client, or a tool such as
    /// schemathesis, can follow real ids from a list to the operations on one record.
    mutating func link(from source: (method: String, path: String), status: String, to target: (method: String, path: String), parameters: [String: String]) {
        guard let from = documented(source.path), let to = documented(target.path),
              let index = operations[from.path]?.firstIndex(where: { $0.method == source.method }),
              operations[to.path]?.contains(where: { $0.method == target.method }) == true
        else { return }
        var operation = operations[from.path]![index].operation
        guard var responses = operation["responses"], var answer = responses[status] else { return }
        let name = ([target.method] + to.path.split(separator: "/").map { String($0.filter { $0.isLetter || $0.isNumber }) }).joined(separator: "-")
        let pointer = to.path.replacingOccurrences(of: "~", with: "~0").replacingOccurrences(of: "/", with: "~1")
        var links = answer["links"] ?? [:]
        links.set(name, [
            "operationRef": .string("#/paths/\(pointer)/\(target.method)"),
            "parameters": .object(parameters.sorted { $0.key < $1.key }.compactMap { name, expression in to.names[name].map { ($0, .string(expression)) } }),
        ])
        answer.set("links", links)
        responses.set(status, answer)
        operation.set("responses", responses)
        operations[from.path]![index].operation = operation
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
