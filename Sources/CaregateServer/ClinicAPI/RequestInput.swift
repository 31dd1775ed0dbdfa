import CaregateStore
import Foundation
import Hummingbird
import Scopes

/// Query parameters of one clinic API call, validated strictly: an unknown or repeated
/// parameter, or a malformed value, is a 400 naming it.
struct QueryInput {
    private var items: [String: String] = [:]

    init(_ query: String?, allowed: Set<String>) throws {
        for (name, value) in QueryItems.parse(query) {
            guard allowed.contains(name) else {
                let known = allowed.sorted().joined(separator: ", ")
                throw APIError.badRequest("unknown query parameter \"\(Validate.safe(name))\"\(known.isEmpty ? "" : " (allowed: \(known))")")
            }
            guard items[name] == nil else { throw APIError.badRequest("query parameter \"\(name)\" is repeated") }
            items[name] = value
        }
    }

    /// The query string read with exactly the `declared` parameters: each value checked
    /// against its rule, the required ones present.
    init(_ query: String?, declared: [QueryParameter]) throws {
        try self.init(query, allowed: Set(declared.map(\.name)))
        for parameter in declared {
            if let value = items[parameter.name] {
                try parameter.rule.check(value, name: parameter.name)
            } else if parameter.required {
                throw APIError.badRequest("\(parameter.name) is required")
            }
        }
    }

    subscript(name: String) -> String? { items[name] }

    var names: [String] { Array(items.keys) }

    func limit() throws -> Int {
        guard let text = items["limit"] else { return 50 }
        guard let value = Int(text), (1...200).contains(value) else {
            throw APIError.badRequest("limit must be an integer from 1 to 200")
        }
        return value
    }

    func id(_ name: String, prefix: String) throws -> String? {
        guard let value = items[name] else { return nil }
        guard Validate.isID(value, prefix: prefix) else {
            throw APIError.badRequest("\(name) must be an id of the form \(prefix)_<32 hex digits>")
        }
        return value
    }

    func flag(_ name: String) throws -> Bool? {
        guard let value = items[name] else { return nil }
        switch value {
        case "true": return true
        case "false": return false
        default: throw APIError.badRequest("\(name) must be true or false")
        }
    }
}

/// A JSON value as sent, keeping booleans, integers and strings apart.
enum JSONInputValue: Decodable {
    case null, bool(Bool), int(Int64), double(Double), string(String), array([JSONInputValue]), object([String: JSONInputValue])

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int64.self) { self = .int(i) }
        else if let d = try? c.decode(Double.self) { self = .double(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONInputValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONInputValue].self)) }
    }
}

/// Finds a key that appears twice in one object of a (well-formed) JSON text, comparing keys
/// after their escapes are decoded (`"a"` and `"\u0061"` are the same key). One pass.
enum JSONDuplicateKeys {
    static func first(in bytes: UnsafeRawBufferPointer) -> String? {
        var stack: [Set<String>?] = []  // per open container: the keys seen (nil for an array)
        var i = 0
        while i < bytes.count {
            switch bytes[i] {
            case UInt8(ascii: "{"): stack.append([])
            case UInt8(ascii: "["): stack.append(nil)
            case UInt8(ascii: "}"), UInt8(ascii: "]"): _ = stack.popLast()
            case UInt8(ascii: "\""):
                var scalars = String.UnicodeScalarView()
                var raw: [UInt8] = []
                i += 1
                while i < bytes.count && bytes[i] != UInt8(ascii: "\"") {
                    if bytes[i] == UInt8(ascii: "\\"), i + 1 < bytes.count {
                        if !raw.isEmpty { scalars.append(contentsOf: String(decoding: raw, as: UTF8.self).unicodeScalars); raw.removeAll() }
                        i += 1
                        switch bytes[i] {
                        case UInt8(ascii: "u") where i + 4 < bytes.count:
                            func unit(at k: Int) -> UInt32? {
                                UInt32(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[k..<(k + 4)]), as: UTF8.self), radix: 16)
                            }
                            var value = unit(at: i + 1) ?? 0xFFFD
                            i += 4
                            // A surrogate pair (\ud83d\ude00) is one scalar.
                            if (0xD800...0xDBFF).contains(value), i + 6 < bytes.count, bytes[i + 1] == UInt8(ascii: "\\"),
                               bytes[i + 2] == UInt8(ascii: "u"), let low = unit(at: i + 3), (0xDC00...0xDFFF).contains(low) {
                                value = 0x10000 + ((value - 0xD800) << 10) + (low - 0xDC00)
                                i += 6
                            }
                            scalars.append(Unicode.Scalar(value) ?? "\u{FFFD}")
                        case UInt8(ascii: "n"): scalars.append("\n")
                        case UInt8(ascii: "t"): scalars.append("\t")
                        case UInt8(ascii: "r"): scalars.append("\r")
                        case UInt8(ascii: "b"): scalars.append("\u{8}")
                        case UInt8(ascii: "f"): scalars.append("\u{C}")
                        default: scalars.append(Unicode.Scalar(bytes[i]))
                        }
                    } else {
                        raw.append(bytes[i])
                    }
                    i += 1
                }
                if !raw.isEmpty { scalars.append(contentsOf: String(decoding: raw, as: UTF8.self).unicodeScalars) }
                var j = i + 1
                while j < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[j]) { j += 1 }
                if j < bytes.count, bytes[j] == UInt8(ascii: ":"), let last = stack.indices.last, stack[last] != nil {
                    let key = String(scalars)
                    if !stack[last]!.insert(key).inserted { return key }
                }
            default: break
            }
            i += 1
        }
        return nil
    }
}

