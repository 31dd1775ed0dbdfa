import CaregateStore
import Foundation
import Hummingbird

/// Note writes: images (binary or multipart), SOAP fields and impressions. Each needs
/// `providerId` (the provider acting in the EHR), which must exist in the clinic.
enum NoteWrites {
    static let maxImageBytes = 5 * 1024 * 1024
    static let imageTypes: [String: [UInt8]] = [
        "image/png": [0x89, 0x50, 0x4E, 0x47], "image/jpeg": [0xFF, 0xD8, 0xFF], "image/gif": Array("GIF8".utf8),
        "image/webp": Array("RIFF".utf8),
    ]

    /// The acting provider (`providerId`, required and well-formed: ``ClinicCall/query()``), which must exist in the clinic.
    static func provider(_ call: ClinicCall) async throws -> String {
        let provider = try call.query()["providerId"]!
        guard try await call.store.exists(.providers, organization: call.organization, id: provider) else {
            throw APIError.badRequest("providerId: no provider \"\(provider)\" in this organization")
        }
        return provider
    }

    static func note(_ call: ClinicCall) async throws -> String {
        let note = try call.id("noteId")
        guard try await call.store.exists(.notes, organization: call.organization, id: note) else {
            throw APIError.notFound("no note \"\(note)\" in this organization")
        }
        return note
    }

    static func uploadImage(_ call: inout ClinicCall) async throws -> Response {
        let noteID = try await note(call)
        let providerID = try await provider(call)
        let contentTypeHeader = call.request.headers[.contentType] ?? ""
        let contentType = contentTypeHeader.lowercased()
        let body: ByteBuffer
        do {
            body = try await call.request.collectBody(upTo: maxImageBytes + 64 * 1024)
        } catch {
            throw APIError(.contentTooLarge, "payload_too_large", "an image may be at most \(maxImageBytes) bytes")
        }
        var bytes = Array(buffer: body)
        var type = contentType.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        if type == "multipart/form-data" {
            (type, bytes) = try Multipart.filePart(bytes, contentType: contentTypeHeader)  // the boundary is case-sensitive
        }
        guard let magic = imageTypes[type] else {
            throw APIError(.unsupportedMediaType, "unsupported_media_type", "the image must be image/png, image/jpeg, image/gif or image/webp (binary body or multipart field \"file\")")
        }
        guard !bytes.isEmpty else { throw APIError.badRequest("the image is empty") }
        guard bytes.count <= maxImageBytes else { throw APIError(.contentTooLarge, "payload_too_large", "an image may be at most \(maxImageBytes) bytes") }
        guard bytes.starts(with: magic) else { throw APIError.badRequest("the body is not a \(type) image") }
        let image = try await call.store.addNoteImage(organization: call.organization, noteID: noteID, providerID: providerID, contentType: type, data: bytes)
        return Success.response(image, status: .created)
    }

    static func deleteImage(_ call: inout ClinicCall) async throws -> Response {
        let noteID = try await note(call)
        _ = try await provider(call)
        let imageID = try call.id("imageId")
        guard try await call.store.deleteNoteImage(organization: call.organization, noteID: noteID, imageID: imageID) else {
            throw APIError.notFound("no image \"\(imageID)\" on note \"\(noteID)\"")
        }
        return Response(status: .noContent)
    }

    static let soapFields = ["subjective", "objective", "assessment", "plan"]

    static func editSOAP(_ call: inout ClinicCall) async throws -> Response {
        let noteID = try await note(call)
        _ = try await provider(call)
        let body = try await call.body()
        var fields: [(column: String, value: String)] = []
        for name in soapFields {
            if let value = try body.string(name, max: 20_000, required: false) { fields.append((name, value)) }
        }
        guard !fields.isEmpty else { throw APIError.badRequest("give at least one of \(soapFields.joined(separator: ", "))") }
        _ = try await call.store.updateSOAP(organization: call.organization, noteID: noteID, fields: fields)
        let updated = try await call.store.withSOAP([try await call.store.get(.notes, organization: call.organization, id: noteID)!], organization: call.organization)
        return Success.response(updated[0])
    }

