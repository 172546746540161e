#!/bin/sh
# Regenerate echo.pb-c.{c,h} from echo.proto (protobuf-c-compiler). The
# generated files are committed so the rill programs build without it.
set -e
cd "$(dirname "$0")"
protoc-c --proto_path=. --c_out=. echo.proto
