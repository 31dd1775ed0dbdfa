@testable import CaregateServer
import Foundation
import Testing

@Suite("Trace ids")
struct TraceIDTests {
    @Test("new trace ids are lowercase version 4 UUIDs and do not repeat")
    func shape() {
        var seen = Set<String>()
        for _ in 0..<100_000 {
            let id = TraceID.make()
            seen.insert(id)
            guard id.utf8.count == 36, let uuid = UUID(uuidString: id) else {
                Issue.record("not a UUID: \(id)")
                return
            }
            #expect(uuid.uuidString.lowercased() == id)
            let bytes = withUnsafeBytes(of: uuid.uuid) { Array($0) }
            #expect(bytes[6] >> 4 == 4 && bytes[8] >> 6 == 0b10, "\(id) is not version 4, variant 10")
        }
        #expect(seen.count == 100_000)
    }
}
