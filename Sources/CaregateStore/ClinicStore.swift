import Foundation
import SQLKit

/// The clinic data: every query is scoped to one organization.
public struct ClinicStore: Sendable {
    public let database: Database
    public init(database: Database) { self.database = database }
    var sql: any SQLDatabase { database.sql }

    public struct Page: Sendable {
        public var items: [JSONValue]
        public var nextCursor: String?
    }

    /// A page of a collection in id order. `filters` are (filter, validated value) pairs.
    public func list(
        _ collection: ClinicCollection, organization: String, filters: [(ClinicCollection.Filter, String)],
        after cursor: String?, limit: Int
    ) async throws -> Page {
        var query: SQLQueryString = "SELECT \(unsafeRaw: collection.columnList) FROM \(ident: collection.table) WHERE organization_id = \(bind: organization)"
        for (filter, value) in filters {
            switch filter {
            case .equals(let column, let folded):
                query += folded ? " AND LOWER(\(ident: column)) = \(bind: value.lowercased())" : " AND \(ident: column) = \(bind: value)"
            case .contains(let columns):
                let pattern = "%" + value.lowercased() + "%"
                let parts = columns.map { column -> SQLQueryString in "LOWER(\(ident: column)) LIKE \(bind: pattern)" }
                query += " AND (" + parts.dropFirst().reduce(parts[0]) { $0 + " OR " + $1 } + ")"
            case .dateFrom(let column):
                query += " AND \(ident: column) >= \(bind: value)"
            case .dateTo(let column):
                // Dates and date-times are ISO text: everything on the end date sorts before "T~".
                query += " AND \(ident: column) <= \(bind: value + "T~")"
            case .boolean(let column):
                query += " AND \(ident: column) = \(bind: value == "true")"
            }
        }
        if let cursor { query += " AND id > \(bind: cursor)" }
        query += " ORDER BY id LIMIT \(literal: limit + 1)"
        let rows = try await sql.raw(query).all()
        let items = try rows.prefix(limit).map(collection.json)
        let next = rows.count > limit ? items.last?["id"]?.stringValue : nil
        return Page(items: items, nextCursor: next)
    }

    /// One record of a collection, or `nil` when it does not exist in this organization.
    public func get(_ collection: ClinicCollection, organization: String, id: String) async throws -> JSONValue? {
        try await sql.raw("""
            SELECT \(unsafeRaw: collection.columnList) FROM \(ident: collection.table)
            WHERE organization_id = \(bind: organization) AND id = \(bind: id)
            """).first().map(collection.json)
    }

    // MARK: Details

    public func billDetail(organization: String, id: String) async throws -> JSONValue? {
        guard var bill = try await get(.bills, organization: organization, id: id) else { return nil }
        let lines = try await sql.raw("""
            SELECT id, code, description, units, amount_cents FROM bill_line_items
            WHERE organization_id = \(bind: organization) AND bill_id = \(bind: id) ORDER BY position
            """).all().map(RowShape.billLine.json)
        let groups = try await sql.raw("""
            SELECT id, code_system, codes FROM bill_coding_groups
            WHERE organization_id = \(bind: organization) AND bill_id = \(bind: id) ORDER BY position
            """).all().map(RowShape.codingGroup.json)
        bill.set("lineItems", .array(lines))
        bill.set("codingGroups", .array(groups))
        return bill
    }

    public func claimDetail(organization: String, id: String) async throws -> JSONValue? {
        guard var claim = try await get(.claims, organization: organization, id: id),
              let row = try await sql.raw("""
                SELECT payer_name, plan_name, member_id, group_number FROM claims WHERE organization_id = \(bind: organization) AND id = \(bind: id)
                """).first()
        else { return nil }
        claim.set("insurance", try RowShape.insurance.json(row))
        return claim
    }

    /// Adds SOAP content, impressions and image metadata to notes (only when the caller may see SOAP content).
    public func withSOAP(_ notes: [JSONValue], organization: String) async throws -> [JSONValue] {
        var result: [JSONValue] = []
        for var note in notes {
            guard let id = note["id"]?.stringValue,
                  let row = try await sql.raw("""
                    SELECT subjective, objective, assessment, plan FROM notes WHERE organization_id = \(bind: organization) AND id = \(bind: id)
                    """).first()
            else { continue }
            let impressions = try await sql.raw("""
                SELECT id, code, description FROM note_impressions WHERE organization_id = \(bind: organization) AND note_id = \(bind: id) ORDER BY position
                """).all().map(RowShape.impression.json)
            var soap = try RowShape.soapNote.json(row)
            soap.set("impressions", .array(impressions))
            note.set("soapNote", soap)
            result.append(note)
        }
        return result
    }

