import Foundation
import HTTPTypes
import Hummingbird
import Logging

/// First on every request: gives it a trace id (a client's `X-Trace-Id` when it is a UUID,
/// otherwise a new one), puts it in the log metadata and on the answer, and turns every
/// error into the `{code, message, trace_id}` shape.
struct TraceMiddleware: RouterMiddleware {
    typealias Context = CaregateContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        let traceID = request.headers[.traceID].flatMap { UUID(uuidString: $0)?.uuidString.lowercased() } ?? UUID().uuidString.lowercased()
        context.traceID = traceID
        context.logger[metadataKey: "trace_id"] = .string(traceID)
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as APIError {
            response = error.response(traceID: traceID)
        } catch let error as HTTPError {
            let code = switch error.status.code {
            case 404: "not_found"
            case 405: "method_not_allowed"
            case 413: "payload_too_large"
            case 400..<500: "bad_request"
            default: "internal_error"
            }
            let message = error.body ?? (error.status.code == 404 ? "Not found" : error.status.reasonPhrase)
            response = APIError(error.status, code, message, headers: error.headers).response(traceID: traceID)
        } catch let error as DecodingError {
            response = APIError.badRequest("invalid JSON body: \(describe(error))").response(traceID: traceID)
        } catch {
            context.logger.error("request failed", metadata: ["error": "\(String(reflecting: error))"])
            response = APIError(.internalServerError, "internal_error", "Internal error").response(traceID: traceID)
        }
        response.headers[.traceID] = traceID
        return response
    }

    private func describe(_ error: DecodingError) -> String {
        func path(_ c: DecodingError.Context) -> String {
            c.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, _): return "missing field \"\(key.stringValue)\""
        case .typeMismatch(_, let c), .valueNotFound(_, let c): return "field \"\(path(c))\" has the wrong type"
        case .dataCorrupted(let c): return c.codingPath.isEmpty ? "not valid JSON" : "field \"\(path(c))\": \(c.debugDescription)"
        @unknown default: return "\(error)"
        }
    }
}

extension HTTPField.Name {
    static let traceID = HTTPField.Name("X-Trace-Id")!
    static let organizationID = HTTPField.Name("X-Organization-Id")!
    static let pragma = HTTPField.Name("Pragma")!
    static let xForwardedFor = HTTPField.Name("X-Forwarded-For")!
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
