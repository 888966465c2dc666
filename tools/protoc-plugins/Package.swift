// swift-tools-version:6.1
// Builds the protoc plugins Keel's generated code comes from (tools/gen-proto.sh for the
// messages, tools/gen-grpc.sh for the gRPC stubs). Never part of the main build.
import PackageDescription

let package = Package(
    name: "protoc-plugins",
    dependencies: [
        .package(url: "https://github.com/apple/swift-protobuf.git", exact: "1.39.0"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", exact: "2.4.1"),
    ],
    targets: [.target(name: "Dummy")]
)
