#!/bin/sh
# Regenerate gen/kv.pb-c.{c,h} from kv.proto (protobuf-c-compiler). They are
# committed (and kept out of the example's *.c glob by the gen/ directory).
set -e
cd "$(dirname "$0")"
protoc-c --proto_path=. --c_out=gen kv.proto
