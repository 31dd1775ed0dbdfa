import CaregateStore
import Foundation
import HTTPTypes
import Hummingbird
import Scopes

/// The pages: `/scopes` (public), `/console` (signed in with a management token) and the
/// stylesheet. Every page is server-rendered and works without script; every form carries the
/// session's CSRF token; every action is a management operation (``ManagementRoutes/perform``).
struct ConsoleRoutes: Sendable {
    let pages: WebPages
    let grants: GrantStore
    let management: ManagementRoutes
    let scopeReference: ScopeReferencePage
    let registry: SurfaceRegistry

    func register(on router: Router<CaregateContext>) {
        router.get("assets/caregate.css") { _, _ in
            var fields: HTTPFields = [.contentType: "text/css; charset=utf-8", .cacheControl: "public, max-age=3600"]
            fields[.xContentTypeOptions] = "nosniff"
            return Response(status: .ok, headers: fields, body: .init(byteBuffer: ByteBuffer(string: WebTemplates.stylesheet)))
        }
        router.get("scopes") { request, _ in
            guard let context = scopeReference.context(query: request.uri.query) else {
                return pages.message("No such catalog", "There is no catalog with that surface.", status: .notFound, back: "/scopes")
            }
            return pages.page("scopes", context)
        }
        router.get("console") { request, context in try await home(request, context) }
        router.post("console/sign-in") { request, _ in try await signIn(request) }
        router.post("console/sign-out") { request, _ in
            try await withSession(request) { session, _, cookie in
                try await grants.endWebSession(cookie: cookie)
                return redirect("/console", cookies: [pages.cookie(WebPages.sessionCookie, "", maxAge: 0)])
            }
        }
        router.get("console/apps/:appId") { request, context in
            try await withSession(request, form: false) { session, _, _ in
                try await appPage(try context.parameters.require("appId"), session, context)
            }
        }
        router.post("console/apps/:appId/keys") { request, context in
            try await withSession(request) { session, form, _ in
                let appID = try context.parameters.require("appId")
                var body: JSONValue = ["name": .string(form["name"]?.first ?? ""), "environment": .string(form["environment"]?.first ?? "prd")]
                if let scopes = form["scopes"], !scopes.isEmpty { body.set("scopes", .array(scopes.map { .string($0) })) }
                let created = try await management.perform(
                    .post, "/manage/apps/{appId}/keys", parameters: ["appId": appID], body: body, principal: session.principal, context: context)
                return keyCreatedPage(created.json, session: session, appID: appID)
            }
        }
        router.get("console/installations/:id") { request, context in
            try await withSession(request, form: false) { session, _, _ in
                try await installationPage(try context.parameters.require("id"), session, context)
            }
        }
        router.post("console/installations/:id/approve") { request, context in
            try await withSession(request) { session, form, _ in
                let id = try context.parameters.require("id")
                _ = try await management.perform(
                    .post, "/manage/installations/{id}/approve", parameters: ["id": id], body: ["scopes": .array((form["scopes"] ?? []).map { .string($0) })],
                    principal: session.principal, context: context)
                return redirect("/console/installations/\(id)")
            }
        }
        router.post("console/installations/:id/uninstall") { request, context in
            try await withSession(request) { session, _, _ in
                _ = try await management.perform(
                    .delete, "/manage/installations/{id}", parameters: ["id": try context.parameters.require("id")], principal: session.principal,
                    context: context)
                return redirect("/console")
            }
        }
        router.get("console/audit") { request, context in
            try await withSession(request, form: false) { session, _, _ in try await auditPage(request, session, context) }
        }
        router.post("console/signing-keys/rotate") { request, context in
            try await withSession(request) { session, _, _ in
                _ = try await management.perform(.post, "/manage/signing-keys/rotate", principal: session.principal, context: context)
                return redirect("/console")
            }
        }
        router.post("console/keys/:keyId/narrow") { request, context in
            try await withSession(request) { session, form, _ in
                let keyID = try context.parameters.require("keyId")
                guard let appID = form["appId"]?.first, Validate.isID(appID, prefix: "app") else { throw APIError.badRequest("the form names no app") }
                let report = try await management.perform(
                    .get, "/manage/apps/{appId}/usage", parameters: ["appId": appID], principal: session.principal, context: context
                ).json as? [String: Any] ?? [:]
                let used = (report["data"] as? [[String: Any]] ?? []).first { $0["id"] as? String == keyID }?["used"] as? [String] ?? []
                guard !used.isEmpty else { throw APIError.conflict("this key used no scope in the window: revoke it rather than narrow it") }
                let created = try await management.perform(
                    .post, "/manage/keys/{keyId}/rotate", parameters: ["keyId": keyID], body: ["scopes": .array(used.map { .string($0) })],
                    principal: session.principal, context: context)
                return keyCreatedPage(created.json, session: session, appID: appID)
            }
        }
        router.get("console/reviews") { request, context in
            try await withSession(request, form: false) { session, _, _ in try await reviewsPage(session, context) }
        }
        router.post("console/reviews/:id/approve") { request, context in
            try await withSession(request) { session, _, _ in
                _ = try await management.perform(
                    .post, "/manage/scope-reviews/{id}/approve", parameters: ["id": try context.parameters.require("id")], principal: session.principal,
                    context: context)
                return redirect("/console/reviews")
            }
        }
        router.post("console/reviews/:id/refuse") { request, context in
            try await withSession(request) { session, form, _ in
                _ = try await management.perform(
                    .post, "/manage/scope-reviews/{id}/refuse", parameters: ["id": try context.parameters.require("id")],
                    body: ["reason": .string(form["reason"]?.first ?? "")], principal: session.principal, context: context)
                return redirect("/console/reviews")
            }
        }
        router.post("console/keys/:keyId/rotate") { request, context in
            try await withSession(request) { session, form, _ in
                let appID = form["appId"]?.first.flatMap { Validate.isID($0, prefix: "app") ? $0 : nil } ?? ""
                let created = try await management.perform(
                    .post, "/manage/keys/{keyId}/rotate", parameters: ["keyId": try context.parameters.require("keyId")], body: ["graceSeconds": 3_600],
                    principal: session.principal, context: context)
                return keyCreatedPage(created.json, session: session, appID: appID)
            }
        }
        router.post("console/apps/:appId/oauth-clients") { request, context in
            try await withSession(request) { session, form, _ in
                let appID = try context.parameters.require("appId")
                let body: JSONValue = [
                    "scopes": .array((form["scopes"] ?? []).map { .string($0) }), "grantTypes": ["client_credentials"],
                    "credentialType": .string(form["credentialType"]?.first ?? "oauth2"),
                ]
                let created = try await management.perform(
                    .post, "/manage/apps/{appId}/oauth-clients", parameters: ["appId": appID], body: body, principal: session.principal, context: context)
                let client = created.json as? [String: Any] ?? [:]
                return pages.page("client-created", [
                    "session": WebPages.sessionContext(session), "clientId": client["clientId"] as? String ?? "",
                    "clientSecret": client["clientSecret"] as? String ?? "", "appId": appID,
                ], status: .created)
            }
        }
        router.post("console/users") { request, context in
            try await withSession(request) { session, form, _ in
                var body: JSONValue = [
                    "username": .string(form["username"]?.first ?? ""), "password": .string(form["password"]?.first ?? ""),
                    "role": .string(form["role"]?.first ?? ""),
                ]
                // Only the link the role takes: the form carries both selects.
                let link = form["role"]?.first == "patient" ? "patientId" : "providerId"
                if let value = form[link]?.first, !value.isEmpty { body.set(link, .string(value)) }
                _ = try await management.perform(
                    .post, "/manage/organizations/{orgId}/users", parameters: ["orgId": session.principal.subjectID], body: body,
                    principal: session.principal, context: context)
                return redirect("/console#users")
            }
        }
        router.post("console/users/:userId/delete") { request, context in
            try await withSession(request) { session, _, _ in
                _ = try await management.perform(
                    .delete, "/manage/organizations/{orgId}/users/{userId}",
                    parameters: ["orgId": session.principal.subjectID, "userId": try context.parameters.require("userId")], principal: session.principal,
                    context: context)
                return redirect("/console#users")
            }
        }
        router.post("console/keys/:keyId/revoke") { request, context in
            try await withSession(request) { session, form, _ in
                _ = try await management.perform(
                    .delete, "/manage/keys/{keyId}", parameters: ["keyId": try context.parameters.require("keyId")], principal: session.principal,
                    context: context)
                let appID = form["appId"]?.first.flatMap { Validate.isID($0, prefix: "app") ? $0 : nil }
                return redirect(appID.map { "/console/apps/\($0)#keys" } ?? "/console")
            }
        }
    }