    public func noteImages(organization: String, noteID: String) async throws -> [JSONValue] {
        try await sql.raw("""
            SELECT id, provider_id, content_type, size, created_at FROM note_images
            WHERE organization_id = \(bind: organization) AND note_id = \(bind: noteID) ORDER BY id
            """).all().map(RowShape.noteImage.json)
    }

    public func inventoryChangeProducts(organization: String, changeID: String) async throws -> [JSONValue]? {
        guard try await get(.inventoryChanges, organization: organization, id: changeID) != nil else { return nil }
        return try await sql.raw("""
            SELECT l.product_id, l.quantity_delta, p.name, p.sku FROM inventory_change_lines l
            JOIN products p ON p.id = l.product_id AND p.organization_id = l.organization_id
            WHERE l.organization_id = \(bind: organization) AND l.change_id = \(bind: changeID) ORDER BY l.position
            """).all().map(RowShape.inventoryLine.json)
    }

    public func inventoryChangeDetail(organization: String, id: String) async throws -> JSONValue? {
        guard var change = try await get(.inventoryChanges, organization: organization, id: id) else { return nil }
        change.set("lines", .array(try await inventoryChangeProducts(organization: organization, changeID: id) ?? []))
        return change
    }

    public func stockLevels(organization: String, productID: String?) async throws -> [JSONValue] {
        var query: SQLQueryString = """
            SELECT s.product_id, s.quantity, s.updated_at, p.name, p.sku FROM stock_levels s
            JOIN products p ON p.id = s.product_id AND p.organization_id = s.organization_id
            WHERE s.organization_id = \(bind: organization)
            """
        if let productID { query += " AND s.product_id = \(bind: productID)" }
        query += " ORDER BY s.product_id"
        return try await sql.raw(query).all().map(RowShape.stockLevel.json)
    }

    public func exists(_ collection: ClinicCollection, organization: String, id: String) async throws -> Bool {
        try await sql.raw("SELECT id FROM \(ident: collection.table) WHERE organization_id = \(bind: organization) AND id = \(bind: id)").first() != nil
    }

    // MARK: Writes

    public func addNoteImage(organization: String, noteID: String, providerID: String, contentType: String, data: [UInt8]) async throws -> JSONValue {
        let id = Identifier.random("img")
        let now = Clock.millis()
        try await sql.raw("""
            INSERT INTO note_images (id, organization_id, note_id, provider_id, content_type, size, data, created_at)
            VALUES (\(bind: id), \(bind: organization), \(bind: noteID), \(bind: providerID), \(bind: contentType), \(bind: Int64(data.count)),
                    \(bind: Data(data)), \(bind: now))
            """).run()
        return [("id", .string(id)), ("noteId", .string(noteID)), ("providerId", .string(providerID)), ("contentType", .string(contentType)),
                ("size", .int(Int64(data.count))), ("createdAt", .int(now))].asObject
    }

    /// Deletes an image of a note; `false` when there is no such image in that note and clinic.
    public func deleteNoteImage(organization: String, noteID: String, imageID: String) async throws -> Bool {
        try await database.transaction { db in
            guard try await db.raw("""
                SELECT id FROM note_images WHERE organization_id = \(bind: organization) AND note_id = \(bind: noteID) AND id = \(bind: imageID)
                """).first() != nil else { return false }
            try await db.raw("DELETE FROM note_images WHERE organization_id = \(bind: organization) AND id = \(bind: imageID)").run()
            return true
        }
    }

    /// Updates the given SOAP fields (subjective, objective, assessment, plan).
    public func updateSOAP(organization: String, noteID: String, fields: [(column: String, value: String)]) async throws -> Bool {
        guard !fields.isEmpty, try await exists(.notes, organization: organization, id: noteID) else { return false }
        var query: SQLQueryString = "UPDATE notes SET updated_at = \(bind: Clock.millis())"
        for (column, value) in fields { query += ", \(ident: column) = \(bind: value)" }
        query += " WHERE organization_id = \(bind: organization) AND id = \(bind: noteID)"
        try await sql.raw(query).run()
        return true
    }

