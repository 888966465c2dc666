// swift-tools-version:6.1
//
// Microbenchmarks of the storage engines' hot paths (ordo-one/benchmark), kept in their own
// package so the main build and `swift test` never build the benchmark harness.
//
//   cd Benchmarks && swift package benchmark
//   cd Benchmarks && swift package benchmark baseline update main      # then, after a change:
//   cd Benchmarks && swift package benchmark baseline compare main
import PackageDescription

let package = Package(
    name: "KeelBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "Keel", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark.git", exact: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "StorageBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "KeelBolt", package: "Keel"),
                .product(name: "KeelBackend", package: "Keel"),
                .product(name: "KeelLMDB", package: "Keel"),
            ],
            path: "StorageBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
