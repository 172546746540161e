#!/usr/bin/env bash
# Set up, build (Release) and run the demo (the README's demo command).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DRILL_BUILD_TESTS=OFF >/dev/null
cmake --build build/release --target demo
exec build/release/examples/demo "$@"
