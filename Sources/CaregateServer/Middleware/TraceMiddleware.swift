import CaregateStore
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
        let traceID = Self.traceID(of: request.headers)
        context.traceID = traceID
        context.logger[metadataKey: "trace_id"] = .string(traceID)
        var response: Response
        do {
            // Only `chunked` is a transfer coding we read; anything else (`xchunked`, `gzip, chunked`)
            // would leave the body's end to guesswork between us and an upstream.
            for coding in request.headers[values: .transferEncoding] where coding.trimmingCharacters(in: .whitespaces).lowercased() != "chunked" {
                throw APIError.badRequest("Transfer-Encoding \"\(Validate.safe(coding))\" is not supported (only chunked)")
            }
            response = try await next(request, context)
        } catch {
            response = Self.response(for: error, request: request, traceID: traceID, logger: context.logger)
        }
        response.headers[.traceID] = traceID
        return response
    }

    /// The caller's `X-Trace-Id` when it is a UUID (lowercased), else a new one.
    static func traceID(of fields: HTTPFields) -> String {
        traceID(given: fields[.traceID])
    }

    /// The trace id of a request whose `X-Trace-Id` is `value` (nil: none).
    static func traceID(given value: String?) -> String {
        value.flatMap { UUID(uuidString: $0)?.uuidString.lowercased() } ?? TraceID.make()
    }

    /// Any error as an answer in the `{code, message, trace_id}` shape, or as a FHIR
    /// `OperationOutcome` on the FHIR base (`/fhir/R4`).
    static func response(for error: any Error, request: Request, traceID: String, logger: Logger) -> Response {
        let refusal = apiError(for: error, logger: logger)
        return request.uri.path.isPath(under: Discovery.fhirBasePath) ? refusal.operationOutcome(traceID: traceID) : refusal.response(traceID: traceID)
    }

    static func apiError(for error: any Error, logger: Logger) -> APIError {
        switch error {
        case let error as APIError:
            return error
        case let error as HTTPError:
            let code = switch error.status.code {
            case 404: "not_found"
            case 405: "method_not_allowed"
            case 413: "payload_too_large"
            case 400..<500: "bad_request"
            default: "internal_error"
            }
            let message = error.body ?? (error.status.code == 404 ? "Not found" : error.status.reasonPhrase)
            return APIError(error.status, code, message, headers: error.headers)
        case let error as StoreError:
            return switch error {
            case .conflict(let message): APIError.conflict(message)
            case .invalid(let message): APIError.badRequest(message)
            case .notFound(let message): APIError.notFound(message)
            }
        case let error as DecodingError:
            return APIError.badRequest("invalid JSON body: \(describe(error))")
        case let error where Database.isUnavailable(error):
            logger.warning("database unavailable", metadata: ["error": "\(String(reflecting: error))"])
            return APIError(.serviceUnavailable, "service_unavailable", "The database is not reachable; try again shortly", headers: [.retryAfter: "1"])
        default:
            logger.error("request failed", metadata: ["error": "\(String(reflecting: error))"])
            return APIError(.internalServerError, "internal_error", "Internal error")
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
