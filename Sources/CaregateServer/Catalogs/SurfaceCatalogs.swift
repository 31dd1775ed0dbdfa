import Scopes

extension Dictionary where Key == String, Value == CompiledCatalog {
    /// The catalogs an app of `surface` uses: the marketplace surfaces (`/v1`, `/v3`) share
    /// apps, keys and scopes, so a marketplace app's scopes come from both.
    func catalogs(forAppSurface surface: String) -> [CompiledCatalog] {
        surface.hasPrefix("marketplace-")
            ? ["marketplace-v3", "marketplace-v1"].compactMap { self[$0] }
            : [self[surface]].compactMap { $0 }
    }
}
