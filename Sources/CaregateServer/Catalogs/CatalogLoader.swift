public import Foundation
public import Scopes

/// Loads catalog files (`Catalogs/<surface>.json`), validates and compiles them.
/// Every problem is reported with its file and entry, never just the first.
public enum CatalogLoader {
    /// The largest catalog file accepted.
    public static let maxFileBytes = 4 * 1024 * 1024

    /// Loads and compiles one catalog file.
    public static func load(file url: URL) throws(CatalogLoadError) -> CompiledCatalog {
        let data: Data
        do {
            let attributes = try FileManager.default.attributesOfItem(atPath: url.path)
            if let size = attributes[.size] as? Int, size > maxFileBytes {
                throw CatalogLoadError(file: url.path, problems: ["file is \(size) bytes; the limit is \(maxFileBytes)"])
            }
            data = try Data(contentsOf: url)
        } catch let error as CatalogLoadError {
            throw error
        } catch {
            throw CatalogLoadError(file: url.path, problems: ["cannot read: \(error.localizedDescription)"])
        }
        return try compile(data, file: url.path)
    }

    /// Decodes and compiles catalog JSON; `file` names it in errors.
    public static func compile(_ data: Data, file: String) throws(CatalogLoadError) -> CompiledCatalog {
        try compile(try decode(data, file: file), file: file)
    }

    static func decode(_ data: Data, file: String) throws(CatalogLoadError) -> CatalogDefinition {
        do {
            return try JSONDecoder().decode(CatalogDefinition.self, from: data)
        } catch let error as DecodingError {
            throw CatalogLoadError(file: file, problems: [describe(error)])
        } catch {
            throw CatalogLoadError(file: file, problems: ["not valid JSON: \(error)"])
        }
    }

    static func compile(_ definition: CatalogDefinition, file: String) throws(CatalogLoadError) -> CompiledCatalog {
        do {
            return try CompiledCatalog(definition)
        } catch {
            throw CatalogLoadError(file: file, problems: error.problems.map(\.description))
        }
    }

    /// Loads every `*.json` in a directory; surfaces must be unique.
    public static func loadDirectory(_ url: URL) throws(CatalogLoadError) -> [CompiledCatalog] {
        let files: [URL]
        do {
            files = try FileManager.default.contentsOfDirectory(at: url, includingPropertiesForKeys: nil)
                .filter { $0.pathExtension == "json" }
                .sorted { $0.lastPathComponent < $1.lastPathComponent }
        } catch {
            throw CatalogLoadError(file: url.path, problems: ["cannot list the catalog directory: \(error.localizedDescription)"])
        }
        if files.isEmpty { throw CatalogLoadError(file: url.path, problems: ["no *.json catalog files"]) }
        var catalogs: [CompiledCatalog] = []
        var failures: [CatalogLoadError] = []
        for file in files {
            do {
                let catalog = try load(file: file)
                if let other = catalogs.first(where: { $0.surface == catalog.surface }) {
                    failures.append(CatalogLoadError(file: file.path, problems: ["surface \"\(catalog.surface)\" is already defined (\(other.surface))"]))
                } else {
                    catalogs.append(catalog)
                }
            } catch {
                failures.append(error)
            }
        }
        if !failures.isEmpty {
            throw CatalogLoadError(file: url.path, problems: failures.flatMap { f in f.problems.map { "\(f.file): \($0)" } })
        }
        return catalogs
    }

    /// The shipped catalogs as the binary carries them (file name, JSON text), by file name.
    public static var bundledFiles: [(name: String, json: String)] { BundledCatalogs.files }

    /// The shipped catalogs, compiled.
    public static func loadBundled() throws(CatalogLoadError) -> [CompiledCatalog] {
        try bundled(overriddenBy: [])
    }

    /// The shipped catalogs, then those of `directory` (when given): a catalog of the directory
    /// replaces the shipped one of the same surface, or adds a surface.
    public static func load(overriding directory: URL?) throws(CatalogLoadError) -> [CompiledCatalog] {
        guard let directory else { return try loadBundled() }
        return try bundled(overriddenBy: loadDirectory(directory))
    }

    /// The shipped catalogs with `given` in place of those of the same surface (which are not
    /// compiled at all: compiling is most of a start-up's work), then the rest of `given`.
    static func bundled(overriddenBy given: [CompiledCatalog]) throws(CatalogLoadError) -> [CompiledCatalog] {
        var catalogs: [CompiledCatalog] = []
        for file in BundledCatalogs.files {
            let name = "(built-in) " + file.name
            let definition = try decode(Data(file.json.utf8), file: name)
            if let replacement = given.first(where: { $0.surface == definition.surface }) {
                catalogs.append(replacement)
            } else {
                catalogs.append(try compile(definition, file: name))
            }
        }
        return catalogs + given.filter { catalog in !catalogs.contains { $0 === catalog } }
    }

    /// `$CAREGATE_CATALOGS`, when set: a directory of catalogs that add to or override the shipped ones.
    public static func configuredDirectory() -> URL? {
        ProcessInfo.processInfo.environment["CAREGATE_CATALOGS"].flatMap { $0.isEmpty ? nil : URL(fileURLWithPath: $0) }
    }

    static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
                .trimmingCharacters(in: CharacterSet(charactersIn: "."))
        }
        switch error {
        case .dataCorrupted(let c): return "\(path(c).isEmpty ? "" : path(c) + ": ")\(c.debugDescription)"
        case .keyNotFound(let key, let c): return "\(path(c).isEmpty ? "" : path(c) + ": ")missing key \"\(key.stringValue)\""
        case .typeMismatch(let type, let c): return "\(path(c)): expected \(type)"
        case .valueNotFound(let type, let c): return "\(path(c)): expected \(type), found null"
        @unknown default: return "\(error)"
        }
    }
}

/// A catalog file that could not be loaded, with every problem found.
public struct CatalogLoadError: Error, Sendable, CustomStringConvertible {
    public var file: String
    public var problems: [String]

    public init(file: String, problems: [String]) {
        self.file = file
        self.problems = problems
    }

    public var description: String {
        "\(file): \(problems.count) problem\(problems.count == 1 ? "" : "s")\n" + problems.map { "  - \($0)" }.joined(separator: "\n")
    }
}
