import Scopes

extension Dictionary where Key == String, Value == CompiledCatalog {
    /// The catalogs an app of `surface` uses: the marketplace surfaces (`/v1`, `/v3`) share
    /// apps, keys and scopes, so a marketplace app's scopes come from both.
    func catalogs(forAppSurface surface: String) -> [CompiledCatalog] {
        CredentialResolver.surfaces(ofApp: surface).compactMap { self[$0] }
    }
}
