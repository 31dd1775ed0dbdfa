import Foundation
import SQLKit

/// One decision of the enforcement middleware, as stored (never a secret: the key's id only).
///
/// What many events share, whose request it was and the route it was decided on, is held by
/// reference (``Subject``, ``Route``): one per credential and one per catalog route, made once.
/// Recording an event then takes two references where it would take five strings, each a
/// reference count that every thread serving the credential, and the audit writer's, updates.
public struct AuditEvent: Sendable, Equatable {
    /// Whose request it was: the clinic, the app and the key (or OAuth client), as the events of
    /// a credential whose ids are not all ours name it (every other credential's hold ``IDs``). A
    /// server makes one per credential, and its events share it rather than copy three strings.
    public final class Subject: Sendable, Equatable {
        public let auditedOrganizationID: String?
        public let auditedAppID: String?
        public let auditedKeyID: String?

        public init(organizationID: String?, appID: String?, keyID: String?) {
            auditedOrganizationID = organizationID
            auditedAppID = appID
            auditedKeyID = keyID
        }

        /// The subject of these ids, or nil when they name nobody (a tally of unauthenticated requests).
        public static func naming(organizationID: String?, appID: String?, keyID: String?) -> Subject? {
            organizationID == nil && appID == nil && keyID == nil ? nil : Subject(organizationID: organizationID, appID: appID, keyID: keyID)
        }

        public static func == (a: Subject, b: Subject) -> Bool {
            a === b
                || (a.auditedOrganizationID == b.auditedOrganizationID && a.auditedAppID == b.auditedAppID && a.auditedKeyID == b.auditedKeyID)
        }
    }

    /// The route a request was decided on, as the log keeps it: its template and the scope
    /// the event names (what the route requires when allowed, the missing one when refused).
    public final class Route: Sendable, Equatable {
        /// As the catalog names it: the method, a space and the path template (`GET /v3/patients/{id}`).
        public let template: String
        public let requiredScope: String?
        /// The template's path (the template itself when it names no method): a request to a
        /// route without parameters has exactly this path, and its event then keeps none of its own.
        public let templatePath: String

        public init(template: String, requiredScope: String?) {
            self.template = template
            self.requiredScope = requiredScope
            // What follows the method (all of it when the template names none).
            templatePath = template.firstIndex(of: " ").map { String(template[template.index(after: $0)...]) } ?? template
        }

        private init(template: String, templatePath: String, requiredScope: String?) {
            self.template = template
            self.templatePath = templatePath
            self.requiredScope = requiredScope
        }

        /// The same route naming another scope (the one a refused request lacked): its strings shared, not made again.
        public func naming(_ scope: String?) -> Route {
            Route(template: template, templatePath: templatePath, requiredScope: scope)
        }

        public static func == (a: Route, b: Route) -> Bool {
            a === b || (a.template == b.template && a.requiredScope == b.requiredScope)
        }
    }

    /// The clinic, app and key of a request, as bits: what an event of a credential whose ids are
    /// all ``Identifier/random(_:)``'s keeps instead of a reference to that credential. With many
    /// keys in use, the audit writer's thread found each event's credential, and its key id's
    /// string, out of cache, and a reference had it retain and release each one, miss after miss
    /// (perf, 100,000 keys at random: `insert` took 0.67–0.75 µs per request, with bits 0.26–0.28).
    public struct IDs: Hashable, Sendable {
        public let organization: CompactID
        public let app: CompactID
        public let key: CompactID

        public init?(organizationID: String, appID: String, keyID: String) {
            guard let organization = CompactID(organizationID), let app = CompactID(appID), let key = CompactID(keyID) else { return nil }
            self.organization = organization
            self.app = app
            self.key = key
        }

        public init(organization: CompactID, app: CompactID, key: CompactID) {
            self.organization = organization
            self.app = app
            self.key = key
        }
    }

    /// Whose request it was: as ids (``IDs``), or as a subject (any other ids), or nobody.
    fileprivate enum Who: Sendable {
        case nobody
        case ids(IDs)
        case subject(Subject)
    }

