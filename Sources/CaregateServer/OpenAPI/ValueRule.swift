import CaregateStore
import Foundation

/// What a query parameter's value must be: the one definition both the validation and the
/// OpenAPI document use, so that what the document promises is what the server accepts.
enum ValueRule: Sendable {
    /// `<prefix>_<32 lower-case hex digits>`.
    case id(prefix: String)
    case oneOf([String])
    /// `YYYY-MM-DD`, a real day of the years 1900–2200.
    case date
    case email
    /// 7 to 15 digits, optionally after `+`.
    case phone
    /// `true` or `false`.
    case flag
    /// An integer from 1 to 200.
    case limit
    /// An organization id: `org_<32 hex>` or its UUID form, any letter case.
    case organization
    /// An audit event id (`aud_<33 hex>`), the cursor of the audit log.
    case auditCursor
    /// A trace id: a UUID (what `X-Trace-Id` carries).
    case traceID
    /// A number of days from 1 to 365.
    case days
    /// 1 to `max` characters without control characters.
    case text(max: Int)
    /// 1 to 100 characters: letters, digits, spaces and `' - . @ +` (ASCII punctuation otherwise
    /// and control characters are refused, so the value is never a LIKE pattern).
    case searchText

    var schema: Schema {
        switch self {
        case .id(let prefix): Schema.idPattern(prefix)
        case .oneOf(let values): .oneOf(values)
        case .date: .string(pattern: Schema.whole(Self.datePattern), format: "date")
        case .email: .string(maxLength: 254, pattern: Schema.whole(Self.emailPattern))
        case .phone: .string(pattern: Schema.whole("\\+?[0-9]{7,15}"))
        case .flag: .oneOf(["true", "false"])
        case .limit: .integer(minimum: 1, maximum: 200)
        case .organization: .string(pattern: Schema.whole("(org_[0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"))
        case .auditCursor: .string(pattern: Schema.whole("aud_[0-9a-f]{33}"))
        case .days: .integer(minimum: 1, maximum: 365)
        case .traceID: .string(pattern: Schema.whole("[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"))
        case .text(let max): .string(minLength: 1, maxLength: max, pattern: Schema.noControlCharacters)
        case .searchText: .string(minLength: 1, maxLength: 100, pattern: Schema.whole(Self.searchPattern))
        }
    }

    /// A real day from 1900 to 2200, as `Validate.isDate` reads it: 29 February in leap years only
    /// (2000 is one; 1900, 2100 and 2200 are not).
    static let datePattern = Schema.day(year: "(19[0-9]{2}|2[01][0-9]{2}|2200)", leapYear: "((19|20|21)(0[48]|[2468][048]|[13579][26])|2000)")
    /// Printable ASCII without spaces, one `@`, a `.` in the domain.
    static let emailPattern = "[!-?A-~]+@[!-?A-~]*\\.[!-?A-~]*"
    static let searchPattern = "[^\\u0000-\\u001F\\u007F!-&(-*,/:-?\\[-`{-~]+"

    /// The value, checked; the error names the parameter.
    func check(_ value: String, name: String) throws {
        let ok: Bool
        switch self {
        case .id(let prefix): ok = Validate.isID(value, prefix: prefix)
        case .oneOf(let values): ok = values.contains(value)
        case .date: ok = Validate.isDate(value)
        case .email: ok = Validate.isEmail(value)
        case .phone: ok = value.utf8.count <= 16 && value.wholeMatch(of: /\+?[0-9]{7,15}/) != nil
        case .flag: ok = value == "true" || value == "false"
        case .limit: ok = Int(value).map { (1...200).contains($0) } ?? false
        case .organization: ok = Identifier.organizationID(fromClientForm: value) != nil
        case .auditCursor: ok = AuditStore.isEventID(value)
        case .days: ok = Int(value).map { (1...365).contains($0) } ?? false
        case .traceID: ok = value.utf8.count == 36 && UUID(uuidString: value) != nil
        case .text(let max): ok = !value.isEmpty && value.unicodeScalars.count <= max && !Validate.hasControlCharacters(value)
        case .searchText: ok = Validate.isSearchText(value)
        }
        guard ok else { throw APIError.badRequest("\(name) must be \(description)") }
    }

    var description: String {
        switch self {
        case .id(let prefix): "an id of the form \(prefix)_<32 hex digits>"
        case .oneOf(let values): "one of \(values.sorted().joined(separator: ", "))"
        case .date: "a date, YYYY-MM-DD"
        case .email: "an email address"
        case .phone: "7 to 15 digits, optionally after +"
        case .flag: "true or false"
        case .limit: "an integer from 1 to 200"
        case .organization: "an organization id (org_<32 hex> or its UUID form)"
        case .auditCursor: "a cursor of this list"
        case .days: "an integer from 1 to 365"
        case .traceID: "a trace id (a UUID)"
        case .text(let max): "1 to \(max) characters without control characters"
        case .searchText: "1 to 100 letters, digits, spaces or ' - . @ +"
        }
    }
}

/// A query parameter of an operation: its name, rule and meaning.
struct QueryParameter: Sendable {
    var name: String
    var rule: ValueRule
    var required = false
    var description: String
}