    /// The page that shows a new key once (after creating, rotating or narrowing one).
    func keyCreatedPage(_ json: Any?, session: WebSession, appID: String) -> Response {
        let key = json as? [String: Any] ?? [:]
        return pages.page("key-created", [
            "session": WebPages.sessionContext(session), "key": key["key"] as? String ?? "", "name": key["name"] as? String ?? "", "appId": appID,
        ], status: .created)
    }

    func redirect(_ location: String, cookies: [String] = []) -> Response {
        var fields: HTTPFields = [.location: location]
        for cookie in cookies { fields.append(HTTPField(name: .setCookie, value: cookie)) }
        WebPages.securityHeaders(&fields)
        return Response(status: .seeOther, headers: fields)
    }

    /// Runs `body` for a signed-in person; a POST must carry the session's CSRF token. Without a
    /// session: the sign-in page (403 for a POST). A refused management operation is shown as a
    /// page with its status and message.
    func withSession(
        _ request: Request, form isForm: Bool = true, _ body: (WebSession, [String: [String]], String) async throws -> Response
    ) async throws -> Response {
        guard let cookie = WebPages.cookie(WebPages.sessionCookie, in: request), let session = try await grants.webSession(cookie: cookie) else {
            if request.method == .post {
                return pages.message("Not signed in", "Your session has ended. Sign in again.", status: .forbidden)
            }
            return signInPage()
        }
        do {
            var form: [String: [String]] = [:]
            if request.method == .post {
                var request = request
                form = try await WebPages.form(&request)
                guard WebPages.checkCSRF(form, expected: session.csrf) else {
                    return pages.message(
                        "Form refused", "This form was not sent from this session's page (its CSRF token is missing or wrong); nothing was changed.",
                        status: .forbidden, session: session)
                }
            }
            return try await body(session, form, cookie)
        } catch let error as APIError {
            return pages.message(error.status.code == 404 ? "Not found" : "Refused", error.message, status: error.status, session: session)
        } catch let error as StoreError {
            // The store's refusals (a taken name, a key rotated meanwhile) as the API words them, on a page.
            let status: HTTPResponse.Status = switch error {
            case .conflict: .conflict
            case .invalid: .badRequest
            case .notFound: .notFound
            }
            return pages.message(status == .notFound ? "Not found" : "Refused", "\(error)", status: status, session: session)
        }
    }