    public var id: String
    public var at: Int64
    fileprivate var who: Who
    public var method: String
    public var decided: Route?
    /// The request's path. Nil while it is the decided route's own template (a route without
    /// parameters): the event then keeps no string of its own that the audit writer's thread
    /// would have to read and free, memory the request's thread allocated.
    fileprivate var ownPath: String?
    public var decision: String
    public var status: Int
    /// For the same reason, a trace id of Caregate's length (36 bytes, a UUID) is kept inline.
    fileprivate var trace: Trace
    /// Set on the tally of requests that failed before authentication: the peer they came
    /// from (such requests are never filed under a clinic, and are not logged one by one).
    public var peer: String?
    /// How many requests this event stands for (1, or a peer's tally).
    public var count: Int

    /// Whose request it was. An event holding ``IDs`` gives a new subject naming them; ``note(_:)`` sets them.
    public var subject: Subject? {
        get {
            switch who {
            case .nobody: nil
            case .ids(let ids): Subject(organizationID: ids.organization.text, appID: ids.app.text, keyID: ids.key.text)
            case .subject(let subject): subject
            }
        }
        set { who = newValue.map(Who.subject) ?? .nobody }
    }

    /// Names the request's clinic, app and key by their bits.
    public mutating func note(_ ids: IDs) {
        who = .ids(ids)
    }

    public var organizationID: String? {
        switch who {
        case .nobody: nil
        case .ids(let ids): ids.organization.text
        case .subject(let subject): subject.auditedOrganizationID
        }
    }
    public var appID: String? {
        switch who {
        case .nobody: nil
        case .ids(let ids): ids.app.text
        case .subject(let subject): subject.auditedAppID
        }
    }
    public var keyID: String? {
        switch who {
        case .nobody: nil
        case .ids(let ids): ids.key.text
        case .subject(let subject): subject.auditedKeyID
        }
    }
    public var route: String? { decided?.template }
    public var requiredScope: String? { decided?.requiredScope }
    public var path: String {
        get { ownPath ?? decided?.templatePath ?? "" }
        set { ownPath = newValue }
    }
    public var traceID: String {
        get { trace.text }
        set { trace = Trace(newValue) }
    }

    /// Equal when every field reads the same (a path kept as its route's template included).
    public static func == (a: AuditEvent, b: AuditEvent) -> Bool {
        a.id == b.id && a.at == b.at && a.organizationID == b.organizationID && a.appID == b.appID && a.keyID == b.keyID && a.method == b.method && a.decided == b.decided && a.path == b.path
            && a.decision == b.decision && a.status == b.status && a.trace == b.trace && a.peer == b.peer && a.count == b.count
    }

    /// Drops the path's own string when it is the decided route's template's path.
    public mutating func sharePathWithRoute() {
        if let ownPath, let decided, ownPath == decided.templatePath { self.ownPath = nil }
    }

    /// Whether the event keeps no path of its own (it is its route's template's path).
    public var sharesPathWithRoute: Bool { ownPath == nil && decided != nil }

    /// The path as stored: the event's own as a JSON string, or `null` for its route's template's
    /// path (an event without a route has the empty path). Given the fields, not
    /// the event: a method called on an event in an array's memory copied the whole event first
    /// (a retain and a release of each of its references), inlined or not.
    fileprivate static func writePath(_ ownPath: String?, _ decided: Route?, into out: inout [UInt8]) {
        if let ownPath {
            JSONValue.writeString(ownPath, into: &out)
        } else if decided != nil {
            out.append(contentsOf: "null".utf8)  // the route's own (``AuditStore/writeEvents``)
        } else {
            JSONValue.writeString("", into: &out)
        }
    }

    fileprivate enum Trace: Sendable, Equatable {
        case inline(InlineArray<36, UInt8>)
        case text(String)

        init(_ text: String) {
            let inline: InlineArray<36, UInt8>? = text.utf8.count == 36
                ? text.utf8.withContiguousStorageIfAvailable { bytes in InlineArray { bytes[$0] } } : nil
            self = inline.map(Trace.inline) ?? .text(text)
        }

        var text: String {
            switch self {
            case .inline(let bytes):
                String(unsafeUninitializedCapacity: 36) { buffer in
                    for i in 0..<36 { buffer[i] = bytes[i] }
                    return 36
                }
            case .text(let text): text
            }
        }

        func write(into out: inout [UInt8]) {
            switch self {
            case .inline(let bytes): bytes.span.withUnsafeBufferPointer { JSONValue.writeString(utf8: $0, into: &out) }
            case .text(let text): JSONValue.writeString(text, into: &out)
            }
        }

        static func == (a: Trace, b: Trace) -> Bool { a.text == b.text }
    }