/// A JSON object body, read field by field with messages that name the field.
struct JSONInput {
    private let object: [String: JSONInputValue]

    static let maxBytes = 64 * 1024

    init(_ request: inout Request, allowed: Set<String>) async throws {
        guard let type = request.headers[.contentType], type.lowercased().hasPrefix("application/json") else {
            throw APIError(.unsupportedMediaType, "unsupported_media_type", "the body must be application/json")
        }
        let buffer: ByteBuffer
        do {
            buffer = try await request.collectBody(upTo: Self.maxBytes)
        } catch {
            throw APIError(.contentTooLarge, "payload_too_large", "the JSON body may be at most \(Self.maxBytes) bytes")
        }
        guard case .object(let object)? = try? JSONDecoder().decode(JSONInputValue.self, from: Data(buffer: buffer)) else {
            throw APIError.badRequest("the body must be a JSON object")
        }
        // The decoder keeps one of two equal keys silently; which one another parser keeps differs.
        if let duplicate = buffer.withUnsafeReadableBytes({ JSONDuplicateKeys.first(in: $0) }) {
            throw APIError.badRequest("field \"\(Validate.safe(duplicate))\" appears twice in one object")
        }
        for key in object.keys.sorted() where !allowed.contains(key) {
            throw APIError.badRequest("unknown field \"\(Validate.safe(key))\" (allowed: \(allowed.sorted().joined(separator: ", ")))")
        }
        self.object = object
    }

    func has(_ name: String) -> Bool { object[name] != nil }

    /// A field sent as null reads as absent, as the document says of every optional field.
    func value(_ name: String) -> JSONInputValue? { object[name].flatMap { $0.isNull ? nil : $0 } }

    private func value(_ name: String, required: Bool) throws -> JSONInputValue? {
        guard let raw = object[name], !(raw.isNull) else {
            if required { throw APIError.badRequest("field \"\(name)\" is required") }
            return nil
        }
        return raw
    }

