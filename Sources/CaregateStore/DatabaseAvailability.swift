import AsyncKit
import PostgresNIO

extension Database {
    /// Whether `error` means that the database could not be reached (down, restarting, out of
    /// connections, this server shutting down) rather than that a statement was wrong: the
    /// same request may well succeed a moment later, so it is answered 503, not 500.
    public static func isUnavailable(_ error: any Error) -> Bool {
        switch error {
        case let error as PSQLError:
            switch error.code {
            case .connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .poolClosed:
                return true
            case .server:
                // Class 08: connection exception; 57P01–57P03: the server is shutting down or
                // starting; 53300: too many connections.
                guard let state = error.serverInfo?[.sqlState] else { return false }
                return state.hasPrefix("08") || ["57P01", "57P02", "57P03", "53300"].contains(state)
            default:
                return false
            }
        case is ConnectionPoolTimeoutError, is ConnectionPoolError:
            // PostgresNIO wraps its own connection failures in PSQLError; a bare NIO error here
            // is rather a client's connection going away, which is no database outage.
            return true
        default:
            return false
        }
    }
}
