// swift-tools-version:6.1
//
// Keel: an etcd-compatible key/value store built on its own bbolt-format storage engine.
// Targets follow the layers in ../shared/ARCHITECTURE.md; dependencies point down only.
import PackageDescription

let package = Package(
    name: "Keel",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "KeelIO", targets: ["KeelIO"]),
        .library(name: "KeelBolt", targets: ["KeelBolt"]),
        .library(name: "KeelLMDB", targets: ["KeelLMDB"]),
        .library(name: "KeelBackend", targets: ["KeelBackend"]),
        .library(name: "KeelProto", targets: ["KeelProto"]),
        .library(name: "KeelWAL", targets: ["KeelWAL"]),
        .library(name: "KeelMVCC", targets: ["KeelMVCC"]),
        .library(name: "KeelRaft", targets: ["KeelRaft"]),
        .library(name: "KeelRaftSim", targets: ["KeelRaftSim"]),
        .library(name: "KeelNode", targets: ["KeelNode"]),
        .library(name: "KeelGRPC", targets: ["KeelGRPC"]),
        .library(name: "KeelServer", targets: ["KeelServer"]),
        .executable(name: "keel", targets: ["keel"]),
        .executable(name: "keelutl", targets: ["keelutl"]),
        // Benchmarks only: LD_PRELOAD it to count allocations (`keelutl bench raft` reports them).
        .library(name: "KeelMallocCount", type: .dynamic, targets: ["CKeelMallocCount"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", exact: "1.8.2"),
        .package(url: "https://github.com/apple/swift-protobuf.git", exact: "1.39.0"),
        .package(url: "https://github.com/grpc/grpc-swift-2.git", exact: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", exact: "2.4.1"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", exact: "2.9.2"),
        .package(url: "https://github.com/apple/swift-nio.git", exact: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", exact: "1.46.0"),
        .package(url: "https://github.com/apple/swift-log.git", exact: "1.16.2"),
    ],
    targets: [
        // Tiny C: _GNU_SOURCE syscalls Glibc does not export, and the SSE4.2 CRC-32C instruction.
        .target(name: "CKeelShims", linkerSettings: [.linkedLibrary("crypt")]),
        // The only target that calls the OS for files.
        .target(name: "KeelIO", dependencies: ["CKeelShims"]),
        // The bbolt-format copy-on-write B+tree file.
        .target(name: "KeelBolt", dependencies: ["KeelIO", "CKeelShims"]),
        // LMDB (Debian liblmdb-dev) as a system library.
        .systemLibrary(name: "CLMDB", path: "Sources/CLMDB", pkgConfig: "lmdb", providers: [.apt(["liblmdb-dev"])]),
        // bbolt-like buckets over LMDB named databases.
        .target(name: "KeelLMDB", dependencies: ["CLMDB", "KeelIO"]),
        // The storage protocol the MVCC layer sees, its conformances and the cross-check.
        .target(name: "KeelBackend", dependencies: ["KeelBolt", "KeelLMDB", "KeelIO"]),
        // etcd's wire and disk messages, generated once by tools/gen-proto.sh and committed.
        .target(name: "KeelProto", dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        // etcd's write-ahead log and .snap files.
        .target(name: "KeelWAL", dependencies: ["KeelIO", "KeelProto", .product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        // etcd's revision-keyed store on a Backend, in etcd's schema. No Raft, no gRPC.
        .target(name: "KeelMVCC", dependencies: ["KeelBackend", "KeelProto", "KeelIO",
                                                 .product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        // Raft as a pure state machine (no clocks, threads, sockets or files).
        .target(name: "KeelRaft", dependencies: ["KeelProto", .product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        // A seeded in-process cluster checking Raft's safety properties (tests and `keelutl raft-sim`).
        .target(name: "KeelRaftSim", dependencies: ["KeelRaft", "KeelIO"]),
        // The raft node driver: KeelRaft + etcd's WAL + KeelMVCC, no gRPC or NIO (the server's core).
        .target(name: "KeelNode", dependencies: ["KeelRaft", "KeelWAL", "KeelMVCC", "KeelBackend", "KeelBolt", "KeelIO", "KeelProto",
                                                 .product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        // etcd's v3 gRPC service stubs and grpc.health.v1, generated once by tools/gen-grpc.sh and
        // committed. Only the server links it; storage, MVCC, Raft and keelutl never do.
        .target(name: "KeelGRPC", dependencies: ["KeelProto",
                                                 .product(name: "GRPCCore", package: "grpc-swift-2"),
                                                 .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                                                 .product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        // The etcd v3 server: gRPC services over KeelNode, HTTP endpoints, configuration.
        .target(name: "KeelServer", dependencies: ["KeelNode", "KeelGRPC", "KeelMVCC", "KeelProto", "KeelRaft", "KeelIO", "KeelBackend",
                                                   .product(name: "GRPCCore", package: "grpc-swift-2"),
                                                   .product(name: "NIOCore", package: "swift-nio"),
                                                   .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                                                   .product(name: "NIOHPACK", package: "swift-nio-http2"),
                                                   .product(name: "Logging", package: "swift-log"),
                                                   .product(name: "NIOPosix", package: "swift-nio"),
                                                   .product(name: "NIOHTTP1", package: "swift-nio"),
                                                   .product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        // The server executable (`keel`) and its client commands (`keel bench`).
        .executableTarget(name: "keel", dependencies: ["KeelServer", "KeelGRPC", "KeelProto",
                                                      .product(name: "GRPCCore", package: "grpc-swift-2"),
                                                      .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport")]),
        // The fdatasync latency profiler.
        .target(name: "KeelDiskProfiler", dependencies: ["KeelIO"]),
        // Offline inspection behind `keelutl` (bbolt files, etcd schema, WAL and snap files).
        .target(name: "KeelInspect", dependencies: ["KeelBolt", "KeelWAL", "KeelProto", "KeelIO",
                                                    .product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        // Fuzz target bodies (shared by the libFuzzer executables and the corpus replay test).
        .target(name: "KeelFuzz", dependencies: ["KeelBolt", "KeelWAL", "KeelIO"]),
        .executableTarget(name: "FuzzBoltFile", dependencies: ["KeelFuzz"]),
        .executableTarget(name: "FuzzWALSegment", dependencies: ["KeelFuzz"]),
        // An allocation counter loaded with LD_PRELOAD by the benchmarks; nothing links it.
        .target(name: "CKeelMallocCount"),
        // The `keelutl bench` workloads.
        .target(name: "KeelBench", dependencies: ["KeelBackend", "KeelBolt", "KeelIO", "KeelWAL", "KeelMVCC", "KeelProto", "KeelRaft"]),
        // Offline tools. Never links gRPC or NIO, so its release build stays quick.
        .executableTarget(name: "keelutl", dependencies: [
            "KeelBolt", "KeelIO", "KeelBench", "KeelWAL", "KeelDiskProfiler", "KeelInspect", "KeelBackend", "KeelLMDB", "KeelProto", "KeelMVCC", "KeelRaft", "KeelRaftSim", "KeelNode",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // Helpers shared by the test targets (temporary directories, seeds, Go interop programs).
        .target(name: "KeelTestSupport", path: "Sources/KeelTestSupport"),
        .testTarget(name: "KeelIOTests", dependencies: ["KeelIO"]),
        .testTarget(name: "KeelBoltTests", dependencies: ["KeelBolt", "KeelIO", "KeelTestSupport"]),
        .testTarget(name: "KeelWALTests", dependencies: ["KeelWAL", "KeelProto", "KeelIO", "KeelDiskProfiler", "KeelTestSupport"]),
        .testTarget(name: "KeelInspectTests", dependencies: ["KeelInspect", "KeelBolt", "KeelIO", "KeelTestSupport", "KeelFuzz"]),
        .testTarget(name: "KeelRaftTests", dependencies: ["KeelRaft", "KeelRaftSim", "KeelProto", "KeelIO", "KeelTestSupport"]),
        .testTarget(name: "KeelGRPCTests", dependencies: ["KeelGRPC", .product(name: "GRPCCore", package: "grpc-swift-2")]),
        .testTarget(name: "KeelServerTests", dependencies: ["KeelServer", "KeelGRPC", "KeelProto", "KeelIO", "KeelTestSupport",
                                                            .product(name: "GRPCCore", package: "grpc-swift-2"),
                                                            .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                                                            .product(name: "NIOCore", package: "swift-nio"),
                                                            .product(name: "NIOPosix", package: "swift-nio"),
                                                            .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                                                            .product(name: "NIOHPACK", package: "swift-nio-http2"),
                                                            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                                                            .product(name: "Logging", package: "swift-log"),
                                                            .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport")]),
        .testTarget(name: "KeelNodeTests", dependencies: ["KeelNode", "KeelMVCC", "KeelProto", "KeelWAL", "KeelIO", "KeelTestSupport"]),
        .testTarget(name: "KeelMVCCTests", dependencies: ["KeelMVCC", "KeelBackend", "KeelBolt", "KeelLMDB", "KeelProto", "KeelIO", "KeelTestSupport"]),
        .testTarget(name: "KeelBackendTests", dependencies: ["KeelBackend", "KeelBench", "KeelBolt", "KeelLMDB", "KeelIO", "KeelTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
