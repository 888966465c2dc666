#!/usr/bin/env bash
# Regenerates Sources/KeelGRPC from Protos/grpc with Debian's protoc, grpc-swift-protobuf's
# plugin (the service stubs) and swift-protobuf's plugin (the health messages). The etcd
# messages come from KeelProto (tools/gen-proto.sh). Run it only when a .proto changes; the
# generated Swift is committed.
#   needs: apt-get install protobuf-compiler
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --package-path tools/protoc-plugins --product protoc-gen-swift
swift build -c release --package-path tools/protoc-plugins --product protoc-gen-grpc-swift-2
bin=tools/protoc-plugins/.build/release
mappings=$(mktemp)
cat > "$mappings" <<'MAP'
mapping {
  module_name: "KeelProto"
  proto_file_path: "etcd/etcdserverpb/rpc.proto"
  proto_file_path: "etcd/mvccpb/kv.proto"
  proto_file_path: "etcd/authpb/auth.proto"
}
MAP
mkdir -p Sources/KeelGRPC && rm -f Sources/KeelGRPC/*.pb.swift Sources/KeelGRPC/*.grpc.swift
protoc -I Protos -I Protos/grpc --plugin=protoc-gen-swift="$bin/protoc-gen-swift" \
  --swift_out=Sources/KeelGRPC --swift_opt=Visibility=Public,FileNaming=PathToUnderscores \
  health/health.proto
protoc -I Protos -I Protos/grpc --plugin=protoc-gen-grpc-swift="$bin/protoc-gen-grpc-swift-2" \
  --grpc-swift_out=Sources/KeelGRPC \
  --grpc-swift_opt=Visibility=Public,FileNaming=PathToUnderscores,ProtoPathModuleMappings="$mappings" \
  etcdserverpb/rpc_services.proto health/health.proto
rm -f "$mappings"
echo "generated: $(ls Sources/KeelGRPC/*.swift | wc -l) files"
