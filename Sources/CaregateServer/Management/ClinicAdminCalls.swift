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
        var json = installationJSON(installation)
        if let app = try await grants.app(installation.appID) {
            // What re-approval would review: the live version's scopes.
            json.set("liveVersionId", .string(app.liveVersionID))
            json.set("liveVersionScopes", .array(app.scopes.map { .string($0) }))
        }
        return JSONResponse.make(json)
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

    func auditPage(_ call: inout ManagementCall) async throws -> Response {
        let principal = call.principal
        let query = try call.query()
        var organization = query["organizationId"].flatMap(Identifier.organizationID(fromClientForm:))
        if principal.kind == .clinicAdmin {
            if let organization, organization != principal.subjectID { throw APIError.forbidden("a clinic admin sees only its own clinic's audit log") }
            organization = principal.subjectID
        }
        let decision = query["decision"]
        let cursor = query["cursor"]
        await auditWriter.flush()
        let page = try await audit.page(
            organizationID: organization, appID: try query.id("appId", prefix: "app"), decision: decision, limit: try query.limit(), cursor: cursor)
        let events: [JSONValue] = page.events.map { e in
            var event: JSONValue = ["id": .string(e.id), "at": .string(Self.iso8601(e.at)), "organizationId": .optional(e.organizationID), "appId": .optional(e.appID),
             "keyId": .optional(e.keyID), "method": .string(e.method), "route": .optional(e.route), "path": .string(e.path),
             "requiredScope": .optional(e.requiredScope), "decision": .string(e.decision), "status": .int(Int64(e.status)), "traceId": .string(e.traceID)]
            if let peer = e.peer {
                event.set("peer", .string(peer))
                event.set("count", .int(Int64(e.count)))
            }
            return event
        }
        return JSONResponse.make(["code": "success", "data": .array(events), "nextCursor": .optional(page.next)] as JSONValue)
    }
}
