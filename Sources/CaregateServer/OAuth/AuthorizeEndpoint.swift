import CaregateStore
import Foundation
import HTTPTypes
import Hummingbird
import Scopes

/// `GET|POST /oauth2/authorize` and its pages (SMART App Launch 2.2, SPEC §7): the request is
/// checked, then the person signs in, picks a patient when the app needs one and they are a
/// clinician, and approves some or all of the scopes; the browser goes back to the app with a
/// code bound to the client, the redirect URI, the PKCE challenge, the person and the context.
///
/// An unknown client or a redirect URI that is not exactly a registered one gets an error page
/// and never a redirect; every other error goes back to the app with `error` and the `state`.
/// Between pages the authorization lives server-side; each form carries its id and a CSRF token,
/// and the browser's cookie must be the one that started it.
struct AuthorizeEndpoint: Sendable {
    let pages: WebPages
    let grants: GrantStore
    let oauth: OAuthStore
    let smart: SMARTStore
    let clinic: ClinicStore
    let tokens: TokenService
    let registry: SurfaceRegistry

    static let browserCookie = "cg_authorize"
    /// Failed sign-ins per username (known or not) in a window, before it is locked for a while.
    static let failureLimit = 10
    static let failureWindow: Int64 = 15 * 60 * 1000
    static let lockDuration: Int64 = 15 * 60 * 1000
    static let signInRefused = "The username or password is not right, or this account is locked for a while after too many attempts."

    /// The request as checked, kept while the pages run.
    struct Pending: Codable, Sendable {
        var clientID: String
        var redirectURI: String
        var state: String?
        var scopes: [String]
        var codeChallenge: String
        var nonce: String?
        /// From an EHR launch: who must sign in, and the context it carries.
        var launchUserID: String?
        var launchPatient: String?
        var launchEncounter: String?
        var launchBanner: Bool?
    }

    /// An error the app hears about on its redirect URI.
    struct Redirected: Error {
        var error: String
        var description: String
    }

    func register(on router: Router<CaregateContext>) {
        router.get("oauth2/authorize") { request, context in try await authorize(request, context, form: nil) }
        router.post("oauth2/authorize") { request, context in
            var request = request
            let form = try await WebPages.form(&request)
            return try await authorize(request, context, form: form)
        }
        router.post("oauth2/authorize/sign-in") { request, context in try await step(request, context, signIn) }
        router.post("oauth2/authorize/patient") { request, context in try await step(request, context, pickPatient) }
        router.post("oauth2/authorize/consent") { request, context in try await step(request, context, consent) }
    }

    // MARK: The request

    private func authorize(_ request: Request, _ context: CaregateContext, form: [String: [String]]?) async throws -> Response {
        var parameters: [String: String] = [:]
        let items: [(String, String)] = form.map { $0.flatMap { name, values in values.map { (name, $0) } } }
            ?? QueryItems.parse(request.uri.query ?? "").map { ($0.name, $0.value) }
        for (name, value) in items {
            guard parameters[name] == nil else { return errorPage("The parameter \(name) is repeated.", status: .badRequest) }
            parameters[name] = value
        }
        guard let clientID = parameters["client_id"], let client = try await oauth.client(clientID), client.revokedAt == nil else {
            return errorPage("This app is not registered with Caregate (unknown client_id), so it cannot be sent back.", status: .badRequest)
        }
        guard let redirectURI = parameters["redirect_uri"], client.redirectURIs.contains(redirectURI) else {
            return errorPage("The redirect_uri is not one this app registered (they must match exactly), so it cannot be sent back.", status: .badRequest)
        }
        let state = parameters["state"]
        do {
            let pending = try await check(parameters, client: client, redirectURI: redirectURI, state: state)
            let browser = WebPages.cookie(Self.browserCookie, in: request) ?? Secrets.randomBase62(32)
            let encoded = String(decoding: try JSONEncoder().encode(pending), as: UTF8.self)
            let (id, csrf) = try await smart.createAuthorizationRequest(request: encoded, browser: browser)
            var headers = HTTPFields()
            headers[.setCookie] = pages.cookie(Self.browserCookie, browser, maxAge: 3600).replacingOccurrences(of: "Path=/", with: "Path=/oauth2")
            return try await signInPage(id: id, csrf: csrf, pending: pending, error: nil, status: .ok, headers: headers)
        } catch let refusal as Redirected {
            return redirect(to: redirectURI, refusal, state: state)
        }
    }

