import Scopes
import Testing

/// Each rule of ``PathError``: no spelling of a path reaches a route with another scope.
@Suite("Path rules")
struct PathRulesTests {
    let v3 = catalog("marketplace-v3")
    let all = "read:patients read:bills read:notes read:emails write:emails"

    @Test("refused paths", arguments: [
        ("/v3/patients/../bills", PathError.dotSegment),
        ("/v3/patients/%2e%2e/bills", .dotSegment),
        ("/v3/patients/%2E/p1", .dotSegment),
        ("/v3/./patients", .dotSegment),
        ("/v3/patients/p1%2Fbills", .encodedSeparator),
        ("/v3/patients/p1%5cbills", .encodedSeparator),
        ("/v3/patients\\p1", .encodedSeparator),
        ("/v3//patients", .emptySegment),
        ("/v3/patients//", .emptySegment),
        ("//v3/patients", .emptySegment),
        ("/v3/patients;jsessionid=1", .semicolon),
        ("/v3/patients/..;/bills", .semicolon),
        ("/v3/patients/p%3B1", .semicolon),
        ("/v3/patients/p%1", .invalidPercentEncoding),
        ("/v3/patients/p%zz", .invalidPercentEncoding),
        ("/v3/patients/%", .invalidPercentEncoding),
        ("/v3/patients/p%00", .invalidCharacter),
        ("/v3/pati ents", .invalidCharacter),
        ("/v3/pat\u{E9}ients", .invalidCharacter),
        ("v3/patients", .notAbsolute),
        ("", .notAbsolute),
    ])
    func refused(_ path: String, _ error: PathError) {
        #expect(v3.decide(v3.set(all), method: .get, path: path) == .invalidPath(error))
        #expect(RequestPath.segments(path) == .failure(error))
    }

    @Test func limits() {
        let long = "/v3/patients/" + String(repeating: "a", count: RequestPath.maxBytes)
        #expect(v3.decide(.empty, method: .get, path: long) == .invalidPath(.tooLong))
        let deep = String(repeating: "/a", count: RequestPath.maxSegments + 1)
        #expect(v3.decide(.empty, method: .get, path: deep) == .invalidPath(.tooManySegments))
        #expect(v3.decide(.empty, method: .get, path: String(repeating: "/a", count: RequestPath.maxSegments)) == .notFound)
    }

    @Test("one trailing slash is the same route")
    func trailingSlash() {
        #expect(v3.decide(all, "GET", "/v3/patients/") == v3.decide(all, "GET", "/v3/patients"))
        #expect(v3.decide(all, "GET", "/v3/patients/").isAllowed)
        #expect(!v3.decide("read:bills", "GET", "/v3/patients/").isAllowed)
    }

    @Test("literal segments are case-sensitive")
    func caseSensitive() {
        #expect(v3.decide(all, "GET", "/V3/patients") == .notFound)
        #expect(v3.decide(all, "GET", "/v3/Patients") == .notFound)
        // A parameter keeps its case (it is data, not a route choice).
        #expect(v3.decide(all, "GET", "/v3/patients/ABC").isAllowed)
    }

    @Test("percent-decoding happens once, before matching")
    func decodedOnce() {
        #expect(RequestPath.segments("/v3/p%61tients/%25x41") == .success(["v3", "patients", "%x41"]))
        // …and never twice: %2541 would become A for an upstream that decodes again (security review).
        #expect(RequestPath.segments("/v3/p%61tients/%2541") == .failure(.doubleEncoding))
        // An encoded spelling reaches the same route, with the same scope.
        #expect(v3.decide("read:patients", "GET", "/v3/p%61tients").isAllowed)
        #expect(!v3.decide("read:bills", "GET", "/v3/p%61tients").isAllowed)
        // A parameter that looks like another route stays a parameter.
        guard case .insufficientScope(_, let required) = v3.decide("read:patients", "GET", "/v3/bills/%2e%2e%2epatients") else {
            Issue.record("expected a refusal")
            return
        }
        #expect(required == "read:bills")
    }

    @Test("methods: HEAD follows GET, unknown ones are 405")
    func methods() {
        #expect(v3.decide("read:patients", "HEAD", "/v3/patients").isAllowed)
        #expect(v3.decide(all, "OPTIONS", "/v3/patients") == .methodNotAllowed)
        #expect(v3.decide(all, "TRACE", "/v3/patients") == .methodNotAllowed)
        #expect(v3.decide(all, "get", "/v3/patients") == .methodNotAllowed)
        #expect(v3.decide(all, "DELETE", "/v3/patients/p1") == .methodNotAllowed)
        #expect(v3.decide(all, "GET", "/v3/nothing") == .notFound)
    }

    @Test("a literal route beats a parameter; backtracking keeps each scope")
    func literalFirst() {
        #expect(v3.decide("write:emails", "POST", "/v3/emails/send").isAllowed)
        guard case .insufficientScope(_, let required) = v3.decide("write:emails", "GET", "/v3/emails/send") else {
            Issue.record("expected GET /v3/emails/send to be the read route")
            return
        }
        #expect(required == "read:emails")
        let platform = catalog("platform")
        #expect(platform.decide("cms.fhir.rest.write", "POST", "/fhir/R4/Observation").isAllowed)
        #expect(!platform.decide("cms.fhir.r4.read", "GET", "/fhir/R4/$export").isAllowed)
        // An operation is never a resource type, encoded or not (security review: $export2 passed as a type).
        #expect(platform.decide("cms.fhir.r4.read", "GET", "/fhir/R4/%24export2") == .notFound)
    }

    @Test("the query string never changes the route")
    func queryIgnoredForRouting() {
        #expect(v3.decide("read:patients", "GET", "/v3/patients?/v3/bills").isAllowed)
        #expect(!v3.decide("read:bills", "GET", "/v3/patients?x=/v3/bills").isAllowed)
    }
}
