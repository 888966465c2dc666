#!/usr/bin/env bash
# Regenerates Sources/KeelProto from Protos/ with Debian's protoc and swift-protobuf's plugin.
# Run it only when a .proto changes; the generated Swift is committed.
#   needs: apt-get install protobuf-compiler
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --package-path tools/protoc-plugins --product protoc-gen-swift
plugin=tools/protoc-plugins/.build/release/protoc-gen-swift
mkdir -p Sources/KeelProto && rm -f Sources/KeelProto/*.pb.swift
protoc -I Protos --plugin=protoc-gen-swift="$plugin" \
  --swift_out=Sources/KeelProto --swift_opt=Visibility=Public,FileNaming=PathToUnderscores \
  $(cd Protos && find etcd -name '*.proto' | sort)
echo "generated: $(ls Sources/KeelProto/*.pb.swift | wc -l) files"
