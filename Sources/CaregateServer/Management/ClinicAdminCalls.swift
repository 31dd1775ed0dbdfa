import CaregateStore
import Foundation
import HTTPTypes
import Hummingbird
import JWTKit
import Scopes

/// A clinic admin's calls: installations and approvals; and the audit log (operator or clinic admin).
extension ManagementRoutes {
    func install(_ call: inout ManagementCall) async throws -> Response {
        let principal = call.principal
        let body = try await call.body()
        let appID = try body.string("appId", max: 40)!
        guard Validate.isID(appID, prefix: "app"), let app = try await grants.app(appID) else {
            throw APIError.notFound("no app \"\(Validate.safe(appID))\"")
        }
        var scopes = app.scopes
        if let requested = try body.stringArray("scopes", required: false) {
            let valid = try validateScopes(requested, surface: app.surface, field: "scopes")
            try Self.subset(valid, of: app.scopes, field: "scopes", what: "requested by the app's live version")
            scopes = valid
        }
        let installation = try await grants.install(appID: app.id, organizationID: principal.subjectID, versionID: app.liveVersionID, scopes: scopes)
        return JSONResponse.make(installationJSON(installation), status: .created)
    }

    func getInstallation(_ call: inout ManagementCall) async throws -> Response {
        let principal = call.principal
        let installation = try await ownInstallation(principal, try call.parameter("id"))
        return JSONResponse.make(try await installationWithLiveVersion(installation))
    }

    func listInstallations(_ call: inout ManagementCall) async throws -> Response {
        var list: [JSONValue] = []
        for installation in try await grants.installations(organizationID: call.principal.subjectID) {
            list.append(try await installationWithLiveVersion(installation))
        }
        return JSONResponse.make(.array(list))
    }

    /// An installation with what re-approval would review: the live version's scopes (and the app's name).
    private func installationWithLiveVersion(_ installation: InstallationRecord) async throws -> JSONValue {
        var json = installationJSON(installation)
        if let app = try await grants.app(installation.appID) {
            json.set("liveVersionId", .string(app.liveVersionID))
            json.set("liveVersionScopes", .array(app.scopes.map { .string($0) }))
            json.set("appName", .string(app.name))
            json.set("appSurface", .string(app.surface))
            // What the approved version asked for: against the live version's list, what a re-approval would add or drop.
            if let approvedVersion = try await grants.version(installation.approvedVersionID) {
                json.set("approvedVersionScopes", .array(approvedVersion.scopes.map { .string($0) }))
            }
        }
        return json
    }

    func approve(_ call: inout ManagementCall) async throws -> Response {
        let principal = call.principal
        let installation = try await ownInstallation(principal, try call.parameter("id"))
        guard let app = try await grants.app(installation.appID) else { throw APIError.notFound("the installed app no longer exists") }
        let body = try await call.body()
        let scopes = try validateScopes(try body.stringArray("scopes")!, surface: app.surface, field: "scopes")
        try Self.subset(scopes, of: app.scopes, field: "scopes", what: "requested by the app's live version")
        guard let updated = try await grants.approve(installationID: installation.id, versionID: app.liveVersionID, scopes: scopes) else {
            throw APIError.notFound("installation vanished")
        }
        return JSONResponse.make(installationJSON(updated))
    }

    func uninstall(_ call: inout ManagementCall) async throws -> Response {
        let principal = call.principal
        let installation = try await ownInstallation(principal, try call.parameter("id"))
        try await grants.uninstall(installationID: installation.id)
        return Response(status: .noContent)
    }

    /// The clinic an audit read covers: `organizationId` for the operator (nil: every clinic);
    /// always a clinic admin's own, and naming another is refused.
    private func auditClinic(_ query: QueryInput, _ principal: Principal, refusal: String) throws -> String? {
        let named = query["organizationId"].flatMap(Identifier.organizationID(fromClientForm:))
        guard principal.kind == .clinicAdmin else { return named }
        if let named, named != principal.subjectID { throw APIError.forbidden(refusal) }
        return principal.subjectID
    }

    func auditPage(_ call: inout ManagementCall) async throws -> Response {
        let query = try call.query()
        let organization = try auditClinic(query, call.principal, refusal: "a clinic admin sees only its own clinic's audit log")
        let decision = query["decision"]
        let cursor = query["cursor"]
        await auditWriter.flush()
        let page = try await audit.page(
            organizationID: organization, appID: try query.id("appId", prefix: "app"), decision: decision, traceID: query["traceId"]?.lowercased(),
            since: query["since"].flatMap(Self.startOfDay), before: query["until"].flatMap(Self.startOfDay).map { $0 + 86_400_000 },
            limit: try query.limit(), cursor: cursor)
        let events = page.events.map(Self.eventJSON)
        return JSONResponse.make(["code": "success", "data": .array(events), "nextCursor": .optional(page.next)] as JSONValue)
    }