    /// Every check SPEC §7 lists, in an order that names the first problem.
    private func check(_ p: [String: String], client: OAuthClientRecord, redirectURI: String, state: String?) async throws -> Pending {
        guard let responseType = p["response_type"] else { throw Redirected(error: "invalid_request", description: "response_type is required") }
        guard responseType == "code" else { throw Redirected(error: "unsupported_response_type", description: "response_type must be code") }
        guard client.grantTypes.contains("authorization_code") else {
            throw Redirected(error: "unauthorized_client", description: "this client is not registered for the authorization_code grant")
        }
        guard let state, !state.isEmpty, state.utf8.count <= 1024 else {
            throw Redirected(error: "invalid_request", description: "state is required (at most 1024 bytes)")
        }
        guard let aud = p["aud"] ?? p["resource"] else { throw Redirected(error: "invalid_request", description: "aud is required: the FHIR base URL") }
        guard aud == tokens.fhirBase || aud == tokens.fhirBase + "/" else {
            throw Redirected(error: "invalid_request", description: "aud must be this server's FHIR base URL, \(tokens.fhirBase)")
        }
        guard let method = p["code_challenge_method"], let challenge = p["code_challenge"] else {
            throw Redirected(error: "invalid_request", description: "PKCE is required: code_challenge with code_challenge_method=S256")
        }
        guard method == "S256" else { throw Redirected(error: "invalid_request", description: "code_challenge_method must be S256 (plain is not supported)") }
        guard PKCE.isValidChallenge(challenge) else {
            throw Redirected(error: "invalid_request", description: "code_challenge must be the base64url SHA-256 of the verifier (43 characters)")
        }
        guard let scopeText = p["scope"] else { throw Redirected(error: "invalid_scope", description: "scope is required") }
        guard let app = try await grants.app(client.appID), let catalog = registry.catalogs(ofApp: app.surface).first else {
            throw Redirected(error: "unauthorized_client", description: "the client's app is gone")
        }
        let scopes: [String]
        switch SMARTGrant(catalog: catalog).requested(scopeText, client: client) {
        case .success(let names): scopes = names
        case .failure(let problem): throw Redirected(error: "invalid_scope", description: problem.description)
        }
        if let nonce = p["nonce"], nonce.utf8.count > 512 { throw Redirected(error: "invalid_request", description: "nonce may be at most 512 bytes") }
        var pending = Pending(
            clientID: client.clientID, redirectURI: redirectURI, state: state, scopes: scopes, codeChallenge: challenge, nonce: p["nonce"])
        if let value = p["launch"] {
            guard let launch = try await smart.takeLaunch(value, clientID: client.clientID) else {
                throw Redirected(error: "invalid_request", description: "launch is unknown, expired, already used or issued for another client")
            }
            pending.launchUserID = launch.userID
            pending.launchPatient = launch.patientID
            pending.launchEncounter = launch.encounterID
            pending.launchBanner = launch.needPatientBanner
        }
        return pending
    }

    // MARK: The pages' steps

    typealias Step = (_ form: [String: [String]], _ id: String, _ record: AuthorizationRequestRecord, _ pending: Pending) async throws -> Response

    /// A page's form: the authorization it continues must exist, belong to this browser and carry its CSRF token.
    private func step(_ request: Request, _ context: CaregateContext, _ body: Step) async throws -> Response {
        var request = request
        let form = try await WebPages.form(&request)
        guard let id = form["request"]?.first, form["request"]?.count == 1, let record = try await smart.authorizationRequest(id: id),
              let pending = try? JSONDecoder().decode(Pending.self, from: Data(record.request.utf8))
        else { return errorPage("This sign-in has expired or was already answered. Start again from the app.", status: .badRequest) }
        guard let browser = WebPages.cookie(Self.browserCookie, in: request), Secrets.constantTimeEquals(grants.hash(browser), record.browserHash),
              WebPages.checkCSRF(form, expected: record.csrf)
        else { return errorPage("This form did not come from this browser's sign-in. Start again from the app.", status: .forbidden) }
        do {
            return try await body(form, id, record, pending)
        } catch let refusal as Redirected {
            _ = try await smart.endAuthorizationRequest(id: id)
            return redirect(to: pending.redirectURI, refusal, state: pending.state)
        }
    }

