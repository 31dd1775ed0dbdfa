import CaregateStore
import Testing

/// The small parts the FHIR API stands on: JSON read exactly as written, instants by the
/// Gregorian calendar's arithmetic, FHIR ids for record ids.
@Suite struct FHIRValueTests {
    @Test("JSON keeps key order and a decimal's text; refuses duplicates, depth, bad escapes and trailing text")
    func json() throws {
        let value = try JSONValue.parse(#"{"b":1,"a":[5.60,-0.0,1e3,"x\u00e9\ud83d\ude00"],"c":{"d":null,"e":true}}"#)
        #expect(String(decoding: value.serialized(), as: UTF8.self) == #"{"b":1,"a":[5.60,-0.0,1e3,"xé😀"],"c":{"d":null,"e":true}}"#)
        for bad in [#"{"a":1,"a":2}"#, "[1,]", "01", "1.", "\"\\ud800\"", "{} x", "\"a\u{01}\"", "[" + String(repeating: "[", count: 70) + String(repeating: "]", count: 71)] {
            #expect(throws: JSONParseError.self, "\(bad.prefix(20))") { try JSONValue.parse(bad) }
        }
    }

    @Test("instants: days from 1970 both ways, leap years, before 1582 too")
    func instants() {
        #expect(FHIRDate.instant(seconds: 0) == "1970-01-01T00:00:00Z")
        #expect(FHIRDate.instant(seconds: FHIRDate.days(year: 2024, month: 2, day: 29) * 86_400 + 3_723) == "2024-02-29T01:02:03Z")
        #expect(FHIRDate.instant(seconds: FHIRDate.days(year: 1582, month: 10, day: 10) * 86_400) == "1582-10-10T00:00:00Z")
        #expect(FHIRDate.instant(seconds: FHIRDate.days(year: 1, month: 1, day: 1) * 86_400 - 1) == "0000-12-31T23:59:59Z")
        #expect(FHIRDate.instant(millis: -1) == "1969-12-31T23:59:59Z")
        #expect(FHIRDate.daysIn(month: 2, year: 1900) == 28 && FHIRDate.daysIn(month: 2, year: 2000) == 29 && FHIRDate.daysIn(month: 2, year: 2028) == 29)
        // Every 997th day from 0001-01-01 to 9999-12-31.
        for days in stride(from: FHIRDate.days(year: 1, month: 1, day: 1), through: FHIRDate.days(year: 9999, month: 12, day: 31), by: 997) {
            let text = FHIRDate.instant(seconds: days * 86_400)
            let parts = text.prefix(10).split(separator: "-").compactMap { Int($0) }
            #expect(FHIRDate.days(year: parts[0], month: parts[1], day: parts[2]) == days, "\(text)")
        }
    }

    @Test("the date index's text sorts as time does, past the end of year 9999 too")
    func sortableInstants() {
        let end = FHIRDate.days(year: 10_000, month: 1, day: 1) * 86_400
        #expect(FHIRDate.sortable(seconds: end - 1) == "9999-12-31T23:59:59Z")
        #expect(FHIRDate.sortable(seconds: end) == "9999-12-31T24:00:00Z")
        #expect(FHIRDate.sortable(seconds: end + 14 * 3600 - 1) == "9999-12-31T37:59:59Z")
        let seconds: [Int64] = [FHIRDate.days(year: 1, month: 1, day: 1) * 86_400 - 50_400, 0, FHIRDate.days(year: 2026, month: 12, day: 3) * 86_400]
            + Array(stride(from: end - 7_200, through: end + 14 * 3600, by: 599))
        let texts = seconds.map(FHIRDate.sortable(seconds:))
        #expect(texts == texts.sorted(), "\(texts)")
        #expect(Set(texts).count == texts.count)
    }

    @Test("record ids and FHIR ids convert both ways")
    func ids() {
        #expect(FHIRID.fhir("pat_0a1b") == "pat-0a1b" && FHIRID.record("pat-0a1b") == "pat_0a1b")
        #expect(FHIRID.fhir(FHIRID.fhir("obs_1")) == "obs-1" && FHIRID.reference("Patient", "pat_9") == "Patient/pat-9")
    }
}