    func signInPage(error: String? = nil, status: HTTPResponse.Status = .ok) -> Response {
        let token = Secrets.randomHex(bytes: 24)
        var context: [String: Any] = ["csrf": token]
        if let error { context["error"] = error }
        var fields: HTTPFields = [:]
        fields.append(HTTPField(name: .setCookie, value: pages.cookie(WebPages.signInCookie, token, maxAge: 3_600)))
        return pages.page("sign-in", context, status: status, headers: fields)
    }

    func signIn(_ request: Request) async throws -> Response {
        var request = request
        let form = try await WebPages.form(&request)
        guard let expected = WebPages.cookie(WebPages.signInCookie, in: request), WebPages.checkCSRF(form, expected: expected) else {
            return pages.message("Form refused", "This sign-in form was not sent from this site's page; nothing was changed.", status: .forbidden)
        }
        guard let token = form["token"]?.first, !token.isEmpty, let (cookie, _) = try await grants.startWebSession(token: token) else {
            return signInPage(error: "That management token is not valid.", status: .unauthorized)
        }
        return redirect("/console", cookies: [
            pages.cookie(WebPages.sessionCookie, cookie, maxAge: Int(GrantStore.webSessionLifetime / 1_000)),
            pages.cookie(WebPages.signInCookie, "", maxAge: 0),
        ])
    }

