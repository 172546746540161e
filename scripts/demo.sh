#!/usr/bin/env bash
# Set up, build (Release) and run the demo (the README's demo command):
# the foundation demo (loops, buffers, timers, promises), then the echo
# example: echo_server on a free loopback port and echo_client against it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DRILL_BUILD_TESTS=OFF \
    -DRILL_BUILD_BENCH=OFF >/dev/null
cmake --build build/release --target demo echo_server echo_client

echo "== foundation demo"
build/release/examples/demo

echo "== echo: examples/echo_server + examples/echo_client on 127.0.0.1"
log=$(mktemp)
build/release/examples/echo_server --port 0 --mode raw >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 100); do
    grep -q '^ready ' "$log" && break
    sleep 0.05
done
port=$(sed -n 's/^ready port=\([0-9]*\).*/\1/p' "$log")
[ -n "$port" ] || { echo "demo: echo_server did not start:" >&2; cat "$log" >&2; exit 1; }
cat "$log"
build/release/examples/echo_client --uri "tcp://127.0.0.1:$port" --count 5 --size 64
kill -TERM "$server"
wait "$server"
echo "== echo_server exited cleanly"
