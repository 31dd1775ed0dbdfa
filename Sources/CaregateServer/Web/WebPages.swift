import CaregateStore
import Foundation
import HTTPTypes
import Hummingbird
import Mustache
import Scopes

/// The page layer every human-facing page uses (the console now, the SMART sign-in and consent
/// pages next): templates, the security headers of every page, the session cookie, form
/// reading and the CSRF check.
struct WebPages: Sendable {
    let library: MustacheLibrary
    /// `Secure` on cookies when the server's public URL is https.
    let secureCookies: Bool

    static let sessionCookie = "cg_session"
    /// Before sign-in there is no session to hold a form token: the sign-in form's token is
    /// also set in this cookie, and the two must match (a double-submit check).
    static let signInCookie = "cg_signin"
    static let maxFormBytes = 64 * 1024

    init(secureCookies: Bool) throws {
        var library = MustacheLibrary()
        for (name, text) in WebTemplates.all { try library.register(text, named: name) }
        self.library = library
        self.secureCookies = secureCookies
    }

    /// No script at all, styles only from this origin, forms only to it, never in a frame.
    static let contentSecurityPolicy =
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

    static func securityHeaders(_ fields: inout HTTPFields) {
        fields[.contentSecurityPolicy] = contentSecurityPolicy
        fields[.xContentTypeOptions] = "nosniff"
        fields[HTTPField.Name("Referrer-Policy")!] = "same-origin"
        fields[HTTPField.Name("X-Frame-Options")!] = "DENY"
        fields[.cacheControl] = "no-store"
    }

    /// A page: the template rendered with `context`, HTML-escaped, with the security headers.
    func page(_ template: String, _ context: [String: Any], status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        let html = library.render(context, withTemplate: template) ?? "<!doctype html><title>Caregate</title><p>Page \(template) is missing."
        var fields = headers
        fields[.contentType] = "text/html; charset=utf-8"
        Self.securityHeaders(&fields)
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(string: html)))
    }

    /// A page that states an outcome (an error, a refusal) with a link back.
    func message(
        _ heading: String, _ text: String, status: HTTPResponse.Status, back: String = "/console", traceID: String? = nil, session: WebSession? = nil
    ) -> Response {
        var context: [String: Any] = ["heading": heading, "text": text, "back": back, "isError": status.code >= 400]
        if let traceID { context["traceId"] = traceID }
        if let session { context["session"] = Self.sessionContext(session) }
        return page("message", context, status: status)
    }

    static func sessionContext(_ session: WebSession) -> [String: Any] {
        ["role": session.principal.kind.label, "csrf": session.csrf]
    }

    func cookie(_ name: String, _ value: String, maxAge: Int) -> String {
        "\(name)=\(value); Path=/; HttpOnly; SameSite=Lax; Max-Age=\(maxAge)" + (secureCookies ? "; Secure" : "")
    }

    static func cookie(_ name: String, in request: Request) -> String? {
        for header in request.headers[values: .cookie] {
            for pair in header.split(separator: ";") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                if parts.count == 2, parts[0].trimmingCharacters(in: .whitespaces) == name { return String(parts[1]) }
            }
        }
        return nil
    }

    /// An `application/x-www-form-urlencoded` body (at most 64 KiB), every value of every field.
    static func form(_ request: inout Request) async throws -> [String: [String]] {
        guard let type = request.headers[.contentType], type.lowercased().hasPrefix("application/x-www-form-urlencoded") else {
            throw APIError(.unsupportedMediaType, "unsupported_media_type", "a form is sent as application/x-www-form-urlencoded")
        }
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: maxFormBytes)
        } catch {
            throw APIError(.contentTooLarge, "payload_too_large", "a form may be at most \(maxFormBytes) bytes")
        }
        var fields: [String: [String]] = [:]
        for (name, value) in QueryItems.parse(String(buffer: body)) { fields[name, default: []].append(value) }
        return fields
    }

    /// The posted form's token equals the session's (compared in constant time).
    static func checkCSRF(_ form: [String: [String]], expected: String) -> Bool {
        guard let sent = form["csrf"], sent.count == 1 else { return false }
        return Secrets.constantTimeEquals(sent[0], expected)
    }
}
