#!/usr/bin/env bash
# Set up, build (Release) and run the demo (the README's demo command):
# the foundation demo (loops, buffers, timers, promises), the echo example,
# then the protocols real clients speak: http_hello with curl, kv_server with
# redis-cli, and an RPC echo round.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DRILL_BUILD_TESTS=OFF \
    -DRILL_BUILD_BENCH=OFF >/dev/null
cmake --build build/release --target demo echo_server echo_client http_hello kv_server rpc_echo
ex=build/release/examples

servers=()
logs=()
cleanup() {
    for pid in "${servers[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -f "${logs[@]}"
}
trap cleanup EXIT

# start PATTERN cmd...: start a server, wait for its ready line (a sed
# pattern whose group 1 is the port) and set $port. Not in a subshell, so
# the server stays ours to stop.
start() {
    local pattern=$1
    shift
    local log
    log=$(mktemp)
    logs+=("$log")
    "$@" >"$log" 2>&1 &
    servers+=($!)
    for _ in $(seq 200); do
        port=$(sed -n "s/$pattern/\1/p" "$log" | head -1)
        [ -n "$port" ] && { cat "$log"; return 0; }
        sleep 0.05
    done
    echo "demo: $1 did not start:" >&2
    cat "$log" >&2
    return 1
}

stop_last() {
    local pid=${servers[-1]}
    kill -TERM "$pid"
    wait "$pid"
    unset 'servers[-1]'
}

echo "== foundation demo"
$ex/demo

echo "== echo: examples/echo_server + examples/echo_client on 127.0.0.1"
start '^ready port=\([0-9]*\).*' $ex/echo_server --port 0 --mode raw
$ex/echo_client --uri "tcp://127.0.0.1:$port" --count 5 --size 64
stop_last
echo "== echo_server exited cleanly"

echo "== HTTP/1.1: examples/http_hello with curl"
start '^http_hello: listening on http:\/\/[^:]*:\([0-9]*\)$' $ex/http_hello --port 0
curl -sS -i "http://127.0.0.1:$port/"
echo
curl -sS -H 'Transfer-Encoding: chunked' --data-binary 'posted through a chunked upload' \
    "http://127.0.0.1:$port/echo"
echo
stop_last
echo "== http_hello exited cleanly"

echo "== Redis RESP: examples/kv_server with redis-cli"
start '^kv_server: listening on [^:]*:\([0-9]*\)$' $ex/kv_server --port 0 --workers 2
cli() { echo "redis-cli $*"; redis-cli -p "$port" "$@"; }
cli SET greeting "hello from rill"
cli GET greeting
cli INCRBY counter 41
cli INCR counter
cli MSET a 1 b 2 c 3
cli MGET a b c greeting
cli SET ephemeral x PX 200
cli PTTL ephemeral
cli DBSIZE
stop_last
echo "== kv_server exited cleanly"

echo "== RPC: examples/rpc_echo (server and client in one process)"
$ex/rpc_echo demo
