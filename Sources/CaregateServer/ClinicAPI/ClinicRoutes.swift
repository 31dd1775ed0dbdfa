import CaregateStore
import Foundation
import Hummingbird
import Scopes

/// The operations of the built-in clinic data API (seed 002's `/v3`; `/v1` serves the subset
/// its catalog lists), declared once: ``ClinicAPI`` dispatches to them by route and the
/// OpenAPI document describes them.
enum ClinicRoutes {
    static let operations: [ClinicOperation] = reads + writes

    static func list(_ collection: ClinicCollection, _ path: String) -> ClinicOperation {
        ClinicOperation(
            method: "GET", path: "/" + path, query: ClinicOperation.listQuery(collection), data: .array(ClinicSchemas.record(collection)),
            paginated: true, handler: { call in try await listCollection(collection, &call) })
    }

    static func detail(
        _ collection: ClinicCollection, _ path: String, schema: Schema? = nil,
        _ load: (@Sendable (ClinicStore, String, String) async throws -> JSONValue?)? = nil
    ) -> ClinicOperation {
        ClinicOperation(
            method: "GET", path: "/\(path)/{id}", ids: ["id": collection.idPrefix], data: schema ?? ClinicSchemas.record(collection),
            handler: { call in
                _ = try call.query()
                let id = try call.id("id")
                let found = if let load {
                    try await load(call.store, call.organization, id)
                } else {
                    try await call.store.get(collection, organization: call.organization, id: id)
                }
                guard let found else { throw APIError.notFound("no \(collection.name) record \"\(id)\" in this organization") }
                return Success.response(found)
            })
    }

    static let reads: [ClinicOperation] = [
        list(.patients, "patients"), detail(.patients, "patients"),
        list(.appointments, "appointments"), detail(.appointments, "appointments"),
        list(.providers, "providers"), detail(.providers, "providers"),
        list(.facilities, "facilities"), detail(.facilities, "facilities"),
        list(.bills, "bills"), detail(.bills, "bills", schema: ClinicSchemas.bill) { try await $0.billDetail(organization: $1, id: $2) },
        list(.claims, "claims"), detail(.claims, "claims", schema: ClinicSchemas.claim) { try await $0.claimDetail(organization: $1, id: $2) },
        list(.tasks, "tasks"), detail(.tasks, "tasks"),
        list(.emails, "emails"), detail(.emails, "emails"),
        list(.phoneNumbers, "phone-numbers"),
        list(.inventoryChanges, "inventory/changes"),
        detail(.inventoryChanges, "inventory/changes", schema: ClinicSchemas.inventoryChange) { try await $0.inventoryChangeDetail(organization: $1, id: $2) },
        list(.products, "inventory/products"), detail(.products, "inventory/products"),
        ClinicOperation(
            method: "GET", path: "/notes", query: ClinicOperation.listQuery(.notes) + [ClinicOperation.includeSOAP], data: .array(ClinicSchemas.note),
            paginated: true, handler: { call in try await listNotes(&call) }),
        ClinicOperation(
            method: "GET", path: "/notes/{id}", ids: ["id": "not"], query: [ClinicOperation.includeSOAP], data: ClinicSchemas.noteDetail,
            handler: { call in try await noteDetail(&call) }),
        ClinicOperation(
            method: "GET", path: "/inventory/changes/{id}/products", ids: ["id": "inv"], data: .array(ClinicSchemas.inventoryLine),
            handler: { call in
                _ = try call.query()
                let id = try call.id("id")
                guard let lines = try await call.store.inventoryChangeProducts(organization: call.organization, changeID: id) else {
                    throw APIError.notFound("no inventory change \"\(id)\" in this organization")
                }
                return Success.response(.array(lines))
            }),
        ClinicOperation(
            method: "GET", path: "/inventory/stock-levels",
            query: [QueryParameter(name: "productId", rule: .id(prefix: "prd"), description: "Only this product's level")],
            data: .array(ClinicSchemas.stockLevel),
            handler: { call in
                let query = try call.query()
                let levels = try await call.store.stockLevels(organization: call.organization, productID: query["productId"])
                return Success.response(.array(levels))
            }),
    ]

