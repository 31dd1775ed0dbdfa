public import Foundation

/// Gateway mode: a surface whose routes Caregate enforces and forwards to a service it does
/// not host. Given as `--upstream SURFACE=URL` or in a JSON file (`--gateway-config`):
///
///     {"upstreams": [{"surface": "practice-api", "url": "http://10.0.0.5:8000", "timeoutSeconds": 30, "maxBodyBytes": 16777216}]}
public struct UpstreamConfiguration: Sendable, Equatable, Decodable {
    public var surface: String
    /// `http(s)://host[:port][/base-path]`: the request's path and query are appended.
    public var url: String
    /// How long the upstream may take to answer with its status line and headers (504 after),
    /// and how long it may fall silent while a body streams (the answer is cut off after).
    public var timeoutSeconds: Double
    /// The largest request body forwarded (413 past it, before or while it streams).
    public var maxBodyBytes: Int64

    public static let defaultMaxBodyBytes: Int64 = 16 * 1024 * 1024

    public init(surface: String, url: String, timeoutSeconds: Double = 30, maxBodyBytes: Int64 = Self.defaultMaxBodyBytes) throws(GatewayConfigurationError) {
        self.surface = surface
        self.url = url
        self.timeoutSeconds = timeoutSeconds
        self.maxBodyBytes = maxBodyBytes
        try validate()
    }

    enum CodingKeys: String, CodingKey { case surface, url, timeoutSeconds, maxBodyBytes }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try self.init(
            surface: try c.decode(String.self, forKey: .surface), url: try c.decode(String.self, forKey: .url),
            timeoutSeconds: try c.decodeIfPresent(Double.self, forKey: .timeoutSeconds) ?? 30,
            maxBodyBytes: try c.decodeIfPresent(Int64.self, forKey: .maxBodyBytes) ?? Self.defaultMaxBodyBytes)
    }

    /// `SURFACE=URL`, as `--upstream` takes it.
    public init(argument: String) throws(GatewayConfigurationError) {
        guard let equals = argument.firstIndex(of: "=") else {
            throw GatewayConfigurationError("--upstream takes SURFACE=URL, got \"\(argument)\"")
        }
        try self.init(surface: String(argument[..<equals]), url: String(argument[argument.index(after: equals)...]))
    }

    /// A gateway configuration file: `{"upstreams": [...]}`.
    public static func load(file: URL) throws -> [UpstreamConfiguration] {
        struct File: Decodable { var upstreams: [UpstreamConfiguration] }
        let data: Data
        do { data = try Data(contentsOf: file) } catch {
            throw GatewayConfigurationError("cannot read \(file.path): \(error.localizedDescription)")
        }
        do {
            return try JSONDecoder().decode(File.self, from: data).upstreams
        } catch let error as GatewayConfigurationError {
            throw GatewayConfigurationError("\(file.path): \(error.description)")
        } catch {
            throw GatewayConfigurationError("\(file.path): not a gateway configuration ({\"upstreams\": [{\"surface\", \"url\", \"timeoutSeconds\"?, \"maxBodyBytes\"?}]}): \(error)")
        }
    }

    private func validate() throws(GatewayConfigurationError) {
        guard !surface.isEmpty else { throw GatewayConfigurationError("an upstream needs a surface") }
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(), scheme == "http" || scheme == "https",
              let host = components.host, !host.isEmpty, components.query == nil, components.fragment == nil, components.user == nil
        else {
            throw GatewayConfigurationError("upstream of \(surface): \"\(url)\" is not an http(s)://host[:port][/path] URL (no query, fragment or user)")
        }
        guard timeoutSeconds > 0, timeoutSeconds <= 3600 else {
            throw GatewayConfigurationError("upstream of \(surface): timeoutSeconds must be in (0, 3600]")
        }
        guard maxBodyBytes >= 1, maxBodyBytes <= 1 << 30 else {
            throw GatewayConfigurationError("upstream of \(surface): maxBodyBytes must be from 1 to 1073741824")
        }
    }

    /// The URL without a trailing slash, ready for a request path to be appended.
    var base: String { url.hasSuffix("/") ? String(url.dropLast()) : url }
}

public struct GatewayConfigurationError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
