import Dispatch
import HTTPTypes
import Hummingbird
import Metrics
import Synchronization

/// The request metrics of Hummingbird's `MetricsMiddleware`, under its names and dimensions
/// (`hb.requests`, `hb.request.errors`, `http.server.request.duration`,
/// `http.server.active_requests`), made once per route, method and status and shared by the
/// pipeline (``RequestMetricsMiddleware``) and the gateway's direct path (``ForwardingMetrics``).
final class RequestMetrics: Sendable {
    struct Recorders: Sendable {
        let requests: Counter
        let duration: Timer
    }

    private struct Key: Hashable {
        var route: String
        var method: HTTPRequest.Method
        var status: Int
    }

    private let recorders = Mutex<[Key: Recorders]>([:])
    private let errors = Mutex<[Key: Counter]>([:])
    private let active = Mutex<[HTTPRequest.Method: Meter]>([:])

    /// The requests and duration of answers with `status` on `route`.
    func recorders(route: String, method: HTTPRequest.Method, status: Int) -> Recorders {
        let key = Key(route: route, method: method, status: status)
        return recorders.withLock { recorders in
            if let known = recorders[key] { return known }
            let dimensions = [("http.route", route), ("http.request.method", method.rawValue), ("http.response.status_code", "\(status)")]
            let made = Recorders(
                requests: Counter(label: "hb.requests", dimensions: dimensions),
                duration: Timer(label: "http.server.request.duration", dimensions: dimensions, preferredDisplayUnit: .seconds))
            recorders[key] = made
            return made
        }
    }

    /// The answers Caregate made in place of a route's (`error.type` is their status).
    /// Made when first needed, so that no series of zeros is published.
    func errorCounter(route: String, method: HTTPRequest.Method, status: Int) -> Counter {
        let key = Key(route: route, method: method, status: status)
        return errors.withLock { errors in
            if let known = errors[key] { return known }
            let made = Counter(
                label: "hb.request.errors", dimensions: [("http.route", route), ("http.request.method", method.rawValue), ("error.type", "\(status)")])
            errors[key] = made
            return made
        }
    }

    /// The requests of `method` in progress.
    func activeRequests(_ method: HTTPRequest.Method) -> Meter {
        active.withLock { meters in
            if let known = meters[method] { return known }
            let made = Meter(label: "http.server.active_requests", dimensions: [("http.request.method", method.rawValue)])
            meters[method] = made
            return made
        }
    }
}

/// Counts and times every request of the pipeline, as Hummingbird's `MetricsMiddleware` does
/// and under the same names, without its cost: that middleware wraps every answer's body in a
/// closure to time it to its last byte, which makes Hummingbird write the head and the body in
/// two writes and two awaits (12 µs of server CPU per request here). An answer held in memory
/// (its length is known) is timed when it is returned: all of it exists, and what is left is
/// the connection's writing, which a slow client can stretch. Only a streamed answer (unknown
/// length: the gateway's answers, exports) is timed to its last byte. The route is the one the pipeline or the router decided
/// (`context.endpointPath`); a request that ends in an error counts under its status.
struct RequestMetricsMiddleware: RouterMiddleware {
    typealias Context = CaregateContext
    let metrics: RequestMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = DispatchTime.now().uptimeNanoseconds
        let active = metrics.activeRequests(request.method)
        active.increment()
        do {
            var response = try await next(request, context)
            let status = response.status.code
            let method = request.method
            if response.body.contentLength != nil {
                Self.record(metrics, context, method, status, started: started, active: active)
                return response
            }
            let body = response.body
            let metrics = self.metrics
            response.body = ResponseBody { writer in
                defer { Self.record(metrics, context, method, status, started: started, active: active) }
                try await body.write(writer)
            }
            return response
        } catch {
            let status = (error as? any HTTPResponseError)?.status.code ?? 500
            let route = context.endpointPath ?? "NotFound"
            metrics.recorders(route: route, method: request.method, status: status).requests.increment()
            metrics.errorCounter(route: route, method: request.method, status: status).increment()
            active.decrement()
            throw error
        }
    }

    private static func record(_ metrics: RequestMetrics, _ context: Context, _ method: HTTPRequest.Method, _ status: Int, started: UInt64, active: Meter) {
        let recorders = metrics.recorders(route: context.endpointPath ?? "Unknown", method: method, status: status)
        recorders.requests.increment()
        recorders.duration.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - started))
        active.decrement()
    }
}