    func string(_ name: String, max: Int = 1_000, required: Bool = true) throws -> String? {
        guard let raw = try value(name, required: required) else { return nil }
        guard case .string(let value) = raw else { throw APIError.badRequest("field \"\(name)\" must be a string") }
        if required && value.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            throw APIError.badRequest("field \"\(name)\" must not be empty")
        }
        // Counted as JSON Schema's maxLength counts: code points.
        guard value.unicodeScalars.count <= max else { throw APIError.badRequest("field \"\(name)\" may be at most \(max) characters") }
        guard !Validate.hasControlCharacters(value) else {
            throw APIError.badRequest("field \"\(name)\" contains control characters")
        }
        return value
    }

    func int(_ name: String, range: ClosedRange<Int64>, required: Bool = true) throws -> Int64? {
        guard let raw = try value(name, required: required) else { return nil }
        guard case .int(let value) = raw else { throw APIError.badRequest("field \"\(name)\" must be an integer") }
        guard range.contains(value) else { throw APIError.badRequest("field \"\(name)\" must be from \(range.lowerBound) to \(range.upperBound)") }
        return value
    }

    func bool(_ name: String, required: Bool = false) throws -> Bool? {
        guard let raw = try value(name, required: required) else { return nil }
        guard case .bool(let value) = raw else { throw APIError.badRequest("field \"\(name)\" must be true or false") }
        return value
    }

    func stringArray(_ name: String, required: Bool = true) throws -> [String]? {
        guard let raw = try value(name, required: required) else { return nil }
        guard case .array(let items) = raw else { throw APIError.badRequest("field \"\(name)\" must be an array of strings") }
        return try items.map { item in
            guard case .string(let s) = item else { throw APIError.badRequest("field \"\(name)\" must be an array of strings") }
            return s
        }
    }

    func objects(_ name: String) throws -> [[String: JSONInputValue]] {
        guard let raw = try value(name, required: true) else { return [] }
        guard case .array(let items) = raw else { throw APIError.badRequest("field \"\(name)\" must be an array") }
        return try items.enumerated().map { i, item in
            guard case .object(let o) = item else { throw APIError.badRequest("\(name)[\(i)] must be an object") }
            return o
        }
    }
}

extension JSONInputValue {
    var isNull: Bool { if case .null = self { true } else { false } }

    /// JSON text again (keys sorted), or `nil` for values with fractions.
    func jsonText() -> String? {
        func convert(_ v: JSONInputValue) -> JSONValue? {
            switch v {
            case .null: return .null
            case .bool(let b): return .bool(b)
            case .int(let i): return .int(i)
            case .double: return nil
            case .string(let s): return .string(s)
            case .array(let items):
                let converted = items.compactMap(convert)
                return converted.count == items.count ? .array(converted) : nil
            case .object(let o):
                var pairs: [(String, JSONValue)] = []
                for key in o.keys.sorted() {
                    guard let c = convert(o[key]!) else { return nil }
                    pairs.append((key, c))
                }
                return .object(pairs)
            }
        }
        return convert(self).map { String(decoding: $0.serialized(), as: UTF8.self) }
    }
}

enum Validate {
    static func isID(_ text: String, prefix: String) -> Bool {
        let parts = text.split(separator: "_", maxSplits: 1)
        return parts.count == 2 && parts[0] == prefix && parts[1].utf8.count == 32
            && parts[1].utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    static func isDate(_ text: String) -> Bool {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
              let y = Int(parts[0]), let m = Int(parts[1]), let d = Int(parts[2]), (1900...2200).contains(y), (1...12).contains(m)
        else { return false }
        let days = [31, (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        return (1...days[m - 1]).contains(d)
    }

    static func isEmail(_ text: String) -> Bool {
        let parts = text.split(separator: "@", omittingEmptySubsequences: false)
        return text.utf8.count <= 254 && parts.count == 2 && !parts[0].isEmpty && parts[1].contains(".")
            && text.unicodeScalars.allSatisfy { $0.value > 0x20 && $0.value < 0x7F }
    }

    /// 1 to 100 characters, none of them a control character or ASCII punctuation other than
    /// `' - . @ +` (so `%` and `_` never reach a LIKE pattern); letters of any script pass.
    static func isSearchText(_ text: String) -> Bool {
        let scalars = text.unicodeScalars
        return !scalars.isEmpty && scalars.count <= 100 && scalars.allSatisfy { scalar in
            switch scalar.value {
            case 0..<0x20, 0x7F: false
            case 0x21...0x2F, 0x3A...0x40, 0x5B...0x60, 0x7B...0x7E: " '-.@+".unicodeScalars.contains(scalar)
            default: true
            }
        }
    }

    /// A control character other than tab, newline and carriage return.
    static func hasControlCharacters(_ text: String) -> Bool {
        text.unicodeScalars.contains { ($0.value < 0x20 && $0 != "\n" && $0 != "\t" && $0 != "\r") || $0.value == 0x7F }
    }

    /// Echoes client text into a message without control characters and at bounded length.
    static func safe(_ text: String) -> String {
        String(text.unicodeScalars.prefix(60).map { $0.value < 0x20 || $0.value == 0x7F ? "?" : Character($0) })
    }
}