    private func signIn(_ form: [String: [String]], _ id: String, _ record: AuthorizationRequestRecord, _ pending: Pending) async throws -> Response {
        let username = form["username"]?.first ?? ""
        let password = form["password"]?.first ?? ""
        guard let user = try await authenticate(username: username, password: password) else {
            return try await signInPage(id: id, csrf: record.csrf, pending: pending, error: Self.signInRefused, status: .unauthorized)
        }
        if let launchUser = pending.launchUserID, launchUser != user.id {
            throw Redirected(error: "access_denied", description: "the EHR launch was for another user than the one who signed in")
        }
        let offer = try await grantable(pending, user: user)
        try await smart.updateAuthorizationRequest(id: id, userID: user.id)
        if needsPicker(user, pending, picked: nil, offer) {
            return try await pickerPage(id: id, csrf: record.csrf, user: user, error: nil, status: .ok)
        }
        return try await consentPage(id: id, csrf: record.csrf, pending: pending, user: user, offer: offer)
    }

    private func pickPatient(_ form: [String: [String]], _ id: String, _ record: AuthorizationRequestRecord, _ pending: Pending) async throws -> Response {
        guard let user = try await signedIn(record), user.role == "clinician" else {
            return errorPage("Sign in first. Start again from the app.", status: .badRequest)
        }
        guard let patient = form["patient"]?.first, form["patient"]?.count == 1, Validate.isID(patient, prefix: "pat"),
              try await clinic.get(.patients, organization: user.organizationID, id: patient) != nil
        else {
            return try await pickerPage(id: id, csrf: record.csrf, user: user, error: "Choose one of the patients listed.", status: .badRequest)
        }
        try await smart.updateAuthorizationRequest(id: id, patientID: patient)
        return try await consentPage(id: id, csrf: record.csrf, pending: pending, user: user, offer: try await grantable(pending, user: user))
    }

    private func consent(_ form: [String: [String]], _ id: String, _ record: AuthorizationRequestRecord, _ pending: Pending) async throws -> Response {
        guard let user = try await signedIn(record) else { return errorPage("Sign in first. Start again from the app.", status: .badRequest) }
        let offer = try await grantable(pending, user: user)
        let patient: String? = user.role == "patient" ? user.patientID : (pending.launchPatient ?? record.patientID)
        if needsPicker(user, pending, picked: record.patientID, offer) {
            return try await pickerPage(id: id, csrf: record.csrf, user: user, error: "Choose a patient first.", status: .badRequest)
        }
        guard let decision = form["decision"]?.first, form["decision"]?.count == 1, ["approve", "deny"].contains(decision) else {
            return errorPage("Answer with Allow or Deny.", status: .badRequest)
        }
        guard try await smart.endAuthorizationRequest(id: id) else {
            return errorPage("This sign-in was already answered. Start again from the app.", status: .badRequest)
        }
        guard decision == "approve" else { throw Redirected(error: "access_denied", description: "the person denied the request") }
        let ticked = Set(form["scope"] ?? [])
        let approved = offer.filter { ticked.contains($0) }
        guard !approved.isEmpty else { throw Redirected(error: "access_denied", description: "no scope was approved") }
        let banner = pending.launchBanner ?? (patient != nil)
        // The context names FHIR resources, so in FHIR ids (`pat-…`; a record id's `_` is not allowed there).
        let context = LaunchContext(
            patient: patient.map(FHIRID.fhir), encounter: pending.launchEncounter.map(FHIRID.fhir), needPatientBanner: banner,
            fhirUser: FHIRID.fhir(user.fhirUser), nonce: pending.nonce)
        let code = try await smart.createCode(
            clientID: pending.clientID, redirectURI: pending.redirectURI, codeChallenge: pending.codeChallenge, userID: user.id,
            organizationID: user.organizationID, scope: approved, context: context)
        return redirect(to: pending.redirectURI, ["code": code, "state": pending.state, "iss": tokens.issuer])
    }

