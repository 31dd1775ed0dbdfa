import Synchronization

/// Tells this process that the grant chain changed: a key, app version, installation, OAuth
/// client or signing key. Other instances learn it from the change counter instead.
public final class GrantChainChanges: Sendable {
    private let listeners = Mutex<[@Sendable () -> Void]>([])

    public init() {}

    /// `listener` runs after every committed change, on the task that made it.
    public func listen(_ listener: @escaping @Sendable () -> Void) {
        listeners.withLock { $0.append(listener) }
    }

    func announce() {
        for listener in listeners.withLock({ $0 }) { listener() }
    }
}