    /// `id` is left empty on the request path; the store gives each stored event its id.
    public init(
        at: Int64, subject: Subject?, method: String, decided: Route?, path: String, decision: String, status: Int, traceID: String,
        peer: String? = nil, count: Int = 1
    ) {
        self.id = ""
        self.at = at
        self.who = subject.map(Who.subject) ?? .nobody
        self.method = method
        self.decided = decided
        self.ownPath = path
        self.decision = decision
        self.status = status
        self.trace = Trace(traceID)
        self.peer = peer
        self.count = count
    }

    public init(
        at: Int64, organizationID: String?, appID: String?, keyID: String?, method: String, route: String?, path: String,
        requiredScope: String?, decision: String, status: Int, traceID: String, peer: String? = nil, count: Int = 1
    ) {
        self.init(
            at: at, subject: .naming(organizationID: organizationID, appID: appID, keyID: keyID), method: method, decided: route.map { Route(template: $0, requiredScope: requiredScope) }, path: path,
            decision: decision, status: status, traceID: traceID, peer: peer, count: count)
    }
}

/// The audit log, stored in segments: one row per app and clinic per write, holding up to
/// ``segmentSize`` of its events, in order, as JSON (``writeEvents(_:_:into:allowed:withKeys:)``). A row per event made the log the
/// most expensive part of an authorised request (three B-tree inserts of ~250 bytes each); a
/// segment costs one insert per flush, app and clinic, however many of the app's keys and
/// tokens made the requests, and it keeps every event whole (time, method, route, path,
/// scope, decision, status, trace id, and the key when the segment's events are of several).
///
/// An event's id is its segment's id (`aud_` + 29 time-ordered hex digits) followed by its
/// position (4 hex digits), so ids sort as the log is read: newest segment first, and in a
/// segment, the latest event first. Filters on clinic and app use the segment's indexed
/// columns; the decision filter skips segments without such events.
public struct AuditStore: Sendable {
    public let database: Database
    public init(database: Database) { self.database = database }