    // MARK: Rules

    /// The user behind a password, with failures counted per username (known or not) and a
    /// lock after ``failureLimit``: an unknown name and a locked one are answered alike.
    private func authenticate(username: String, password: String) async throws -> ClinicUserRecord? {
        guard !username.isEmpty, username.utf8.count <= 64, !password.isEmpty, password.utf8.count <= 256 else { return nil }
        let failures = try await smart.signInFailures(username: username)
        if let locked = failures.lockedUntil, locked > Clock.millis() { return nil }
        let found = try await grants.clinicUserForSignIn(username: username)
        // An unknown username costs the same hash as a known one.
        let valid = await PasswordHashing.verify(password, against: found?.passwordHash ?? PasswordHashing.decoy)
        if let found, valid {
            try await smart.clearSignInFailures(username: username)
            return found.user
        }
        let now = try await smart.recordSignInFailure(
            username: username, window: Self.failureWindow, limit: Self.failureLimit, lockFor: Self.lockDuration)
        // Repeated failures are slowed down before the lock: 100 ms more per failure past the second, at most a second.
        if now.failures > 2 { try await Task.sleep(for: .milliseconds(min(1000, 100 * (now.failures - 2)))) }
        return nil
    }

    private func signedIn(_ record: AuthorizationRequestRecord) async throws -> ClinicUserRecord? {
        guard let id = record.userID else { return nil }
        return try await grants.clinicUser(id: id)
    }

    /// What may be offered on the consent page: requested ∩ the clinic's grants (approved and
    /// declared), without `system/` scopes (a person is signed in), and for a patient without
    /// `user/` scopes (a patient acts through `patient/` scopes on their own record).
    private func grantable(_ pending: Pending, user: ClinicUserRecord) async throws -> [String] {
        guard let client = try await oauth.client(pending.clientID), let app = try await grants.app(client.appID),
              let catalog = registry.catalogs(ofApp: app.surface).first
        else { throw Redirected(error: "unauthorized_client", description: "the client's app is gone") }
        if let bound = client.organizationID, bound != user.organizationID {
            throw Redirected(error: "access_denied", description: "this app is registered for another clinic")
        }
        guard let installation = try await grants.installation(appID: app.id, organizationID: user.organizationID) else {
            throw Redirected(error: "access_denied", description: "this app is not installed at the signed-in person's clinic")
        }
        let declared = try await CredentialResolver.declaredInEffect(app, grants: grants, registry: registry)
        let allowed = SMARTGrant(catalog: catalog).allowed(pending.scopes, approved: installation.approvedScopes, declared: declared)
            .filter { name in
                guard let context = (try? Scope(parsing: name))?.resourceScope?.context else { return true }
                return context == .patient || (context == .user && user.role == "clinician")
            }
        guard !allowed.isEmpty else {
            throw Redirected(error: "invalid_scope", description: "none of the requested scopes is granted to this app for this person at their clinic")
        }
        return allowed
    }

    /// A clinician picks a patient when `launch/patient` or a `patient/` scope needs one and
    /// neither the EHR launch nor an earlier pick gave it (a patient user is their own patient).
    private func needsPicker(_ user: ClinicUserRecord, _ pending: Pending, picked: String?, _ offer: [String]) -> Bool {
        guard user.role == "clinician", pending.launchPatient == nil, picked == nil else { return false }
        return offer.contains { $0 == "launch/patient" || (try? Scope(parsing: $0))?.resourceScope?.context == .patient }
    }

    // MARK: Answers

    /// `redirect_uri` with the answer's parameters added (a query it already has is kept).
    private func redirect(to uri: String, _ parameters: KeyValuePairs<String, String?>) -> Response {
        var headers: HTTPFields = [.location: URLComponents.adding(parameters, to: uri) ?? uri]
        WebPages.securityHeaders(&headers)
        return Response(status: .found, headers: headers)
    }

    /// A refusal told to the app on its redirect URI, with the request's `state`.
    private func redirect(to uri: String, _ refusal: Redirected, state: String?) -> Response {
        redirect(to: uri, ["error": refusal.error, "error_description": refusal.description, "state": state])
    }

    private func errorPage(_ text: String, status: HTTPResponse.Status) -> Response {
        pages.page("authorize-error", ["text": text], status: status)
    }

