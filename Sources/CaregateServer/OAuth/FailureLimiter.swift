import Synchronization

/// Failed attempts per key (a caller's address, a client id) within a window: past `limit`,
/// further attempts are refused until the window that began with the first failure ends, so
/// guessing secrets costs time however fast the guesser is. Memory is bounded: at most
/// `maxKeys` keys are tracked (expired windows are dropped first, then everything).
final class FailureLimiter: Sendable {
    private struct Window {
        var start: ContinuousClock.Instant
        var count: Int
    }

    let limit: Int
    let window: Duration
    let maxKeys: Int
    private let windows = Mutex<[String: Window]>([:])

    init(limit: Int, window: Duration = .seconds(60), maxKeys: Int = 10_000) {
        self.limit = limit
        self.window = window
        self.maxKeys = maxKeys
    }

    /// Whole seconds until `key` may try again, or nil when it may now.
    func retryAfter(_ key: String) -> Int? {
        let now = ContinuousClock.now
        return windows.withLock { windows in
            guard let current = windows[key], current.count >= limit else { return nil }
            let left = current.start + window - now
            guard left > .zero else {
                windows[key] = nil
                return nil
            }
            return max(1, Int(left.components.seconds) + (left.components.attoseconds > 0 ? 1 : 0))
        }
    }

    func recordFailure(_ key: String) {
        let now = ContinuousClock.now
        windows.withLock { windows in
            if var current = windows[key], now - current.start < window {
                current.count += 1
                windows[key] = current
                return
            }
            if windows.count >= maxKeys {
                windows = windows.filter { now - $0.value.start < window }
                if windows.count >= maxKeys { windows.removeAll(keepingCapacity: true) }
            }
            windows[key] = Window(start: now, count: 1)
        }
    }
}
