import ArgumentParser
import CaregateServer
import Foundation
import Scopes

@main
struct Caregate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "caregate",
        abstract: "Scope-based permission system for healthcare partner APIs.",
        subcommands: [ScopesCommand.self, CheckCommand.self])
}

/// Where to find catalogs, shared by the commands.
struct CatalogOptions: ParsableArguments {
    @Option(name: .customLong("catalogs"), help: "Catalog directory (default: $CAREGATE_CATALOGS, ./Catalogs, or the repository's Catalogs/).")
    var directory: String?

    func load() throws -> [CompiledCatalog] {
        guard let url = directory.map({ URL(fileURLWithPath: $0) }) ?? CatalogLoader.defaultDirectory() else {
            throw ValidationError("no catalog directory found; pass --catalogs DIR or set CAREGATE_CATALOGS")
        }
        return try CatalogLoader.loadDirectory(url)
    }

    func load(surface: String) throws -> CompiledCatalog {
        let catalogs = try load()
        guard let catalog = catalogs.first(where: { $0.surface == surface }) else {
            throw ValidationError("unknown surface \"\(surface)\"; known: \(catalogs.map(\.surface).joined(separator: ", "))")
        }
        return catalog
    }
}

struct ScopesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scopes", abstract: "List or validate scope catalogs.",
        subcommands: [List.self, Validate.self], defaultSubcommand: List.self)

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List a catalog's scopes (name, category, credential types, endpoints).")
        @OptionGroup var catalogs: CatalogOptions
        @Option(help: "Surface to list (default: every catalog).") var surface: String?
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            let selected = try surface.map { [try catalogs.load(surface: $0)] } ?? catalogs.load()
            let reports = selected.map(CatalogReport.init)
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                let data = surface == nil ? try encoder.encode(reports) : try encoder.encode(reports[0])
                print(String(decoding: data, as: UTF8.self))
            } else {
                print(reports.map(\.text).joined(separator: "\n"))
            }
        }
    }

    struct Validate: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Validate catalog files; exit 1 when any has a problem.")
        @Argument(help: "Catalog files.") var files: [String]

        func run() throws {
            var failed = false
            for file in files {
                do {
                    let catalog = try CatalogLoader.load(file: URL(fileURLWithPath: file))
                    let s = catalog.stats
                    print("ok  \(file): \(catalog.surface), \(s.scopes) scopes, \(catalog.routes.count) routes, \(catalog.atomCount)/\(ScopeSet.capacity) permission atoms")
                } catch {
                    failed = true
                    print("bad \(error)")
                }
            }
            if failed { throw ExitCode(1) }
        }
    }
}

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "May this scope set call this route? Prints allow or deny with the reason; exit 0 (allow), 1 (deny), 2 (bad input).")
    @OptionGroup var catalogs: CatalogOptions
    @Option(help: "Surface (catalog) to check against.") var surface: String
    @Option(help: "Space-separated scopes the credential holds.") var scopes: String
    @Option(help: "Credential type: api_key, oauth2, service_key, smart_on_fhir (default: no restriction).")
    var credentialType: String?
    @Argument(help: "HTTP method.") var method: String
    @Argument(help: "Request path, with the query if any (/v3/notes?includeSoapNote=true).") var path: String

    func run() throws {
        let catalog = try catalogs.load(surface: surface)
        var type: CredentialType?
        if let credentialType {
            guard let t = CredentialType(rawValue: credentialType) else {
                throw ValidationError("unknown credential type \"\(credentialType)\"")
            }
            type = t
        }
        let set: ScopeSet
        do {
            set = try catalog.resolve(scopes, credentialType: type)
        } catch {
            print("error: \(error)")
            throw ExitCode(2)
        }
        let effective = catalog.applyingDependencies(type.map { catalog.restricted(set, to: $0) } ?? set)
        let explanation = catalog.explain(effective, method: method.uppercased() == method ? method : method.uppercased(), target: path)
        if explanation.decision.isAllowed {
            print("allow: \(explanation.reason)")
        } else {
            if case .insufficientScope(_, let required) = explanation.decision {
                print("deny: Insufficient scope. Required: \(required)")
            } else {
                print("deny")
            }
            print("reason: \(explanation.reason)")
            throw ExitCode(1)
        }
    }
}
