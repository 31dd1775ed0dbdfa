/// The scopes of SMART App Launch 2.2 that name no resource: identity (`openid`, `fhirUser`),
/// launch context (`launch`, `launch/patient`, `launch/encounter`) and refresh
/// (`offline_access`, `online_access`). A catalog with SMART resource scopes accepts them
/// whether or not it lists them as entries; listed ones keep their entry's meaning.
public enum SMARTContextScopes {
    /// Each scope, and the catalog entry it is another spelling of (`launch` is seed 003's
    /// `launch-ehr`), if any.
    public static let meaning: [String: String?] = [
        "openid": nil, "fhirUser": nil, "launch": "launch-ehr", "launch/patient": nil, "launch/encounter": nil,
        "offline_access": nil, "online_access": nil,
    ]

    /// Whether `name` is one of them.
    public static func contains(_ name: String) -> Bool { meaning[name] != nil }
}
