public import Hummingbird
import NIOCore

/// The request context of every Caregate route: the trace id travels with the request.
public struct CaregateContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// Set by ``TraceMiddleware`` before anything else runs.
    public var traceID: String = ""
    /// The connection, for the caller's address (read only by the gateway, when it forwards).
    let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        channel = source.channel
    }

    /// The caller's IP address.
    var remoteIP: String? { channel.remoteAddress?.ipAddress }

    /// Bodies of management calls are small JSON documents.
    public var maxUploadSize: Int { 1024 * 1024 }
}