    static func editImpression(_ call: inout ClinicCall) async throws -> Response {
        let noteID = try await note(call)
        _ = try await provider(call)
        let impressionID = try call.id("impressionId")
        let body = try await call.body()
        let code = try body.string("code", max: 20, required: false)
        let description = try body.string("description", max: 2_000, required: false)
        guard code != nil || description != nil else { throw APIError.badRequest("give code or description") }
        if let code, code.wholeMatch(of: /[A-Z][0-9A-Z]{1,2}(\.[0-9A-Z]{1,4})?/) == nil {
            throw APIError.badRequest("code must be an ICD-10 code such as E11.9")
        }
        guard let impression = try await call.store.updateImpression(
            organization: call.organization, noteID: noteID, impressionID: impressionID, code: code, description: description)
        else { throw APIError.notFound("no impression \"\(impressionID)\" on note \"\(noteID)\"") }
        return Success.response(impression)
    }
}

/// Tasks, email, products and inventory changes.
enum OtherWrites {
    static func optionalID(_ body: JSONInput, _ name: String, prefix: String, collection: ClinicCollection, _ call: ClinicCall) async throws -> String? {
        guard let id = try body.string(name, max: 64, required: false) else { return nil }
        guard Validate.isID(id, prefix: prefix) else { throw APIError.badRequest("field \"\(name)\" must be an id of the form \(prefix)_<32 hex digits>") }
        guard try await call.store.exists(collection, organization: call.organization, id: id) else {
            throw APIError.badRequest("field \"\(name)\": no \(collection.name) record \"\(id)\" in this organization")
        }
        return id
    }

    static func createTask(_ call: inout ClinicCall) async throws -> Response {
        _ = try call.query()
        let body = try await call.body()
        let title = try body.string("title", max: 200)!
        let description = try body.string("description", max: 5_000, required: false) ?? ""
        let dueDate = try body.string("dueDate", max: 10, required: false)
        if let dueDate, !Validate.isDate(dueDate) { throw APIError.badRequest("field \"dueDate\" must be a date, YYYY-MM-DD") }
        let task = ClinicStore.NewTask(
            title: title, description: description,
            noteID: try await optionalID(body, "noteId", prefix: "not", collection: .notes, call),
            providerID: try await optionalID(body, "providerId", prefix: "prv", collection: .providers, call),
            patientID: try await optionalID(body, "patientId", prefix: "pat", collection: .patients, call), dueDate: dueDate)
        return Success.response(try await call.store.createTask(organization: call.organization, task), status: .created)
    }

    static func updateTask(_ call: inout ClinicCall) async throws -> Response {
        _ = try call.query()
        let id = try call.id("id")
        let body = try await call.body()
        let status = try body.string("status", max: 20)!
        guard status == "completed" || status == "cancelled" else {
            throw APIError.badRequest("field \"status\" must be completed or cancelled")
        }
        switch try await call.store.transitionTask(organization: call.organization, id: id, to: status) {
        case .updated(let task): return Success.response(task)
        case .notFound: throw APIError.notFound("no task \"\(id)\" in this organization")
        case .invalid(let from): throw APIError.conflict("a \(from) task cannot become \(status); only open tasks can be completed or cancelled")
        }
    }

    static func sendEmail(_ call: inout ClinicCall) async throws -> Response {
        _ = try call.query()
        let body = try await call.body()
        let to = try body.string("to", max: 254)!
        guard Validate.isEmail(to) else { throw APIError.badRequest("field \"to\" must be an email address") }
        let subject = try body.string("subject", max: 300)!
        let text = try body.string("body", max: 100_000)!
        let patient = try await optionalID(body, "patientId", prefix: "pat", collection: .patients, call)
        let email = try await call.store.sendEmail(
            organization: call.organization, from: "no-reply@\(call.credential.appSlug).caregate.invalid", to: to, subject: subject, body: text, patientID: patient)
        return Success.response(email, status: .accepted)
    }

