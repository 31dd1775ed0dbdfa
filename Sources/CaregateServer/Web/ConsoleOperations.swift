import CaregateStore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The console acts only through the management operations of ``ManagementAPI/operations``: a
/// form becomes the operation's JSON call, run by the operation's own handler with the signed-in
/// principal, so a page can do nothing the JSON API would not, checked the same way.
extension ManagementRoutes {
    /// Runs the operation `method path` (its OpenAPI path, e.g. `/manage/apps/{appId}/keys`) with
    /// these path parameters and JSON body; returns the answer's status and parsed JSON body.
    /// A refusal is thrown as the operation throws it (an ``APIError``).
    func perform(
        _ method: HTTPRequest.Method, _ path: String, parameters: [String: String] = [:], query: String? = nil, body: JSONValue? = nil,
        principal: Principal, context: CaregateContext
    ) async throws -> (status: HTTPResponse.Status, json: Any?) {
        guard let operation = ManagementAPI.operations.first(where: { $0.method == method && $0.path == path }) else {
            throw APIError(.internalServerError, "internal_error", "no management operation \(method) \(path)")
        }
        guard operation.callers.contains(principal.kind) else {
            throw APIError.forbidden("This needs a \(operation.callers.map(\.label).sorted().joined(separator: " or ")) sign-in")
        }
        var concrete = path
        var context = context
        context.coreContext.parameters = .init()
        for (name, value) in parameters {
            concrete = concrete.replacingOccurrences(of: "{\(name)}", with: value)
            context.coreContext.parameters.append(key: Substring(name), value: Substring(value))
        }
        var fields: HTTPFields = [:]
        var buffer = ByteBuffer()
        if let body {
            fields[.contentType] = "application/json"
            buffer = ByteBuffer(bytes: body.serialized())
            fields[.contentLength] = String(buffer.readableBytes)
        }
        let request = Request(
            head: HTTPRequest(method: method, scheme: "http", authority: "console", path: concrete + (query.map { "?" + $0 } ?? ""), headerFields: fields),
            body: RequestBody(buffer: buffer))
        var call = ManagementCall(request: request, context: context, principal: principal, operation: operation)
        let response = try await operation.handler(self, &call)
        let collector = BodyCollector()
        try await response.body.write(collector)
        let bytes = collector.bytes
        return (response.status, bytes.isEmpty ? nil : try? JSONSerialization.jsonObject(with: Data(bytes)))
    }
}

/// Reads a response body whole (console answers are small JSON documents).
final class BodyCollector: ResponseBodyWriter, @unchecked Sendable {
    private(set) var bytes: [UInt8] = []
    func write(_ buffer: ByteBuffer) async throws { bytes += buffer.readableBytesView }
    func finish(_ trailingHeaders: HTTPFields?) async throws {}
}