    static func eventJSON(_ e: AuditEvent) -> JSONValue {
        var event: JSONValue = [
            "id": .string(e.id), "at": .string(Self.iso8601(e.at)), "organizationId": .optional(e.organizationID), "appId": .optional(e.appID),
            "keyId": .optional(e.keyID), "method": .string(e.method), "route": .optional(e.route), "path": .string(e.path),
            "requiredScope": .optional(e.requiredScope), "decision": .string(e.decision), "status": .int(Int64(e.status)), "traceId": .string(e.traceID),
        ]
        if let peer = e.peer {
            event.set("peer", .string(peer))
            event.set("count", .int(Int64(e.count)))
        }
        return event
    }

    /// Streams the log: a segment's events are written (with back-pressure from the connection)
    /// before the next is read, so memory stays flat however long the log is.
    func auditExport(_ call: inout ManagementCall) async throws -> Response {
        let query = try call.query()
        let organization = try auditClinic(query, call.principal, refusal: "a clinic admin exports only its own clinic's audit log")
        let appID = try query.id("appId", prefix: "app")
        let since = query["since"].flatMap(Self.startOfDay)
        await auditWriter.flush()
        let audit = self.audit
        let logger = call.context.logger
        return Response(
            status: .ok, headers: [.contentType: "application/x-ndjson"],
            body: ResponseBody { writer in
                var buffer = ByteBuffer()
                do {
                    try await audit.export(organizationID: organization, appID: appID, since: since) { events in
                        buffer.clear()
                        for event in events {
                            buffer.writeBytes(Self.eventJSON(event).serialized())
                            buffer.writeInteger(UInt8(ascii: "\n"))
                        }
                        try await writer.write(buffer)
                    }
                } catch {
                    // The status is already sent: the stream ends early, and a client that counts
                    // lines or checks the last one sees it; the log says why.
                    logger.error("audit export ended early", metadata: ["error": "\(error)"])
                    throw error
                }
                try await writer.finish(nil)
            })
    }

    /// Milliseconds at 00:00 UTC of a `YYYY-MM-DD` day.
    static func startOfDay(_ day: String) -> Int64? {
        let parts = day.split(separator: "-").compactMap { Int($0) }
        guard parts.count == 3 else { return nil }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        guard let date = calendar.date(from: DateComponents(year: parts[0], month: parts[1], day: parts[2])) else { return nil }
        return Int64(date.timeIntervalSince1970 * 1_000)
    }

    // MARK: Clinic users

    /// The clinic of `{orgId}`, which must be the caller's (either id form).
    private func ownClinic(_ call: ManagementCall) throws -> String {
        let text = try call.parameter("orgId")
        guard let id = Identifier.organizationID(fromClientForm: text), id == call.principal.subjectID else {
            throw APIError.notFound("no organization \"\(Validate.safe(text))\" of this clinic admin")
        }
        return id
    }

    func clinicUserJSON(_ user: ClinicUserRecord) -> JSONValue {
        ["id": .string(user.id), "username": .string(user.username), "role": .string(user.role), "fhirUser": .string(user.fhirUser),
         "providerId": .optional(user.providerID), "patientId": .optional(user.patientID), "createdAt": .string(Self.iso8601(user.createdAt))]
    }