    static let productFields: Set<String> = ["name", "sku", "unit", "priceCents", "active"]

    static func createProduct(_ call: inout ClinicCall) async throws -> Response {
        _ = try call.query()
        let body = try await call.body()
        let product = try await call.store.createProduct(
            organization: call.organization, name: try body.string("name", max: 200)!, sku: try sku(body, required: true)!,
            unit: try body.string("unit", max: 20, required: false) ?? "each", priceCents: try body.int("priceCents", range: 0...100_000_000)!,
            active: try body.bool("active") ?? true)
        return Success.response(product, status: .created)
    }

    static func sku(_ body: JSONInput, required: Bool) throws -> String? {
        guard let sku = try body.string("sku", max: 64, required: required) else { return nil }
        guard sku.wholeMatch(of: /[A-Za-z0-9][A-Za-z0-9._-]*/) != nil else {
            throw APIError.badRequest("field \"sku\" must be letters, digits, . _ or -")
        }
        return sku
    }

    static func updateProduct(_ call: inout ClinicCall) async throws -> Response {
        _ = try call.query()
        let id = try call.id("id")
        let body = try await call.body()
        guard productFields.contains(where: { body.value($0).map { !$0.isNull } ?? false }) else { throw APIError.badRequest("give at least one of \(productFields.sorted().joined(separator: ", "))") }
        guard let product = try await call.store.updateProduct(
            organization: call.organization, id: id, name: try body.string("name", max: 200, required: false), sku: try sku(body, required: false),
            unit: try body.string("unit", max: 20, required: false), priceCents: try body.int("priceCents", range: 0...100_000_000, required: false),
            active: try body.bool("active"))
        else { throw APIError.notFound("no product \"\(id)\" in this organization") }
        return Success.response(product)
    }

    static func createInventoryChange(_ call: inout ClinicCall) async throws -> Response {
        _ = try call.query()
        let body = try await call.body()
        let reason = try body.string("reason", max: 20)!
        guard ["restock", "usage", "adjustment", "correction"].contains(reason) else {
            throw APIError.badRequest("field \"reason\" must be one of adjustment, correction, restock, usage")
        }
        let note = try body.string("note", max: 2_000, required: false) ?? ""
        let items = try body.objects("lines")
        guard (1...100).contains(items.count) else { throw APIError.badRequest("field \"lines\" must have 1 to 100 entries") }
        var lines: [(productID: String, delta: Int64)] = []
        for (i, item) in items.enumerated() {
            for key in item.keys where key != "productId" && key != "quantityDelta" {
                throw APIError.badRequest("lines[\(i)]: unknown field \"\(Validate.safe(key))\"")
            }
            guard case .string(let product)? = item["productId"], Validate.isID(product, prefix: "prd") else {
                throw APIError.badRequest("lines[\(i)].productId must be a product id")
            }
            guard case .int(let delta)? = item["quantityDelta"], delta != 0, abs(delta) <= 1_000_000 else {
                throw APIError.badRequest("lines[\(i)].quantityDelta must be a non-zero integer from -1000000 to 1000000")
            }
            lines.append((product, delta))
        }
        // An unknown product is the store's StoreError.invalid (a 400, mapped in TraceMiddleware).
        let change = try await call.store.createInventoryChange(organization: call.organization, reason: reason, note: note, lines: lines)
        return Success.response(change, status: .created)
    }
}

/// The one part of a `multipart/form-data` body that carries the file (field `file`).
///
/// The work is linear in the body whatever the boundary: the boundary is 1–70 characters
/// of RFC 2046's set (anything else is a 400), delimiters are found with a Knuth–Morris–Pratt
/// scan (no re-comparison at every offset), and a part's headers are at most 8 KiB.
enum Multipart {
    static let maxBoundary = 70
    static let maxPartHeaderBytes = 8 * 1024