    func home(_ request: Request, _ context: CaregateContext) async throws -> Response {
        try await withSession(request, form: false) { session, _, _ in
            switch session.principal.kind {
            case .developer:
                let apps = try await management.perform(.get, "/manage/apps", principal: session.principal, context: context).json as? [[String: Any]] ?? []
                return pages.page("developer", [
                    "session": WebPages.sessionContext(session), "hasApps": !apps.isEmpty,
                    "apps": apps.map { app in app.merging(["scopeCount": (app["scopes"] as? [Any])?.count ?? 0]) { a, _ in a } },
                ])
            case .clinicAdmin:
                let installations = try await management.perform(.get, "/manage/installations", principal: session.principal, context: context)
                    .json as? [[String: Any]] ?? []
                let organization = session.principal.subjectID
                let users = try await management.perform(
                    .get, "/manage/organizations/{orgId}/users", parameters: ["orgId": organization], principal: session.principal, context: context
                ).json as? [[String: Any]] ?? []
                func options(_ collection: ClinicCollection) async throws -> [[String: Any]] {
                    try await management.clinic.list(collection, organization: organization, filters: [], after: nil, limit: 200).items.compactMap { item in
                        guard let id = item["id"]?.stringValue else { return nil }
                        let name = [item["firstName"]?.stringValue, item["lastName"]?.stringValue].compactMap { $0 }.joined(separator: " ")
                        return ["id": id, "label": name.isEmpty ? id : "\(name) (\(id))"]
                    }
                }
                return pages.page("clinic", [
                    "session": WebPages.sessionContext(session), "csrf": session.csrf, "users": users, "hasUsers": !users.isEmpty,
                    "providers": try await options(.providers), "patients": try await options(.patients),
                    "hasInstallations": !installations.isEmpty,
                    "installations": installations.map { installation in
                        installation.merging([
                            "approvedCount": (installation["approvedScopes"] as? [Any])?.count ?? 0,
                            "needsReview": installation["approvedVersionId"] as? String != installation["liveVersionId"] as? String,
                        ]) { _, new in new }
                    },
                ])
            case .operator:
                let keys = try await management.perform(.get, "/manage/signing-keys", principal: session.principal, context: context)
                    .json as? [String: Any] ?? [:]
                let pending = try await grants.reviewCount(status: "pending")
                return pages.page("operator", [
                    "session": WebPages.sessionContext(session), "csrf": session.csrf, "pendingReviews": pending,
                    "signingKeys": (keys["data"] as? [[String: Any]] ?? []).map { $0.merging(["current": $0["signing"] as? Bool ?? false]) { _, new in new } },
                ])
            }
        }
    }