    func createClinicUser(_ call: inout ManagementCall) async throws -> Response {
        let organization = try ownClinic(call)
        let body = try await call.body()
        let username = try body.string("username", max: 64)!
        guard username.wholeMatch(of: /[a-z0-9][a-z0-9._@-]{2,63}/) != nil else {
            throw APIError.badRequest("field \"username\" must be 3 to 64 lower-case letters, digits and . _ @ -, starting with a letter or digit")
        }
        let password = try body.string("password", max: 256)!
        // Code points, as the document's minLength counts them.
        guard password.unicodeScalars.count >= 12 else { throw APIError.badRequest("field \"password\" must be at least 12 characters") }
        let role = try body.string("role", max: 20)!
        let providerID = try body.string("providerId", max: 40, required: false)
        let patientID = try body.string("patientId", max: 40, required: false)
        switch role {
        case "clinician":
            guard let providerID, patientID == nil else { throw APIError.badRequest("a clinician needs providerId (and no patientId)") }
            guard Validate.isID(providerID, prefix: "prv"), try await clinic.get(.providers, organization: organization, id: providerID) != nil else {
                throw APIError.badRequest("field \"providerId\": no such provider in this clinic")
            }
        case "patient":
            guard let patientID, providerID == nil else { throw APIError.badRequest("a patient needs patientId (and no providerId)") }
            guard Validate.isID(patientID, prefix: "pat"), try await clinic.get(.patients, organization: organization, id: patientID) != nil else {
                throw APIError.badRequest("field \"patientId\": no such patient in this clinic")
            }
        default:
            throw APIError.badRequest("field \"role\" must be clinician or patient")
        }
        let user = try await grants.createClinicUser(
            organizationID: organization, username: username, passwordHash: try await PasswordHashing.hash(password), role: role,
            providerID: providerID, patientID: patientID)
        return JSONResponse.make(clinicUserJSON(user), status: .created)
    }

    func listClinicUsers(_ call: inout ManagementCall) async throws -> Response {
        JSONResponse.make(.array(try await grants.clinicUsers(organizationID: try ownClinic(call)).map(clinicUserJSON)))
    }

    func deleteClinicUser(_ call: inout ManagementCall) async throws -> Response {
        let organization = try ownClinic(call)
        let id = try call.parameter("userId")
        guard Validate.isID(id, prefix: "usr"), try await grants.deleteClinicUser(organizationID: organization, id: id) else {
            throw APIError.notFound("no user \"\(Validate.safe(id))\" in this clinic")
        }
        return Response(status: .noContent)
    }

    // MARK: EHR launches

    /// `{clientId, userId, patientId?, encounterId?, needPatientBanner?}` → a single-use launch
    /// for one of the clinic's clinicians and the app's launch URL carrying it.
    func createLaunch(_ call: inout ManagementCall) async throws -> Response {
        let organization = call.principal.subjectID
        let body = try await call.body()
        let clientID = try body.string("clientId", max: 64)!
        guard let client = try await oauth.client(clientID), client.revokedAt == nil, client.grantTypes.contains("authorization_code") else {
            throw APIError.badRequest("field \"clientId\": no SMART app client (authorization_code) of that id")
        }
        guard client.organizationID == nil || client.organizationID == organization,
              try await grants.installation(appID: client.appID, organizationID: organization) != nil
        else { throw APIError.badRequest("field \"clientId\": the client's app is not installed in this clinic") }
        let userID = try body.string("userId", max: 40)!
        guard Validate.isID(userID, prefix: "usr"), let user = try await grants.clinicUser(id: userID), user.organizationID == organization,
              user.role == "clinician"
        else { throw APIError.badRequest("field \"userId\": no clinician of this clinic") }
        var patientID = try body.string("patientId", max: 40, required: false)
        if let patientID {
            guard Validate.isID(patientID, prefix: "pat"), try await clinic.get(.patients, organization: organization, id: patientID) != nil else {
                throw APIError.badRequest("field \"patientId\": no such patient in this clinic")
            }
        }
        let encounterID = try body.string("encounterId", max: 40, required: false)
        if let encounterID {
            guard Validate.isID(encounterID, prefix: "apt"), let visit = try await clinic.get(.appointments, organization: organization, id: encounterID),
                  let visitPatient = visit["patientId"]?.stringValue
            else { throw APIError.badRequest("field \"encounterId\": no such visit (appointment) in this clinic") }
            guard patientID == nil || patientID == visitPatient else {
                throw APIError.badRequest("field \"encounterId\": the visit is another patient's")
            }
            patientID = visitPatient
        }
        let banner = try body.bool("needPatientBanner") ?? true
        let launch = try await smart.createLaunch(LaunchRecord(
            clientID: client.clientID, userID: user.id, organizationID: organization, patientID: patientID, encounterID: encounterID,
            needPatientBanner: banner))
        let launchURL = client.launchURL.flatMap { URLComponents.adding(["iss": tokens.fhirBase, "launch": launch], to: $0) }
        return JSONResponse.make(
            ["launch": .string(launch), "launchUrl": .optional(launchURL), "iss": .string(tokens.fhirBase),
             "expiresAt": .string(Self.iso8601(Clock.millis() + SMARTStore.launchLifetime))] as JSONValue,
            status: .created)
    }
}
