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
    ],
    targets: [
        // The scope engine: grammar, catalogs, compiled scope sets, route table, decisions.
        // Standard library only, so that any Swift server can embed it.
        .target(name: "Scopes", swiftSettings: strict),
        .target(name: "CaregateServer", dependencies: ["Scopes"], swiftSettings: strict),
        .executableTarget(
            name: "caregate",
            dependencies: [
                "Scopes", "CaregateServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        .testTarget(name: "ScopesTests", dependencies: ["Scopes"], swiftSettings: strict),
        .testTarget(name: "CaregateServerTests", dependencies: ["Scopes", "CaregateServer"], swiftSettings: strict),
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
            dependencies: ["Scopes", "CaregateServer", .product(name: "Benchmark", package: "benchmark")],
            path: "Benchmarks/ScopeEngine",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]))
}