    static let writes: [ClinicOperation] = [
        ClinicOperation(
            method: "POST", path: "/notes/{noteId}/images", ids: ["noteId": "not"], query: [ClinicOperation.providerID], body: .image,
            success: .created, data: ClinicSchemas.uploadedImage, handler: { call in try await NoteWrites.uploadImage(&call) }),
        ClinicOperation(
            method: "DELETE", path: "/notes/{noteId}/images/{imageId}", ids: ["noteId": "not", "imageId": "img"], query: [ClinicOperation.providerID],
            success: .noContent, handler: { call in try await NoteWrites.deleteImage(&call) }),
        ClinicOperation(
            method: "PATCH", path: "/notes/{noteId}", ids: ["noteId": "not"], query: [ClinicOperation.providerID],
            body: .json(name: "SOAPEdit", schema: ClinicSchemas.soapEdit), data: ClinicSchemas.note,
            handler: { call in try await NoteWrites.editSOAP(&call) }),
        ClinicOperation(
            method: "PATCH", path: "/notes/{noteId}/impressions/{impressionId}", ids: ["noteId": "not", "impressionId": "imp"],
            query: [ClinicOperation.providerID], body: .json(name: "ImpressionEdit", schema: ClinicSchemas.impressionEdit),
            data: ClinicSchemas.editedImpression, handler: { call in try await NoteWrites.editImpression(&call) }),
        ClinicOperation(
            method: "POST", path: "/tasks", body: .json(name: "NewTask", schema: ClinicSchemas.newTask), success: .created,
            data: ClinicSchemas.record(.tasks), handler: { call in try await OtherWrites.createTask(&call) }),
        ClinicOperation(
            method: "PATCH", path: "/tasks/{id}", ids: ["id": "tsk"], body: .json(name: "TaskTransition", schema: ClinicSchemas.taskTransition),
            data: ClinicSchemas.record(.tasks), conflicts: true, handler: { call in try await OtherWrites.updateTask(&call) }),
        ClinicOperation(
            method: "POST", path: "/emails/send", body: .json(name: "NewEmail", schema: ClinicSchemas.newEmail), success: .accepted,
            data: ClinicSchemas.record(.emails), handler: { call in try await OtherWrites.sendEmail(&call) }),
        ClinicOperation(
            method: "POST", path: "/inventory/products", body: .json(name: "NewProduct", schema: ClinicSchemas.newProduct), success: .created,
            data: ClinicSchemas.record(.products), conflicts: true, handler: { call in try await OtherWrites.createProduct(&call) }),
        ClinicOperation(
            method: "PUT", path: "/inventory/products/{id}", ids: ["id": "prd"],
            body: .json(name: "ProductUpdate", schema: ClinicSchemas.productUpdate), data: ClinicSchemas.record(.products), conflicts: true,
            handler: { call in try await OtherWrites.updateProduct(&call) }),
        ClinicOperation(
            method: "POST", path: "/inventory/changes", body: .json(name: "NewInventoryChange", schema: ClinicSchemas.newInventoryChange),
            success: .created, data: ClinicSchemas.inventoryChange, handler: { call in try await OtherWrites.createInventoryChange(&call) }),
    ]

    /// The filters a list query names, with their values (already checked by ``ClinicCall/query()``).
    static func filters(_ collection: ClinicCollection, _ query: QueryInput) throws -> [(ClinicCollection.Filter, String)] {
        if let start = query["startDate"], let end = query["endDate"], start > end {
            throw APIError.badRequest("startDate must not be after endDate")
        }
        return query.names.sorted().compactMap { name in
            guard let filter = collection.filters[name], let value = query[name] else { return nil }
            return (filter, value)
        }
    }

    static func listCollection(_ collection: ClinicCollection, _ call: inout ClinicCall) async throws -> Response {
        let query = try call.query()
        let limit = try query.limit()
        let page = try await call.store.list(
            collection, organization: call.organization, filters: try filters(collection, query), after: query["cursor"], limit: limit)
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
        let query = try call.query()
        let soap = try includeSOAP(query, call)
        let limit = try query.limit()
        let page = try await call.store.list(
            .notes, organization: call.organization, filters: try filters(.notes, query), after: query["cursor"], limit: limit)
        let items = soap ? try await call.store.withSOAP(page.items, organization: call.organization) : page.items
        return Success.response(.array(items), pagination: .init(limit: limit, nextCursor: page.nextCursor))
    }

    static func noteDetail(_ call: inout ClinicCall) async throws -> Response {
        let query = try call.query()
        let soap = try includeSOAP(query, call)
        let id = try call.id("id")
        guard var note = try await call.store.get(.notes, organization: call.organization, id: id) else {
            throw APIError.notFound("no note \"\(id)\" in this organization")
        }
        note.set("images", .array(try await call.store.noteImages(organization: call.organization, noteID: id)))
        if soap { note = try await call.store.withSOAP([note], organization: call.organization)[0] }
        return Success.response(note)
    }
}