    public func updateImpression(organization: String, noteID: String, impressionID: String, code: String?, description: String?) async throws -> JSONValue? {
        guard try await sql.raw("""
            SELECT id FROM note_impressions WHERE organization_id = \(bind: organization) AND note_id = \(bind: noteID) AND id = \(bind: impressionID)
            """).first() != nil else { return nil }
        var query: SQLQueryString = "UPDATE note_impressions SET updated_at = \(bind: Clock.millis())"
        if let code { query += ", code = \(bind: code)" }
        if let description { query += ", description = \(bind: description)" }
        query += " WHERE organization_id = \(bind: organization) AND id = \(bind: impressionID)"
        try await sql.raw(query).run()
        guard let r = try await sql.raw("SELECT id, code, description FROM note_impressions WHERE organization_id = \(bind: organization) AND id = \(bind: impressionID)").first()
        else { return nil }
        return [("id", .string(try r.decode(column: "id", as: String.self))), ("noteId", .string(noteID)),
                ("code", .string(try r.decode(column: "code", as: String.self))), ("description", .string(try r.decode(column: "description", as: String.self)))]
            .asObject
    }

    public struct NewTask: Sendable {
        public var title: String, description: String, noteID: String?, providerID: String?, patientID: String?, dueDate: String?
        public init(title: String, description: String, noteID: String?, providerID: String?, patientID: String?, dueDate: String?) {
            self.title = title
            self.description = description
            self.noteID = noteID
            self.providerID = providerID
            self.patientID = patientID
            self.dueDate = dueDate
        }
    }

    public func createTask(organization: String, _ task: NewTask) async throws -> JSONValue {
        let id = Identifier.random("tsk")
        let now = Clock.millis()
        try await sql.raw("""
            INSERT INTO tasks (id, organization_id, title, description, status, note_id, provider_id, patient_id, due_date, created_at, updated_at)
            VALUES (\(bind: id), \(bind: organization), \(bind: task.title), \(bind: task.description), 'open', \(bind: task.noteID),
                    \(bind: task.providerID), \(bind: task.patientID), \(bind: task.dueDate), \(bind: now), \(bind: now))
            """).run()
        return try await get(.tasks, organization: organization, id: id)!
    }

    public enum TransitionResult: Sendable { case updated(JSONValue), notFound, invalid(from: String) }

    /// Completes or cancels an open task; any other transition is refused.
    public func transitionTask(organization: String, id: String, to status: String) async throws -> TransitionResult {
        try await database.transaction { db in
            guard let current = try await db.raw("SELECT status FROM tasks WHERE organization_id = \(bind: organization) AND id = \(bind: id)")
                .first(decodingColumn: "status", as: String.self)
            else { return .notFound }
            guard current == "open" else { return .invalid(from: current) }
            try await db.raw("UPDATE tasks SET status = \(bind: status), updated_at = \(bind: Clock.millis()) WHERE organization_id = \(bind: organization) AND id = \(bind: id)").run()
            guard let row = try await db.raw("SELECT \(unsafeRaw: ClinicCollection.tasks.columnList) FROM tasks WHERE organization_id = \(bind: organization) AND id = \(bind: id)").first()
            else { return .notFound }
            return .updated(try ClinicCollection.tasks.json(row))
        }
    }

    /// Queues an email in the outbox; the record says `queued` until the outbox delivers it.
    public func sendEmail(organization: String, from: String, to: String, subject: String, body: String, patientID: String?) async throws -> JSONValue {
        let id = Identifier.random("eml")
        let now = Clock.millis()
        try await database.transaction { db in
            try await db.raw("""
                INSERT INTO emails (id, organization_id, patient_id, direction, from_address, to_address, subject, body, status, created_at)
                VALUES (\(bind: id), \(bind: organization), \(bind: patientID), 'outbound', \(bind: from), \(bind: to), \(bind: subject), \(bind: body), 'queued', \(bind: now))
                """).run()
            try await db.raw("""
                INSERT INTO email_outbox (id, organization_id, email_id, status, attempts, created_at)
                VALUES (\(bind: Identifier.random("obx")), \(bind: organization), \(bind: id), 'pending', 0, \(bind: now))
                """).run()
        }
        return try await get(.emails, organization: organization, id: id)!
    }

    /// Delivers pending outbox messages (to the log: this build has no mail relay) and marks them sent.
    public func drainOutbox(limit: Int = 100) async throws -> Int {
        let pending = try await sql.raw("SELECT id, organization_id, email_id FROM email_outbox WHERE status = 'pending' ORDER BY id LIMIT \(literal: limit)").all()
        for row in pending {
            let id = try row.decode(column: "id", as: String.self)
            let org = try row.decode(column: "organization_id", as: String.self)
            let emailID = try row.decode(column: "email_id", as: String.self)
            try await database.transaction { db in
                try await db.raw("UPDATE email_outbox SET status = 'sent', attempts = attempts + 1, sent_at = \(bind: Clock.millis()) WHERE id = \(bind: id)").run()
                try await db.raw("UPDATE emails SET status = 'sent' WHERE organization_id = \(bind: org) AND id = \(bind: emailID)").run()
            }
        }
        return pending.count
    }

