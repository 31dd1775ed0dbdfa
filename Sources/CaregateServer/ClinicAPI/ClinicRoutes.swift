import CaregateStore
import Foundation
import Hummingbird
import Scopes

/// The handlers of the built-in clinic data API, keyed by method and path template
/// without the version (`GET /patients/{id}`): `/v1` and `/v3` share them.
enum ClinicRoutes {
    static func handlers() -> [String: ClinicHandler] {
        var table: [String: ClinicHandler] = [:]
        func list(_ collection: ClinicCollection, _ path: String, extra: Set<String> = []) {
            table["GET /\(path)"] = { call in try await listCollection(collection, &call, extra: extra) }
        }
        func detail(_ collection: ClinicCollection, _ path: String, _ load: (@Sendable (ClinicStore, String, String) async throws -> JSONValue?)? = nil) {
            table["GET /\(path)/{id}"] = { call in
                _ = try QueryInput(call.request.uri.query, allowed: [])
                let id = try call.pathID(call.segments.count - 1, prefix: collection.idPrefix)
                let found: JSONValue?
                if let load {
                    found = try await load(call.store, call.organization, id)
                } else {
                    found = try await call.store.get(collection, organization: call.organization, id: id)
                }
                guard let found else { throw APIError.notFound("no \(collection.name) record \"\(id)\" in this organization") }
                return Success.response(found)
            }
        }
        list(.patients, "patients")
        detail(.patients, "patients")
        list(.appointments, "appointments")
        detail(.appointments, "appointments")
        list(.providers, "providers")
        detail(.providers, "providers")
        list(.facilities, "facilities")
        detail(.facilities, "facilities")
        list(.bills, "bills")
        detail(.bills, "bills") { try await $0.billDetail(organization: $1, id: $2) }
        list(.claims, "claims")
        detail(.claims, "claims") { try await $0.claimDetail(organization: $1, id: $2) }
        list(.tasks, "tasks")
        detail(.tasks, "tasks")
        list(.emails, "emails")
        detail(.emails, "emails")
        list(.phoneNumbers, "phone-numbers")
        list(.inventoryChanges, "inventory/changes")
        detail(.inventoryChanges, "inventory/changes") { try await $0.inventoryChangeDetail(organization: $1, id: $2) }
        list(.products, "inventory/products")
        detail(.products, "inventory/products")

        table["GET /notes"] = { call in try await listNotes(&call) }
        table["GET /notes/{id}"] = { call in try await noteDetail(&call) }
        table["GET /inventory/changes/{id}/products"] = { call in
            _ = try QueryInput(call.request.uri.query, allowed: [])
            let id = try call.pathID(3, prefix: "inv")
            guard let lines = try await call.store.inventoryChangeProducts(organization: call.organization, changeID: id) else {
                throw APIError.notFound("no inventory change \"\(id)\" in this organization")
            }
            return Success.response(.array(lines))
        }
        table["GET /inventory/stock-levels"] = { call in
            let query = try QueryInput(call.request.uri.query, allowed: ["productId"])
            let levels = try await call.store.stockLevels(organization: call.organization, productID: try query.id("productId", prefix: "prd"))
            return Success.response(.array(levels))
        }
        table["POST /notes/{noteId}/images"] = { call in try await NoteWrites.uploadImage(&call) }
        table["DELETE /notes/{noteId}/images/{imageId}"] = { call in try await NoteWrites.deleteImage(&call) }
        table["PATCH /notes/{noteId}"] = { call in try await NoteWrites.editSOAP(&call) }
        table["PATCH /notes/{noteId}/impressions/{impressionId}"] = { call in try await NoteWrites.editImpression(&call) }
        table["POST /tasks"] = { call in try await OtherWrites.createTask(&call) }
        table["PATCH /tasks/{id}"] = { call in try await OtherWrites.updateTask(&call) }
        table["POST /emails/send"] = { call in try await OtherWrites.sendEmail(&call) }
        table["POST /inventory/products"] = { call in try await OtherWrites.createProduct(&call) }
        table["PUT /inventory/products/{id}"] = { call in try await OtherWrites.updateProduct(&call) }
        table["POST /inventory/changes"] = { call in try await OtherWrites.createInventoryChange(&call) }
        return table
    }

    /// Values of status filters each collection knows.
    static let statuses: [String: Set<String>] = [
        "appointments": ["scheduled", "completed", "cancelled", "no_show"],
        "bills": ["open", "paid", "submitted"],
        "claims": ["submitted", "accepted", "denied", "paid"],
        "tasks": ["open", "completed", "cancelled"],
        "emails": ["queued", "sent", "received", "failed"],
    ]

