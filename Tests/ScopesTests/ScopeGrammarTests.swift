import Scopes
import Testing

@Suite("Scope grammar")
struct ScopeGrammarTests {
    @Test("every family parses and prints back exactly", arguments: [
        "read:patients", "write:soap_notes", "read:phone_numbers",
        "cms.fhir.r4.read", "velocity.clearinghouse.claims.write", "horizon.query", "identity.merge",
        "patient/Observation.read", "user/*.write", "system/*.read", "system/patients.read",
        "system/patient-provider-team-members.write", "patient/Observation.rs", "user/Patient.cruds",
        "patient/*.*", "system/Observation.c", "patient/Observation.rs?category=laboratory",
        "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
        "patient/Observation.rs?category=laboratory&status=final",
        "launch/patient", "launch/encounter", "launch", "launch-ehr", "fhirUser", "openid", "offline_access", "apiv2",
    ])
    func roundTrip(_ text: String) throws {
        let scope = try Scope(parsing: text)
        #expect(scope.description == text)
        #expect(try Scope(parsing: scope.description) == scope)
    }

    @Test func familiesAreRecognised() throws {
        #expect(try Scope(parsing: "read:patients").form == .actionResource(action: "read", resource: "patients"))
        #expect(try Scope(parsing: "cms.fhir.r4.read").form == .dotted(segments: ["cms", "fhir", "r4", "read"]))
        #expect(try Scope(parsing: "fhirUser").form == .bare("fhirUser"))
        #expect(try Scope(parsing: "launch/patient").form == .bare("launch/patient"))
        let r = try #require(try Scope(parsing: "user/*.write").resourceScope)
        #expect(r.context == .user && r.resource == nil && r.permissions == .v1Write && r.syntax == .v1)
        let c = try #require(try Scope(parsing: "patient/Observation.rs?category=laboratory").resourceScope)
        #expect(c.permissions == .v1Read && c.syntax == .v2)
        #expect(c.constraints == [QueryConstraint(name: "category", value: "laboratory")])
    }

    @Test("v1 words map to v2 letters")
    func v1ToV2() throws {
        #expect(try Scope(parsing: "patient/X.read").resourceScope?.permissions == [.read, .search])
        #expect(try Scope(parsing: "patient/X.write").resourceScope?.permissions == [.create, .update, .delete])
        #expect(try Scope(parsing: "patient/X.*").resourceScope?.permissions == .all)
        #expect(try Scope(parsing: "patient/X.cruds").resourceScope?.permissions == .all)
    }

    @Test("invalid scopes are refused with the text and the reason", arguments: [
        ("", ScopeError.Reason.empty),
        (" read:patients", .whitespace),
        ("read:patients ", .whitespace),
        ("read:\tpatients", .whitespace),
        ("read:pat\u{0}ients", .controlCharacter),
        ("read:pat\u{7F}ients", .controlCharacter),
        ("read:p\u{0430}tients", .nonASCII),          // Cyrillic а
        ("re\u{200B}ad:patients", .nonASCII),          // zero-width space
        ("patient/Observation.rw", .malformed("unknown permission \"rw\" (expected read, write, * or letters of cruds)")),
        ("patient/Observation.sr", .permissionsOutOfOrder),
        ("patient/Observation.rr", .permissionsOutOfOrder),
        ("patient/Observation.", .emptyPermissions),
        ("doctor/Observation.read", .unknownContext("doctor")),
        ("read:pat(ients", .invalidCharacter("(")),
        ("String(x):y", .malformed("action must start with a lower-case letter")),
        ("Read:patients", .malformed("action must start with a lower-case letter")),
        ("patient/Observation.read?category=x", .invalidConstraint("query constraints need v2 permission letters (e.g. .rs)")),
        ("patient/Observation.rs?category", .invalidConstraint("expected name=value")),
        ("patient/Observation.rs?", .invalidConstraint("nothing after \"?\"")),
        ("cms..read", .malformed("empty dotted segment")),
        ("read:", .malformed("empty resource")),
    ])
    func invalid(_ text: String, _ reason: ScopeError.Reason) {
        #expect {
            try Scope(parsing: text)
        } throws: { error in
            guard let error = error as? ScopeError else { return false }
            return error.reason == reason && error.description.contains("invalid scope \"")
        }
    }

    @Test func uppercaseActionIsRefused() {
        // Scopes are case-sensitive: READ:patients is not read:patients.
        #expect(throws: ScopeError.self) { try Scope(parsing: "READ:patients") }
    }

    @Test func tooLongScope() {
        let text = "read:" + String(repeating: "a", count: 252)
        #expect(text.utf8.count == 257)
        #expect(throws: ScopeError(text: text, reason: .tooLong(bytes: 257))) { try Scope(parsing: text) }
        #expect((try? Scope(parsing: String(text.dropLast()))) != nil)
    }

    @Test func errorTextIsEscaped() throws {
        do {
            _ = try Scope(parsing: "read:p\u{0430}\u{0}")
            Issue.record("expected an error")
        } catch {
            #expect(error.text == "read:p\\u{430}\\u{0}")
            #expect(error.description.allSatisfy { $0.isASCII })
        }
    }

    @Test func lists() throws {
        #expect(try ScopeList.parse("read:patients read:notes").map(\.description) == ["read:patients", "read:notes"])
        #expect(try ScopeList.parse("").isEmpty)
        #expect(try ScopeList.parse("read:notes read:notes").count == 1)
        #expect(throws: ScopeError.self) { try ScopeList.parse("read:patients  read:notes") }
        #expect(throws: ScopeError.self) { try ScopeList.parse(" read:patients") }
        #expect(throws: ScopeError.self) { try ScopeList.parse("read:patients ") }
        let hundred = (0..<100).map { "read:s\($0)" }
        #expect(try ScopeList.parse(hundred.joined(separator: " ")).count == 100)
        let tooMany = (0..<257).map { "read:s\($0)" }
        do {
            _ = try ScopeList.parse(tooMany.joined(separator: " "))
            Issue.record("expected an error")
        } catch {
            #expect(error.reason == .tooManyScopes(count: 257))
        }
        // The limit counts entries as sent, duplicates included.
        #expect(throws: ScopeError(text: Array(repeating: "read:a", count: 257).joined(separator: " "), reason: .tooManyScopes(count: 257))) {
            try ScopeList.parse(Array(repeating: "read:a", count: 257).joined(separator: " "))
        }
        let big = (0..<40).map { "read:" + String(repeating: "x", count: 200) + "\($0)" }.joined(separator: " ")
        #expect(big.utf8.count > 8192)
        do {
            _ = try ScopeList.parse(big)
            Issue.record("expected an error")
        } catch {
            #expect(error.reason == .listTooLong(bytes: big.utf8.count))
        }
        #expect(throws: ScopeError.self) { try ScopeList.parse(["read:patients", ""]) }
    }
}
