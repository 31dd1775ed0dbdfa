public import Hummingbird

/// The request context of every Caregate route: the trace id travels with the request.
public struct CaregateContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// Set by ``TraceMiddleware`` before anything else runs.
    public var traceID: String = ""

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
    }

    /// Bodies of management calls are small JSON documents.
    public var maxUploadSize: Int { 1024 * 1024 }
}
