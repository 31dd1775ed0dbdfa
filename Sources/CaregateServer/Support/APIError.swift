public import HTTPTypes
import CaregateStore
public import Hummingbird
import Scopes

/// Every error answer's body: `{"code": …, "message": …, "trace_id": …}` (SPEC §2).
public struct APIError: Error, Sendable {
    public var status: HTTPResponse.Status
    public var code: String
    public var message: String
    public var headers: HTTPFields

    public init(_ status: HTTPResponse.Status, _ code: String, _ message: String, headers: HTTPFields = [:]) {
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
    }

    public static func badRequest(_ message: String) -> APIError { APIError(.badRequest, "bad_request", message) }
    public static func notFound(_ message: String = "Not found") -> APIError { APIError(.notFound, "not_found", message) }
    public static func conflict(_ message: String) -> APIError { APIError(.conflict, "conflict", message) }
    public static func forbidden(_ message: String) -> APIError { APIError(.forbidden, "forbidden", message) }

    /// 401 with an RFC 6750 challenge (on every surface and the management API).
    public static func unauthorized(_ message: String, invalidToken: Bool) -> APIError {
        let challenge = invalidToken ? #"Bearer realm="caregate", error="invalid_token""# : #"Bearer realm="caregate""#
        return APIError(.unauthorized, "unauthorized", message, headers: [.wwwAuthenticate: challenge])
    }

    /// 403 with the seed's message and an RFC 6750 challenge naming the scope; `detail`
    /// (a sentence) says why a credential cannot hold it, when that is the reason.
    public static func insufficientScope(_ scope: String, detail: String? = nil) -> APIError {
        APIError(
            .forbidden, "forbidden", "Insufficient scope. Required: \(scope)" + (detail.map { ". " + $0 } ?? ""),
            headers: [.wwwAuthenticate: #"Bearer realm="caregate", error="insufficient_scope", scope="\#(scope)""#])
    }

    /// The answer to a request that matched no route, or a bad path.
    static func refusal(_ decision: Decision, _ request: Request) -> APIError {
        switch decision {
        case .invalidPath(let error): .badRequest("Invalid path: \(error)")
        default: .notFound("No route \(request.method.rawValue) \(Validate.safe(request.uri.path))")
        }
    }

    /// 405, with the `Allow` header RFC 9110 §15.5.6 asks for: the methods the path does answer.
    static func methodNotAllowed(_ method: HTTPRequest.Method, allow: [String]) -> APIError {
        APIError(
            .methodNotAllowed, "method_not_allowed", "Method \(Validate.safe(method.rawValue)) is not allowed on this path",
            headers: [.allow: allow.joined(separator: ", ")])
    }

    /// The answer on `/fhir/R4`: the same status and headers, the body a FHIR `OperationOutcome`
    /// (SPEC §8) whose issue carries the message and the trace id.
    func operationOutcome(traceID: String) -> Response {
        var headers = self.headers
        headers[.contentType] = FHIRAPI.contentType
        headers[.cacheControl] = "no-store"
        let body: JSONValue = [
            "resourceType": "OperationOutcome",
            "issue": [["severity": "error", "code": .string(issueCode), "details": ["text": .string(message)], "diagnostics": .string("trace_id \(traceID)")]],
        ]
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body.serialized())))
    }

    /// The FHIR issue type (`http://hl7.org/fhir/issue-type`) of this error.
    var issueCode: String {
        if code == "not_supported" { return "not-supported" }
        switch status.code {
        case 401: return "login"
        case 403: return "forbidden"
        case 404: return "not-found"
        case 405, 406, 415, 501: return "not-supported"
        case 409, 412: return "conflict"
        case 413: return "too-long"
        case 422: return "processing"
        case 429: return "throttled"
        case 503: return "transient"
        case 400..<500: return "invalid"
        default: return "exception"
        }
    }

    func response(traceID: String) -> Response {
        Response(status: status, headers: responseHeaders, body: .init(byteBuffer: body(traceID: traceID)))
    }

    /// The answer's headers, without the trace id.
    var responseHeaders: HTTPFields {
        var headers = self.headers
        headers[.contentType] = "application/json"
        headers[.cacheControl] = "no-store"
        return headers
    }

    /// `{code, message, trace_id}`.
    func body(traceID: String) -> ByteBuffer {
        let body: JSONValue = ["code": .string(code), "message": .string(message), "trace_id": .string(traceID)]
        return ByteBuffer(bytes: body.serialized())
    }
}

/// JSON answers, keys in the order written.
enum JSONResponse {
    static func encode(_ value: JSONValue) -> ByteBuffer { ByteBuffer(bytes: value.serialized()) }

    /// `Content-Type: application/json`, built once (copy-on-write: a response adding a field copies it).
    static let headers: HTTPFields = [.contentType: "application/json"]

    static func make(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: headers, body: .init(byteBuffer: encode(value)))
    }
}

/// So that Hummingbird's metrics file a refusal under its own status, not as a 500.
extension APIError: HTTPResponseError {
    public func response(from request: Request, context: some RequestContext) throws -> Response {
        response(traceID: (context as? CaregateContext)?.traceID ?? "")
    }
}