    /// RFC 2046 §5.1.1: `bchars` (DIGIT / ALPHA / '()+_,-./:=? and space), not ending in a space.
    static func boundary(of contentType: String) throws -> [UInt8] {
        guard let parameter = contentType.split(separator: ";").map({ $0.trimmingCharacters(in: .whitespaces) })
            .first(where: { $0.lowercased().hasPrefix("boundary=") })
        else { throw APIError.badRequest("multipart body without a boundary") }
        var value = Substring(parameter.dropFirst("boundary=".count))
        if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = value.dropFirst().dropLast() }
        let bytes = Array(value.utf8)
        let allowed = Set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? ".utf8)
        guard (1...maxBoundary).contains(bytes.count), bytes.allSatisfy(allowed.contains), bytes.last != UInt8(ascii: " ") else {
            throw APIError.badRequest("the multipart boundary must be 1 to \(maxBoundary) characters of RFC 2046 (letters, digits, '()+_,-./:=? and inner spaces)")
        }
        return bytes
    }

    /// Every start offset of `pattern` in `body`, in one pass (Knuth–Morris–Pratt).
    static func occurrences(of pattern: [UInt8], in body: [UInt8]) -> [Int] {
        var failure = [Int](repeating: 0, count: pattern.count)
        var k = 0
        for i in 1..<max(pattern.count, 1) {
            while k > 0 && pattern[i] != pattern[k] { k = failure[k - 1] }
            if pattern[i] == pattern[k] { k += 1 }
            failure[i] = k
        }
        var found: [Int] = []
        k = 0
        for (i, byte) in body.enumerated() {
            while k > 0 && byte != pattern[k] { k = failure[k - 1] }
            if byte == pattern[k] { k += 1 }
            if k == pattern.count {
                found.append(i + 1 - pattern.count)
                k = failure[k - 1]
            }
        }
        return found
    }

    static func filePart(_ body: [UInt8], contentType: String) throws -> (String, [UInt8]) {
        let delimiter = Array("--".utf8) + (try boundary(of: contentType))
        // A delimiter starts the body or follows a CRLF; the CRLF belongs to the delimiter.
        let starts = occurrences(of: delimiter, in: body).filter { $0 == 0 || ($0 >= 2 && body[$0 - 2] == 13 && body[$0 - 1] == 10) }
        for (n, at) in starts.enumerated() {
            var partStart = at + delimiter.count
            if partStart + 2 <= body.count && body[partStart] == UInt8(ascii: "-") && body[partStart + 1] == UInt8(ascii: "-") { break }
            partStart += 2  // the CRLF after the delimiter
            guard n + 1 < starts.count else { break }  // a part ends where the next delimiter's CRLF begins
            let partEnd = starts[n + 1] - 2
            guard partStart <= partEnd else { continue }
            let part = body[partStart..<partEnd]
            let searchEnd = min(part.endIndex, part.startIndex + maxPartHeaderBytes)
            var headerEnd: Int?
            var i = part.startIndex
            while i + 4 <= searchEnd {
                if body[i] == 13 && body[i + 1] == 10 && body[i + 2] == 13 && body[i + 3] == 10 { headerEnd = i; break }
                i += 1
            }
            guard let headerEnd else { continue }
            let headers = String(decoding: body[partStart..<headerEnd], as: UTF8.self).lowercased()
            guard headers.contains("name=\"file\"") else { continue }
            let type = headers.split(separator: "\r\n").first { $0.hasPrefix("content-type:") }
                .map { $0.dropFirst("content-type:".count).trimmingCharacters(in: .whitespaces) } ?? ""
            return (type, Array(body[(headerEnd + 4)..<partEnd]))
        }
        throw APIError.badRequest("multipart body without a \"file\" field")
    }
}