    static let idPrefixes = ["patientId": "pat", "providerId": "prv", "facilityId": "fac", "noteId": "not", "productId": "prd"]

    static func filters(_ collection: ClinicCollection, _ query: QueryInput) throws -> [(ClinicCollection.Filter, String)] {
        var result: [(ClinicCollection.Filter, String)] = []
        for name in query.names.sorted() {
            guard let filter = collection.filters[name], let value = query[name] else { continue }
            if let prefix = idPrefixes[name] {
                _ = try query.id(name, prefix: prefix)
            } else if name == "status" || name == "direction" || name == "reason" {
                let allowed = name == "direction" ? ["inbound", "outbound"] : name == "reason" ? ["restock", "usage", "adjustment", "correction"] : statuses[collection.name] ?? []
                guard allowed.contains(value) else {
                    throw APIError.badRequest("\(name) must be one of \(allowed.sorted().joined(separator: ", "))")
                }
            } else if name == "startDate" || name == "endDate" || name == "dateOfBirth" {
                guard Validate.isDate(value) else { throw APIError.badRequest("\(name) must be a date, YYYY-MM-DD") }
            } else if name == "email" {
                guard Validate.isEmail(value) else { throw APIError.badRequest("email must be an email address") }
            } else if name == "phone" {
                guard value.count <= 16, value.wholeMatch(of: /\+?[0-9]{7,15}/) != nil else { throw APIError.badRequest("phone must be 7 to 15 digits, optionally after +") }
            } else if name == "active" {
                _ = try query.flag(name)
            } else if name == "sku" {
                guard !value.isEmpty, value.count <= 64 else { throw APIError.badRequest("sku must be 1 to 64 characters") }
            } else {
                guard Validate.isSearchText(value) else {
                    throw APIError.badRequest("\(name) must be 1 to 100 letters, digits, spaces or ' - . @ +")
                }
            }
            result.append((filter, value))
        }
        if let start = query["startDate"], let end = query["endDate"], start > end {
            throw APIError.badRequest("startDate must not be after endDate")
        }
        return result
    }

    static func listCollection(_ collection: ClinicCollection, _ call: inout ClinicCall, extra: Set<String> = []) async throws -> Response {
        let query = try QueryInput(call.request.uri.query, allowed: Set(collection.filters.keys).union(["limit", "cursor"]).union(extra))
        let limit = try query.limit()
        let cursor = try query.id("cursor", prefix: collection.idPrefix)
        let page = try await call.store.list(collection, organization: call.organization, filters: try filters(collection, query), after: cursor, limit: limit)
        return Success.response(.array(page.items), pagination: .init(limit: limit, nextCursor: page.nextCursor))
    }

    /// SOAP content only with `includeSoapNote=true` and both read:notes and read:soap_notes effective.
    static func includeSOAP(_ query: QueryInput, _ call: ClinicCall) throws -> Bool {
        guard try query.flag("includeSoapNote") == true else { return false }
        // The route's query gate already required read:soap_notes; check again here so that
        // the content never depends on the catalog alone.
        guard call.catalog.contains(call.effective, scope: "read:soap_notes"), call.catalog.contains(call.effective, scope: "read:notes") else {
            throw APIError.insufficientScope("read:soap_notes")
        }
        return true
    }

    static func listNotes(_ call: inout ClinicCall) async throws -> Response {
        let query = try QueryInput(call.request.uri.query, allowed: ["limit", "cursor", "patientId", "providerId", "includeSoapNote"])
        let soap = try includeSOAP(query, call)
        let limit = try query.limit()
        let page = try await call.store.list(
            .notes, organization: call.organization, filters: try filters(.notes, query),
            after: try query.id("cursor", prefix: "not"), limit: limit)
        let items = soap ? try await call.store.withSOAP(page.items, organization: call.organization) : page.items
        return Success.response(.array(items), pagination: .init(limit: limit, nextCursor: page.nextCursor))
    }

    static func noteDetail(_ call: inout ClinicCall) async throws -> Response {
        let query = try QueryInput(call.request.uri.query, allowed: ["includeSoapNote"])
        let soap = try includeSOAP(query, call)
        let id = try call.pathID(2, prefix: "not")
        guard var note = try await call.store.get(.notes, organization: call.organization, id: id) else {
            throw APIError.notFound("no note \"\(id)\" in this organization")
        }
        note.set("images", .array(try await call.store.noteImages(organization: call.organization, noteID: id)))
        if soap { note = try await call.store.withSOAP([note], organization: call.organization)[0] }
        return Success.response(note)
    }
}