    func installationPage(_ id: String, _ session: WebSession, _ context: CaregateContext) async throws -> Response {
        let installation = try await management.perform(.get, "/manage/installations/{id}", parameters: ["id": id], principal: session.principal, context: context)
            .json as? [String: Any] ?? [:]
        let approved = installation["approvedScopes"] as? [String] ?? []
        let live = installation["liveVersionScopes"] as? [String] ?? approved
        let catalogs = registry.catalogs(ofApp: installation["appSurface"] as? String ?? "")
        let labels = Dictionary(uniqueKeysWithValues: ScopeReferencePage.credentialTypeLabels)
        let needsReview = installation["approvedVersionId"] as? String != installation["liveVersionId"] as? String
        // The difference between what the approved version asked for and what the live one asks for.
        let asked = installation["approvedVersionScopes"] as? [String] ?? approved
        let rows = live.map { name -> [String: Any] in
            let info = catalogs.lazy.compactMap { $0.scopes.first { $0.name == name } }.first
            return [
                "name": name, "approved": approved.contains(name), "isNew": needsReview && !asked.contains(name),
                "description": info?.description ?? "", "credentialTypes": info?.credentialTypes.map { labels[$0] ?? $0.rawValue } ?? [],
            ]
        }
        let added = needsReview ? live.filter { !asked.contains($0) } : []
        let removed = needsReview ? asked.filter { !live.contains($0) } : []
        return pages.page("installation", [
            "session": WebPages.sessionContext(session), "csrf": session.csrf, "id": id,
            "appName": installation["appName"] as? String ?? "", "appSurface": installation["appSurface"] as? String ?? "",
            "needsReview": needsReview, "rows": rows, "added": added, "hasAdded": !added.isEmpty, "removed": removed, "hasRemoved": !removed.isEmpty,
        ])
    }

    func reviewsPage(_ session: WebSession, _ context: CaregateContext) async throws -> Response {
        let pending = try await management.perform(.get, "/manage/scope-reviews", principal: session.principal, context: context)
            .json as? [[String: Any]] ?? []
        let labels = Dictionary(uniqueKeysWithValues: ScopeReferencePage.credentialTypeLabels)
        let all = registry.catalogs.flatMap(\.scopes)
        let rows = pending.map { review -> [String: Any] in
            let info = all.first { $0.name == review["scope"] as? String }
            return review.merging([
                "description": info?.description ?? "", "credentialTypes": info?.credentialTypes.map { labels[$0] ?? $0.rawValue } ?? [],
            ]) { _, new in new }
        }
        return pages.page("reviews", ["session": WebPages.sessionContext(session), "csrf": session.csrf, "reviews": rows, "hasReviews": !rows.isEmpty])
    }

    /// The audit log through `GET /manage/audit`: its filters as a GET form, and paging.
    func auditPage(_ request: Request, _ session: WebSession, _ context: CaregateContext) async throws -> Response {
        var filters: [String: String] = [:]
        var query: [(String, String)] = []
        for (name, value) in QueryItems.parse(request.uri.query ?? "") where !value.isEmpty {
            guard ["organizationId", "appId", "decision", "traceId", "since", "until", "cursor"].contains(name), filters[name] == nil else { continue }
            if name == "organizationId" && session.principal.kind != .operator { continue }
            filters[name] = value
            query.append((name, value))
        }
        let encoded = query.map { "\($0.0)=\(Self.formEncode($0.1))" }.joined(separator: "&")
        let page = try await management.perform(
            .get, "/manage/audit", query: encoded.isEmpty ? nil : encoded, principal: session.principal, context: context
        ).json as? [String: Any] ?? [:]
        let events = page["data"] as? [[String: Any]] ?? []
        var next: String?
        if let cursor = page["nextCursor"] as? String {
            next = "/console/audit?" + (query.filter { $0.0 != "cursor" } + [("cursor", cursor)]).map { "\($0.0)=\(Self.formEncode($0.1))" }.joined(separator: "&")
        }
        var context: [String: Any] = [
            "session": WebPages.sessionContext(session), "isOperator": session.principal.kind == .operator, "filters": filters,
            "allowedSelected": filters["decision"] == "allowed", "deniedSelected": filters["decision"] == "denied",
            "events": events, "hasEvents": !events.isEmpty,
        ]
        if let next { context["next"] = next }
        return pages.page("audit", context)
    }

