import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Scopes

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
        } catch {
            response = Self.response(for: error, traceID: traceID, logger: context.logger)
        }
        response.headers[.traceID] = traceID
        return response
    }

    /// Any error as an answer in the `{code, message, trace_id}` shape.
    static func response(for error: any Error, traceID: String, logger: Logger) -> Response {
        switch error {
        case let error as APIError:
            return error.response(traceID: traceID)
        case let error as HTTPError:
            let code = switch error.status.code {
            case 404: "not_found"
            case 405: "method_not_allowed"
            case 413: "payload_too_large"
            case 400..<500: "bad_request"
            default: "internal_error"
            }
            let message = error.body ?? (error.status.code == 404 ? "Not found" : error.status.reasonPhrase)
            return APIError(error.status, code, message, headers: error.headers).response(traceID: traceID)
        case let error as DecodingError:
            return APIError.badRequest("invalid JSON body: \(describe(error))").response(traceID: traceID)
        default:
            logger.error("request failed", metadata: ["error": "\(String(reflecting: error))"])
            return APIError(.internalServerError, "internal_error", "Internal error").response(traceID: traceID)
        }
    }

    private static func describe(_ error: DecodingError) -> String {
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

/// The router's own error shaping: Hummingbird's router answers errors thrown below it
/// (a route's, or its not-found) in its own format before they could reach
/// ``TraceMiddleware``; this, its first middleware, answers them in ours.
struct RouterErrorMiddleware: RouterMiddleware {
    typealias Context = CaregateContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            return TraceMiddleware.response(for: error, traceID: context.traceID, logger: context.logger)
        }
    }
}

extension HTTPField.Name {
    static let traceID = HTTPField.Name("X-Trace-Id")!
    static let organizationID = HTTPField.Name("X-Organization-Id")!
    static let pragma = HTTPField.Name("Pragma")!
    static let xForwardedFor = HTTPField.Name("X-Forwarded-For")!
}

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
