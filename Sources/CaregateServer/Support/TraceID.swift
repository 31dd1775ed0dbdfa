import Synchronization

/// New trace ids: version 4 UUIDs in lowercase (`X-Trace-Id`, the logs, the audit log), made
/// without a system call or a formatted print per id (Foundation's `UUID().uuidString` costs
/// both on every request). A trace id names a request; it is not a secret: the bits come from
/// a counter mixed with a seed drawn from the system's generator at start-up, so ids never
/// repeat within a process and differ between processes.
enum TraceID {
    private static let seed: (UInt64, UInt64) = {
        var system = SystemRandomNumberGenerator()
        return (system.next(), system.next())
    }()
    private static let counter = Atomic<UInt64>(0)

    /// SplitMix64's finaliser: a bijection, so distinct counters give distinct ids.
    private static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    static func make() -> String {
        let n = counter.wrappingAdd(1, ordering: .relaxed).oldValue
        let high = (mix(n ^ seed.0) & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_4000  // version 4
        let low = (mix(n &+ seed.1) & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000  // variant 10
        return String(unsafeUninitializedCapacity: 36) { out in
            let digits: StaticString = "0123456789abcdef"
            var index = 0
            func put(_ value: UInt64, nibbles: Int) {
                for shift in stride(from: (nibbles - 1) * 4, through: 0, by: -4) {
                    out[index] = digits.utf8Start[Int((value >> UInt64(shift)) & 0xf)]
                    index += 1
                }
            }
            func dash() {
                out[index] = UInt8(ascii: "-")
                index += 1
            }
            put(high >> 32, nibbles: 8)
            dash()
            put((high >> 16) & 0xffff, nibbles: 4)
            dash()
            put(high & 0xffff, nibbles: 4)
            dash()
            put(low >> 48, nibbles: 4)
            dash()
            put(low & 0xffff_ffff_ffff, nibbles: 12)
            return index
        }
    }
}
