// Placeholder: this package only exists to build protoc-gen-swift.
