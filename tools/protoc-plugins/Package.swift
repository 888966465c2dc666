// swift-tools-version:6.1
// Builds the protoc plugin Keel's generated code comes from (tools/gen-proto.sh). Never part of
// the main build.
import PackageDescription

let package = Package(
    name: "protoc-plugins",
    dependencies: [
        .package(url: "https://github.com/apple/swift-protobuf.git", exact: "1.39.0"),
    ],
    targets: [.target(name: "Dummy")]
)