    static func formEncode(_ value: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return value.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
    }

    func appPage(_ appID: String, _ session: WebSession, _ context: CaregateContext) async throws -> Response {
        let app = try await management.perform(.get, "/manage/apps/{appId}", parameters: ["appId": appID], principal: session.principal, context: context)
            .json as? [String: Any] ?? [:]
        let keys = try await management.perform(.get, "/manage/apps/{appId}/keys", parameters: ["appId": appID], principal: session.principal, context: context)
            .json as? [[String: Any]] ?? []

        let reviews = try await management.perform(
            .get, "/manage/apps/{appId}/scope-reviews", parameters: ["appId": appID], principal: session.principal, context: context
        ).json as? [[String: Any]] ?? []
        let report = try await management.perform(.get, "/manage/apps/{appId}/usage", parameters: ["appId": appID], principal: session.principal, context: context)
            .json as? [String: Any] ?? [:]
        let entries = report["data"] as? [[String: Any]] ?? []
        let lastUsed = Dictionary(entries.compactMap { e in (e["id"] as? String).map { ($0, e["lastUsedAt"] as? String ?? "not in the last \(report["days"] as? Int ?? 30) days") } },
                                  uniquingKeysWith: { a, _ in a })
        let rows = keys.map { key -> [String: Any] in
            let revoked = key["revoked"] as? Bool ?? false
            let replaced = key["replacedBy"] as? String != nil
            let scopes = key["scopes"] as? [String]
            return key.merging([
                "active": !revoked, "rotatable": !revoked && !replaced,
                "state": revoked ? "revoked" : replaced ? "replaced (works until \(key["expiresAt"] as? String ?? "the grace ends"))" : "active",
                "scopeText": scopes.map { $0.joined(separator: " ") } ?? "the clinic's approved scopes",
                "lastUsed": lastUsed[key["id"] as? String ?? ""] ?? "—",
            ]) { _, new in new }
        }
        let clients = (try await management.perform(
            .get, "/manage/apps/{appId}/oauth-clients", parameters: ["appId": appID], principal: session.principal, context: context
        ).json as? [[String: Any]] ?? []).map { $0.merging(["scopeText": ($0["scopes"] as? [String] ?? []).joined(separator: " ")]) { _, new in new } }
        let replaced = Set(keys.compactMap { $0["replacedBy"] as? String == nil ? nil : $0["id"] as? String })
        let names = Dictionary(keys.compactMap { key in (key["id"] as? String).map { ($0, key["name"] as? String ?? "") } }, uniquingKeysWith: { a, _ in a })
        let usage = entries.map { entry -> [String: Any] in
            let id = entry["id"] as? String ?? ""
            let isKey = entry["credential"] as? String == "api_key"
            func text(_ field: String) -> String {
                let scopes = entry[field] as? [String] ?? []
                return scopes.isEmpty ? "—" : scopes.joined(separator: " ")
            }
            return [
                "id": id, "label": isKey ? "Key “\(names[id] ?? id)”" : "OAuth client \(id)", "heldText": text("held"), "usedText": text("used"),
                "droppableText": text("droppable"),
                "canNarrow": isKey && !replaced.contains(id) && !(entry["used"] as? [Any] ?? []).isEmpty && !(entry["droppable"] as? [Any] ?? []).isEmpty,
            ]
        }
        return pages.page("app", [
            "session": WebPages.sessionContext(session), "csrf": session.csrf, "app": app, "surface": app["surface"] as? String ?? "",
            "keys": rows, "hasKeys": !rows.isEmpty, "clients": clients, "hasClients": !clients.isEmpty, "usage": usage, "reviews": reviews, "hasReviews": !reviews.isEmpty, "usageDays": report["days"] as? Int ?? 30, "appId": appID,
        ])
    }
}