    /// The pages post to this server and then redirect to the app: the CSP's form-action must allow both.
    private func pageHeaders(_ pending: Pending?, _ extra: HTTPFields = [:]) -> HTTPFields {
        var headers = extra
        if let pending, let url = URL(string: pending.redirectURI), let scheme = url.scheme, let host = url.host {
            let origin = "\(scheme)://\(host.contains(":") ? "[\(host)]" : host)" + (url.port.map { ":\($0)" } ?? "")
            headers[.contentSecurityPolicy] = WebPages.contentSecurityPolicy.replacingOccurrences(of: "form-action 'self'", with: "form-action 'self' \(origin)")
        }
        return headers
    }

    private func appName(_ pending: Pending) async throws -> String {
        guard let client = try await oauth.client(pending.clientID), let app = try await grants.app(client.appID) else { return "An app" }
        return app.name
    }

    private func signInPage(
        id: String, csrf: String, pending: Pending, error: String?, status: HTTPResponse.Status, headers: HTTPFields = [:]
    ) async throws -> Response {
        var context: [String: Any] = ["request": id, "csrf": csrf, "app": try await appName(pending)]
        if let error { context["error"] = error }
        return pages.page("authorize-sign-in", context, status: status, headers: pageHeaders(pending, headers))
    }

    private func pickerPage(id: String, csrf: String, user: ClinicUserRecord, error: String?, status: HTTPResponse.Status) async throws -> Response {
        let page = try await clinic.list(.patients, organization: user.organizationID, filters: [], after: nil, limit: 200)
        let patients: [[String: Any]] = page.items.map { item in
            let name = [item["firstName"]?.stringValue, item["lastName"]?.stringValue].compactMap { $0 }.joined(separator: " ")
            return ["id": item["id"]?.stringValue ?? "", "name": name, "birthDate": item["dateOfBirth"]?.stringValue ?? ""]
        }
        var context: [String: Any] = ["request": id, "csrf": csrf, "patients": patients, "more": page.nextCursor != nil]
        if let error { context["error"] = error }
        return pages.page("authorize-patient", context, status: status)
    }

    private func consentPage(id: String, csrf: String, pending: Pending, user: ClinicUserRecord, offer: [String]) async throws -> Response {
        let scopes: [[String: Any]] = offer.map { ["name": $0, "description": Self.describe($0)] }
        let context: [String: Any] = ["request": id, "csrf": csrf, "app": try await appName(pending), "scopes": scopes, "who": user.username]
        return pages.page("authorize-consent", context, headers: pageHeaders(pending))
    }

    /// A plain-language line per scope for the consent page.
    static func describe(_ name: String) -> String {
        switch name {
        case "openid": return "Confirm who you are to the app."
        case "fhirUser": return "Tell the app which person record is yours."
        case "launch", "launch-ehr": return "Open with the patient and visit currently in view."
        case "launch/patient": return "Know which patient is in context."
        case "launch/encounter": return "Know which visit is in context."
        case "offline_access": return "Keep access after you sign out, until you revoke it."
        case "online_access": return "Keep access for the working day."
        default: break
        }
        guard let scope = try? Scope(parsing: name), let r = scope.resourceScope else { return name }
        let whose = switch r.context {
        case .patient: "the patient in context"
        case .user: "any patient you can see"
        case .system: "every patient of the clinic"
        }
        let what = r.resource.map { "\($0) records" } ?? "all kinds of records (including kinds added later)"
        var actions: [String] = []
        let p = r.permissions
        if p.contains(.create) { actions.append("create") }
        if p.contains(.read) { actions.append("read") }
        if p.contains(.update) { actions.append("update") }
        if p.contains(.delete) { actions.append("delete") }
        if p.contains(.search) { actions.append("search") }
        let constraint = r.constraints.isEmpty ? "" : " (only those matching " + r.constraints.map { "\($0.name)=\($0.value)" }.joined(separator: ", ") + ")"
        return (actions.joined(separator: ", ").capitalizedFirst) + " \(what) of \(whose)\(constraint)."
    }
}

extension String {
    fileprivate var capitalizedFirst: String { prefix(1).uppercased() + dropFirst() }
}