    public func createProduct(organization: String, name: String, sku: String, unit: String, priceCents: Int64, active: Bool) async throws -> JSONValue {
        let id = Identifier.random("prd")
        let now = Clock.millis()
        try await database.transaction { db in
            if try await db.raw("SELECT id FROM products WHERE organization_id = \(bind: organization) AND sku = \(bind: sku)").first() != nil {
                throw StoreError.conflict("a product with sku \"\(sku)\" already exists")
            }
            try await db.raw("""
                INSERT INTO products (id, organization_id, name, sku, unit, price_cents, active, created_at, updated_at)
                VALUES (\(bind: id), \(bind: organization), \(bind: name), \(bind: sku), \(bind: unit), \(bind: priceCents), \(bind: active), \(bind: now), \(bind: now))
                """).run()
            try await db.raw("INSERT INTO stock_levels (organization_id, product_id, quantity, updated_at) VALUES (\(bind: organization), \(bind: id), 0, \(bind: now))").run()
        }
        return try await get(.products, organization: organization, id: id)!
    }

    public func updateProduct(organization: String, id: String, name: String?, sku: String?, unit: String?, priceCents: Int64?, active: Bool?) async throws -> JSONValue? {
        try await database.transaction { db in
            guard try await db.raw("SELECT id FROM products WHERE organization_id = \(bind: organization) AND id = \(bind: id)").first() != nil else { return nil }
            if let sku, try await db.raw("SELECT id FROM products WHERE organization_id = \(bind: organization) AND sku = \(bind: sku) AND id <> \(bind: id)").first() != nil {
                throw StoreError.conflict("a product with sku \"\(sku)\" already exists")
            }
            var query: SQLQueryString = "UPDATE products SET updated_at = \(bind: Clock.millis())"
            if let name { query += ", name = \(bind: name)" }
            if let sku { query += ", sku = \(bind: sku)" }
            if let unit { query += ", unit = \(bind: unit)" }
            if let priceCents { query += ", price_cents = \(bind: priceCents)" }
            if let active { query += ", active = \(bind: active)" }
            query += " WHERE organization_id = \(bind: organization) AND id = \(bind: id)"
            try await db.raw(query).run()
            return try await db.raw("SELECT \(unsafeRaw: ClinicCollection.products.columnList) FROM products WHERE organization_id = \(bind: organization) AND id = \(bind: id)")
                .first().map(ClinicCollection.products.json)
        }
    }

    /// Records an inventory change and applies it to stock levels in the same transaction.
    /// Stock moves by an atomic `quantity = quantity + delta`, so concurrent changes never
    /// lose an update. Throws `StoreError.invalid` naming an unknown product.
    public func createInventoryChange(organization: String, reason: String, note: String, lines: [(productID: String, delta: Int64)]) async throws -> JSONValue {
        let id = Identifier.random("inv")
        try await database.transaction { db in
            let now = Clock.millis()
            try await db.raw("""
                INSERT INTO inventory_changes (id, organization_id, reason, note, created_at)
                VALUES (\(bind: id), \(bind: organization), \(bind: reason), \(bind: note), \(bind: now))
                """).run()
            for (position, line) in lines.enumerated() {
                guard try await db.raw("SELECT id FROM products WHERE organization_id = \(bind: organization) AND id = \(bind: line.productID)").first() != nil else {
                    throw StoreError.invalid("lines[\(position)].productId: no product \"\(line.productID)\" in this organization")
                }
                try await db.raw("""
                    INSERT INTO inventory_change_lines (id, organization_id, change_id, product_id, quantity_delta, position)
                    VALUES (\(bind: Identifier.random("icl")), \(bind: organization), \(bind: id), \(bind: line.productID), \(bind: line.delta), \(bind: Int64(position)))
                    """).run()
                try await db.raw("""
                    UPDATE stock_levels SET quantity = quantity + \(bind: line.delta), updated_at = \(bind: now)
                    WHERE organization_id = \(bind: organization) AND product_id = \(bind: line.productID)
                    """).run()
            }
        }
        return try await inventoryChangeDetail(organization: organization, id: id)!
    }
}

extension Array where Element == (String, JSONValue) {
    var asObject: JSONValue { .object(self) }
}
