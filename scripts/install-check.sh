#!/usr/bin/env bash
# Install rill into a temporary prefix and build two consumers against it:
# one through find_package(rill), one through pkg-config (rill.pc).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cmake -S . -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DRILL_BUILD_TESTS=OFF \
    -DRILL_BUILD_EXAMPLES=OFF -DRILL_BUILD_BENCH=OFF -DCMAKE_INSTALL_PREFIX="$work/prefix" >/dev/null
cmake --build "$work/build"
cmake --install "$work/build" >/dev/null

cmake -S tests/install -B "$work/consumer" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/consumer"
LD_LIBRARY_PATH="$work/prefix/lib" "$work/consumer/consumer_shared"
"$work/consumer/consumer_static"

export PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig"
# shellcheck disable=SC2046
cc -std=gnu11 -o "$work/consumer_pc" tests/install/consumer.c $(pkg-config --cflags --libs rill)
LD_LIBRARY_PATH="$work/prefix/lib" "$work/consumer_pc"
echo "install-check: find_package(rill) and pkg-config rill both work"
