// swift-tools-version:6.1
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "caregate",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Scopes", targets: ["Scopes"]),
        .library(name: "CaregateServer", targets: ["CaregateServer"]),
        .executable(name: "caregate", targets: ["caregate"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/vapor/sql-kit", from: "3.36.0"),
        .package(url: "https://github.com/vapor/sqlite-kit", from: "4.5.2"),
        .package(url: "https://github.com/vapor/postgres-kit", from: "2.17.0"),
        .package(url: "https://github.com/vapor/jwt-kit", from: "5.8.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.1.1"),
        // `swift package generate-documentation --target Scopes` (Sources/Scopes/Scopes.docc).
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        // The scope engine: grammar, catalogs, compiled scope sets, route table, decisions.
        // Standard library only, so that any Swift server can embed it.
        .target(name: "Scopes", swiftSettings: strict),
        // Storage: one SQLKit query layer over SQLite (default) and PostgreSQL, migrations in code.
        .target(
            name: "CaregateStore",
            dependencies: [
                .product(name: "SQLKit", package: "sql-kit"),
                .product(name: "SQLiteKit", package: "sqlite-kit"),
                .product(name: "PostgresKit", package: "postgres-kit"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "CaregateServer",
            dependencies: [
                "Scopes", "CaregateStore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Mustache", package: "swift-mustache"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "caregate",
            dependencies: [
                "Scopes", "CaregateServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        // A small upstream HTTP server for gateway tests and load runs: answers every request
        // with what reached it (method, path, query, headers, body length).
        .executableTarget(
            name: "caregate-echo-upstream",
            dependencies: [.product(name: "Hummingbird", package: "hummingbird"), .product(name: "Logging", package: "swift-log")],
            path: "Sources/EchoUpstream",
            swiftSettings: strict
        ),
        .testTarget(name: "ScopesTests", dependencies: ["Scopes"], exclude: ["Fixtures"], swiftSettings: strict),
        .testTarget(
            name: "CaregateServerTests",
            dependencies: [
                "Scopes", "CaregateServer", "CaregateStore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            exclude: ["Fixtures"],
            swiftSettings: strict
        ),
    ],
    swiftLanguageModes: [.v6]
)

// Benchmarks (ordo-one/benchmark) build only when asked for, so that the ordinary
// build and CI do not compile the benchmark harness:
//   CAREGATE_BENCHMARKS=1 swift package --allow-writing-to-package-directory benchmark
if Context.environment["CAREGATE_BENCHMARKS"] == "1" {
    package.dependencies.append(
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]))
    package.targets.append(
        .executableTarget(
            name: "ScopeEngine",
            dependencies: ["Scopes", .product(name: "Benchmark", package: "benchmark")],
            path: "Benchmarks/ScopeEngine",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]))
}