    public static let segmentSize = 1_000
    /// Whether `text` is an event id: `aud_` + 29 hex digits (segment) + 4 (position).
    public static func isEventID(_ text: String) -> Bool {
        let utf8 = text.utf8
        return utf8.count == 37 && text.hasPrefix("aud_")
            && utf8.dropFirst(4).allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0) }
    }

    /// Writes a batch (in the order recorded) in one transaction: nothing or everything.
    public func insert(_ events: [AuditEvent]) async throws {
        // Events by app and clinic, in recorded order; consecutive events mostly share them, so
        // the dictionary is consulted only when they change. The current run is two variables,
        // not an optional tuple: reading a copy of the tuple to compare would share its index
        // array, and every append would then copy it whole.
        var groups: [Group: [Int]] = [:]
        var order: [Group] = []
        var runGroup: Group?
        var runIndices: [Int] = []
        func close() {
            guard let group = runGroup else { return }
            if groups[group] == nil { order.append(group) }
            groups[group, default: []].append(contentsOf: runIndices)
            runIndices.removeAll(keepingCapacity: true)
            runGroup = nil
        }
        for i in events.indices {
            let group = Group(events[i].who)
            if group != runGroup {
                close()
                runGroup = group
            }
            runIndices.append(i)
        }
        close()
        var segments: [(id: String, firstAt: Int64, lastAt: Int64, group: Group, keyID: String?, allowed: Int, denied: Int, events: String)] = []
        var document: [UInt8] = []
        for group in order {
            let indices = groups[group]!
            for start in stride(from: 0, to: indices.count, by: Self.segmentSize) {
                let chunk = indices[start..<min(start + Self.segmentSize, indices.count)]
                document.removeAll(keepingCapacity: true)
                var allowed = 0
                // The segment names the key when its events share one; else each event names its own.
                let first = events[chunk.first!].who
                let shared = chunk.allSatisfy { Self.sameKey(events[$0].who, first) }
                Self.writeEvents(events, chunk, into: &document, allowed: &allowed, withKeys: !shared)
                let firstAt = events[chunk.first!].at, last = events[chunk.last!].at
                // Named after its latest event, so that the segment holding the newest event comes first.
                segments.append((Identifier.timeOrdered("aud", millis: last), firstAt, last, group, shared ? events[chunk.first!].keyID : nil, allowed, chunk.count - allowed,
                                 String(decoding: document, as: UTF8.self)))
            }
        }
        guard !segments.isEmpty else { return }
        let rows = segments
        try await database.transaction { db in
            for s in rows {
                try await db.raw("""
                    INSERT INTO audit_segments (id, first_at, last_at, organization_id, app_id, key_id, allowed, denied, events)
                    VALUES (\(bind: s.id), \(bind: s.firstAt), \(bind: s.lastAt), \(bind: s.group.organizationID), \(bind: s.group.appID),
                    \(bind: s.keyID), \(bind: s.allowed), \(bind: s.denied), \(bind: s.events))
                    """).run()
            }
        }
    }

    /// What a segment's events share: their clinic and app, as bits or as text. Events of one app
    /// and clinic named both ways in one write (a client id a clinic chose names its events by
    /// subject) go to two segments, which read back as one log.
    fileprivate enum Group: Hashable {
        case ids(organization: CompactID, app: CompactID)
        case text(organizationID: String?, appID: String?)

        init(_ who: AuditEvent.Who) {
            switch who {
            case .ids(let ids): self = .ids(organization: ids.organization, app: ids.app)
            case .subject(let subject): self = .text(organizationID: subject.auditedOrganizationID, appID: subject.auditedAppID)
            case .nobody: self = .text(organizationID: nil, appID: nil)
            }
        }

        var organizationID: String? {
            switch self {
            case .ids(let organization, _): organization.text
            case .text(let organizationID, _): organizationID
            }
        }

        var appID: String? {
            switch self {
            case .ids(_, let app): app.text
            case .text(_, let appID): appID
            }
        }
    }

    /// Whether two events name the same key, compared as bits when both hold ids.
    fileprivate static func sameKey(_ a: AuditEvent.Who, _ b: AuditEvent.Who) -> Bool {
        switch (a, b) {
        case (.ids(let x), .ids(let y)): x.key == y.key
        case (.subject(let x), .subject(let y)): x === y || x.auditedKeyID == y.auditedKeyID
        case (.nobody, .nobody): true
        case (.ids(let ids), .subject(let subject)), (.subject(let subject), .ids(let ids)): subject.auditedKeyID == ids.key.text
        case (.nobody, .subject(let subject)), (.subject(let subject), .nobody): subject.auditedKeyID == nil
        case (.nobody, .ids), (.ids, .nobody): false
        }
    }

    /// A segment's events as stored:
    ///
    /// `{"v":2,"at":A,"routes":[[method, route, requiredScope, decision], …],"events":[[at − A, route, path, status, traceId(, peer, count(, keyId))], …]}`
    ///
    /// What consecutive events mostly share (the method, the route, the scope named and the
    /// decision) is written once per segment, and each event gives its entry's position; a path
    /// that is its route's own is `null`; times count from the first event's. An event of a
    /// cached `/me` takes 56 bytes where the first format (`[[at, method, route, path,
    /// requiredScope, decision, status, traceId(, …)], …]`, still read) took 119. The trace id
    /// stays a quoted string, so a search for it finds it in either format.
    ///
    /// Built straight into bytes: no allocation per event. `withKeys`: each event names its key
    /// (a segment of several keys' events).
    static func writeEvents(_ events: [AuditEvent], _ indices: ArraySlice<Int>, into out: inout [UInt8], allowed: inout Int, withKeys: Bool = false) {
        func string(_ value: String?) {
            if let value { JSONValue.writeString(value, into: &out) } else { out.append(contentsOf: "null".utf8) }
        }
        // Digits written in place: `String(value)` went through a dynamically dispatched `description`.
        func writeInteger(_ value: Int64) {
            if value < 0 { out.append(UInt8(ascii: "-")) }
            var magnitude = value.magnitude
            var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: room for Int64's 19 digits
            withUnsafeMutableBytes(of: &digits) { digits in
                var start = digits.count
                repeat {
                    start -= 1
                    digits[start] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                    magnitude /= 10
                } while magnitude > 0
                out.append(contentsOf: UnsafeRawBufferPointer(rebasing: digits[start...]))
            }
        }
        var table = RouteTable()
        var entries: [Int] = []
        entries.reserveCapacity(indices.count)
        let base = indices.first.map { events[$0].at } ?? 0
        // Fields are read in place: copying an event out of the array would retain each of its strings.
        events.withUnsafeBufferPointer { events in
            for i in indices {
                entries.append(table.entry(method: events[i].method, decided: events[i].decided, decision: events[i].decision))
                if events[i].decision == "allowed" { allowed += 1 }
            }
            out.append(contentsOf: #"{"v":2,"at":"#.utf8)
            writeInteger(base)
            out.append(contentsOf: #","routes":["#.utf8)
            for (n, entry) in table.entries.enumerated() {
                if n > 0 { out.append(UInt8(ascii: ",")) }
                out.append(UInt8(ascii: "["))
                string(entry.method)
                out.append(UInt8(ascii: ","))
                string(entry.decided?.template)
                out.append(UInt8(ascii: ","))
                string(entry.decided?.requiredScope)
                out.append(UInt8(ascii: ","))
                string(entry.decision)
                out.append(UInt8(ascii: "]"))
            }
            out.append(contentsOf: #"],"events":["#.utf8)
            for (n, i) in indices.enumerated() {
                if n > 0 { out.append(UInt8(ascii: ",")) }
                out.append(UInt8(ascii: "["))
                writeInteger(events[i].at &- base)
                out.append(UInt8(ascii: ","))
                writeInteger(Int64(entries[n]))
                out.append(UInt8(ascii: ","))
                AuditEvent.writePath(events[i].ownPath, events[i].decided, into: &out)
                out.append(UInt8(ascii: ","))
                writeInteger(Int64(events[i].status))
                out.append(UInt8(ascii: ","))
                events[i].trace.write(into: &out)
                if events[i].peer != nil || withKeys {
                    out.append(UInt8(ascii: ","))
                    string(events[i].peer)
                    out.append(UInt8(ascii: ","))
                    writeInteger(Int64(events[i].count))
                }
                if withKeys {
                    out.append(UInt8(ascii: ","))
                    switch events[i].who {
                    case .ids(let ids):
                        out.append(UInt8(ascii: "\""))
                        ids.key.write(into: &out)
                        out.append(UInt8(ascii: "\""))
                    case .subject(let subject): string(subject.auditedKeyID)
                    case .nobody: string(nil)
                    }
                }
                out.append(UInt8(ascii: "]"))
            }
            out.append(contentsOf: "]}".utf8)
        }
    }

    /// A segment's distinct methods, routes, scopes and decisions, in order of first use. Routes
    /// are told apart by identity (each catalog route is one object; a refusal for scope makes
    /// its own), so an entry may repeat another's text, and nothing is hashed but a reference
    /// and two short strings, and only when an event's differ from the one before.
    private struct RouteTable {
        struct Key: Hashable {
            var route: ObjectIdentifier?
            var method: String
            var decision: String
        }
        private(set) var entries: [(method: String, decided: AuditEvent.Route?, decision: String)] = []
        private var known: [Key: Int] = [:]
        private var last = -1

        mutating func entry(method: String, decided: AuditEvent.Route?, decision: String) -> Int {
            if last >= 0, entries[last].decided === decided, entries[last].method == method, entries[last].decision == decision { return last }
            // The entries hold their routes, so an identifier is not reused while the table lives.
            let key = Key(route: decided.map(ObjectIdentifier.init), method: method, decision: decision)
            if let index = known[key] {
                last = index
                return index
            }
            entries.append((method, decided, decision))
            last = entries.count - 1
            known[key] = last
            return last
        }
    }

    /// One stored event, in either format ``writeEvents(_:_:into:allowed:withKeys:)`` describes.
    fileprivate struct StoredEvent {
        var at: Int64
        var method: String
        /// Shared by the events of one route entry (second format); one per event in the first.
        var decided: AuditEvent.Route?
        var path: String
        var decision: String
        var status: Int
        var traceID: String
        var peer: String?
        var count = 1
        /// The key, in a segment of several keys' events (else the segment's).
        var keyID: String?

        var route: String? { decided?.template }

        /// The event, under its segment's subject unless it names its own key (in a segment of
        /// several keys' events; the segment's clinic and app are still its own).
        func event(in segment: AuditEvent.Subject?) -> AuditEvent {
            let subject = keyID.map { AuditEvent.Subject(organizationID: segment?.auditedOrganizationID, appID: segment?.auditedAppID, keyID: $0) } ?? segment
            return AuditEvent(
                at: at, subject: subject, method: method, decided: decided, path: path, decision: decision, status: status, traceID: traceID, peer: peer, count: count)
        }

        /// A segment row's events, in the order written.
        static func all(in row: any SQLRow) throws -> [StoredEvent] {
            let text = Data(try row.decode(column: "events", as: String.self).utf8)
            if text.first == UInt8(ascii: "{") { return try JSONDecoder().decode(Segment.self, from: text).events }
            return try JSONDecoder().decode([StoredEvent].self, from: text)
        }
    }

    /// A segment of the second format: `{"v":2,"at":A,"routes":[…],"events":[…]}`.
    private struct Segment: Decodable {
        var events: [StoredEvent]

        private enum Field: String, CodingKey { case v, at, routes, events }

        /// Made once per entry and shared by its events.
        private struct Entry: Decodable {
            var method: String
            var decided: AuditEvent.Route?
            var decision: String

            init(from decoder: any Decoder) throws {
                var entry = try decoder.unkeyedContainer()
                method = try entry.decode(String.self)
                let route = try entry.decodeIfPresent(String.self)
                let requiredScope = try entry.decodeIfPresent(String.self)
                decided = route.map { AuditEvent.Route(template: $0, requiredScope: requiredScope) }
                decision = try entry.decode(String.self)
            }
        }

        /// `[at − A, route, path, status, traceId(, peer, count(, keyId))]`.
        private struct Event: Decodable {
            var at: Int64
            var entry: Int
            var path: String?
            var status: Int
            var traceID: String
            var peer: String?
            var count = 1
            var keyID: String?

            init(from decoder: any Decoder) throws {
                var event = try decoder.unkeyedContainer()
                at = try event.decode(Int64.self)
                entry = try event.decode(Int.self)
                path = try event.decodeIfPresent(String.self)
                status = try event.decode(Int.self)
                traceID = try event.decode(String.self)
                (peer, count, keyID) = try StoredEvent.tail(&event)
            }
        }

        init(from decoder: any Decoder) throws {
            let segment = try decoder.container(keyedBy: Field.self)
            guard try segment.decode(Int.self, forKey: .v) == 2 else {
                throw DecodingError.dataCorruptedError(forKey: .v, in: segment, debugDescription: "an audit segment of an unknown format")
            }
            let base = try segment.decode(Int64.self, forKey: .at)
            let entries = try segment.decode([Entry].self, forKey: .routes)
            events = try segment.decode([Event].self, forKey: .events).map { event in
                guard entries.indices.contains(event.entry) else {
                    throw DecodingError.dataCorruptedError(forKey: .events, in: segment, debugDescription: "an audit event names no route entry")
                }
                let entry = entries[event.entry]
                return StoredEvent(
                    at: base &+ event.at, method: entry.method, decided: entry.decided, path: event.path ?? entry.decided?.templatePath ?? "",
                    decision: entry.decision, status: event.status, traceID: event.traceID, peer: event.peer, count: event.count, keyID: event.keyID)
            }
        }
    }

    /// Newest first; `cursor` is the last id of the previous page (see ``isEventID(_:)``).
    /// `since` and `before` (milliseconds) bound the events' times: `since` ≤ at < `before`.
    public func page(
        organizationID: String?, appID: String?, decision: String?, traceID: String? = nil, since: Int64? = nil, before beforeAt: Int64? = nil,
        limit: Int, cursor: String?
    ) async throws -> (events: [AuditEvent], next: String?) {
        var before: (segment: String, position: Int)?
        if let cursor {
            guard Self.isEventID(cursor), let position = Int(cursor.suffix(4), radix: 16) else {
                throw StoreError.invalid("cursor is not a cursor of this list")
            }
            before = (String(cursor.dropLast(4)), position)
        }
        var events: [AuditEvent] = []
        let batch = 20
        var olderThan: String?
        while events.count <= limit {
            var query: SQLQueryString = "SELECT id, organization_id, app_id, key_id, events FROM audit_segments WHERE 1 = 1"
            if let organizationID { query += " AND organization_id = \(bind: organizationID)" }
            if let appID { query += " AND app_id = \(bind: appID)" }
            if decision == "allowed" { query += " AND allowed > 0" }
            if decision == "denied" { query += " AND denied > 0" }
            // A trace id is a UUID (checked by the caller): no LIKE wildcard in it.
            if let traceID { query += " AND events LIKE \(bind: "%\"" + traceID + "\"%")" }
            if let since { query += " AND last_at >= \(bind: since)" }
            if let beforeAt { query += " AND first_at < \(bind: beforeAt)" }
            if let olderThan {
                query += " AND id < \(bind: olderThan)"
            } else if let before {
                query += " AND id <= \(bind: before.segment)"
            }
            query += " ORDER BY id DESC LIMIT \(literal: batch)"
            let rows = try await database.sql.raw(query).all()
            for row in rows {
                let segment = try row.decode(column: "id", as: String.self)
                olderThan = segment
                let stored = try StoredEvent.all(in: row)
                var end = stored.count
                if let before, before.segment == segment { end = min(end, before.position) }
                let organizationID = try row.decode(column: "organization_id", as: String?.self)
                let appID = try row.decode(column: "app_id", as: String?.self)
                let keyID = try row.decode(column: "key_id", as: String?.self)
                let segmentSubject = AuditEvent.Subject.naming(organizationID: organizationID, appID: appID, keyID: keyID)
                for position in stride(from: end - 1, through: 0, by: -1)
                where (decision == nil || stored[position].decision == decision) && (traceID == nil || stored[position].traceID == traceID)
                    && (since.map { stored[position].at >= $0 } ?? true) && (beforeAt.map { stored[position].at < $0 } ?? true) {
                    let e = stored[position]
                    var event = e.event(in: segmentSubject)
                    event.id = segment + Self.hex4(position)
                    events.append(event)
                    if events.count > limit { break }
                }
                if events.count > limit { break }
            }
            if rows.count < batch { break }
        }
        let page = Array(events.prefix(limit))
        return (page, events.count > limit ? page.last?.id : nil)
    }

    private static func hex4(_ value: Int) -> String {
        var bytes: [UInt8] = []
        Identifier.appendHex(UInt64(value), digits: 4, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Deletes the events older than `cutoff` (milliseconds since 1970): the segments whose newest
    /// event is older, `batch` segments per statement, so that each transaction is short and the
    /// audit writer is never held up for long. Returns how many segments went.
    public func prune(olderThan cutoff: Int64, batch: Int = 200) async throws -> Int {
        // Segment ids begin with their newest event's time (13 hex digits), so the ids before
        // this bound are exactly the segments older than the cutoff.
        var bound: [UInt8] = Array("aud_".utf8)
        Identifier.appendHex(UInt64(max(cutoff, 0)), digits: 13, to: &bound)
        let upper = String(decoding: bound, as: UTF8.self)
        var deleted = 0
        while true {
            let ids = try await database.sql.raw(
                "SELECT id FROM audit_segments WHERE id < \(bind: upper) ORDER BY id LIMIT \(literal: batch)"
            ).all().map { try $0.decode(column: "id", as: String.self) }
            guard !ids.isEmpty else { return deleted }
            var statement: SQLQueryString = "DELETE FROM audit_segments WHERE id IN ("
            for (i, id) in ids.enumerated() { statement += i == 0 ? "\(bind: id)" : ", \(bind: id)" }
            statement += ")"
            try await database.sql.raw(statement).run()
            deleted += ids.count
            if ids.count < batch { return deleted }
            await Task.yield()
        }
    }

    /// Every event (of one clinic, of one app, since a time), oldest segment first and in the order
    /// written within it, handed to `write` one segment at a time: `batch` segments are read per
    /// query and at most one is decoded at once, so memory does not grow with the log.
    public func export(
        organizationID: String?, appID: String?, since: Int64?, batch: Int = 8, _ write: ([AuditEvent]) async throws -> Void
    ) async throws {
        var after = ""
        if let since {
            // Segments whose newest event is older than `since` hold nothing newer.
            var bound: [UInt8] = Array("aud_".utf8)
            Identifier.appendHex(UInt64(max(since, 0)), digits: 13, to: &bound)
            after = String(decoding: bound, as: UTF8.self)
        }
        while true {
            var query: SQLQueryString = "SELECT id, organization_id, app_id, key_id, events FROM audit_segments WHERE id > \(bind: after)"
            if let organizationID { query += " AND organization_id = \(bind: organizationID)" }
            if let appID { query += " AND app_id = \(bind: appID)" }
            query += " ORDER BY id LIMIT \(literal: batch)"
            let rows = try await database.sql.raw(query).all()
            for row in rows {
                let segment = try row.decode(column: "id", as: String.self)
                after = segment
                let organizationID = try row.decode(column: "organization_id", as: String?.self)
                let appID = try row.decode(column: "app_id", as: String?.self)
                let keyID = try row.decode(column: "key_id", as: String?.self)
                let segmentSubject = AuditEvent.Subject.naming(organizationID: organizationID, appID: appID, keyID: keyID)
                var events: [AuditEvent] = []
                for (position, e) in try StoredEvent.all(in: row).enumerated() where since.map({ e.at >= $0 }) ?? true {
                    var event = e.event(in: segmentSubject)
                    event.id = segment + Self.hex4(position)
                    events.append(event)
                }
                if !events.isEmpty { try await write(events) }
            }
            if rows.count < batch { return }
        }
    }

    /// What one credential did in a window: each route it was allowed (with one request path
    /// of it, to decide it again against a single scope) and when it was last used.
    public struct CredentialUsage: Sendable {
        public var routes: [String: (method: String, path: String)] = [:]
        public var lastUsedAt: Int64 = 0
    }

    /// What an app's credentials (key ids, OAuth client ids) did since `since`. Reads the app's
    /// segments newer than `since`, a few at a time.
    public func usage(appID: String, since: Int64) async throws -> [String: CredentialUsage] {
        var used: [String: CredentialUsage] = [:]
        var bound: [UInt8] = Array("aud_".utf8)
        Identifier.appendHex(UInt64(max(since, 0)), digits: 13, to: &bound)
        var after = String(decoding: bound, as: UTF8.self)
        while true {
            let rows = try await database.sql.raw("""
                SELECT id, key_id, events FROM audit_segments WHERE app_id = \(bind: appID) AND id > \(bind: after)
                ORDER BY id LIMIT 20
                """).all()
            for row in rows {
                after = try row.decode(column: "id", as: String.self)
                let segmentKey = try row.decode(column: "key_id", as: String?.self)
                for event in try StoredEvent.all(in: row) where event.at >= since {
                    guard let keyID = event.keyID ?? segmentKey else { continue }
                    used[keyID, default: CredentialUsage()].lastUsedAt = max(used[keyID]?.lastUsedAt ?? 0, event.at)
                    guard event.decision == "allowed", let route = event.route, used[keyID]?.routes[route] == nil else { continue }
                    used[keyID]!.routes[route] = (event.method, event.path)
                }
            }
            if rows.count < 20 { return used }
        }
    }

    /// How many events the log holds (all of them, or one route's).
    public func count(route: String? = nil) async throws -> Int {
        var total = 0
        var after = ""
        while true {
            let rows = try await database.sql.raw(
                "SELECT id, events FROM audit_segments WHERE id > \(bind: after) ORDER BY id LIMIT 100").all()
            for row in rows {
                after = try row.decode(column: "id", as: String.self)
                let stored = try StoredEvent.all(in: row)
                total += route.map { route in stored.count { $0.route == route } } ?? stored.count
            }
            if rows.count < 100 { return total }
        }
    }
}

/// In an extension, so that the event keeps its memberwise initializer (the second format's
/// reader makes events with it).
extension AuditStore.StoredEvent: Decodable {
    /// An event of the first format: `[at, method, route, path, requiredScope, decision, status, traceId(, peer, count(, keyId))]`.
    init(from decoder: any Decoder) throws {
        var row = try decoder.unkeyedContainer()
        at = try row.decode(Int64.self)
        method = try row.decode(String.self)
        let route = try row.decodeIfPresent(String.self)
        path = try row.decode(String.self)
        let requiredScope = try row.decodeIfPresent(String.self)
        decided = route.map { AuditEvent.Route(template: $0, requiredScope: requiredScope) }
        decision = try row.decode(String.self)
        status = try row.decode(Int.self)
        traceID = try row.decode(String.self)
        (peer, count, keyID) = try Self.tail(&row)
    }

    /// What ends an event in either format: `(, peer, count(, keyId))`.
    static func tail(_ event: inout any UnkeyedDecodingContainer) throws -> (peer: String?, count: Int, keyID: String?) {
        var tail: (peer: String?, count: Int, keyID: String?) = (nil, 1, nil)
        if !event.isAtEnd {
            tail.peer = try event.decodeIfPresent(String.self)
            tail.count = try event.decode(Int.self)
        }
        if !event.isAtEnd { tail.keyID = try event.decodeIfPresent(String.self) }
        return tail
    }
}
