#!/bin/sh
# Regenerate pbtest.pb-c.{c,h} from pbtest.proto (protobuf-c-compiler).
# The generated files are committed so builds need no code generator.
set -e
cd "$(dirname "$0")"
protoc-c --proto_path=. --c_out=. pbtest.proto
