#!/usr/bin/env bash
# Checks that the echo harness notices broken servers instead of reporting
# their figures:
#   - a server that flips one byte in every 100th write: errors counted, exit 1
#     (raw and framed)
#   - a server that stops answering (SIGSTOP): no response, exit 1
#   - nothing listening: "connect ... failed: Connection refused", exit 2
#   - a healthy server: errors=0, exit 0 (raw and framed, every server built)
#   - the malloc counter: the epoll server allocates nothing per request;
#     libevent (when built) allocates something, so the counter does count
#
#   bench/echo/selftest.sh [DIR with echo_loadgen and the servers]
set -euo pipefail
dir=${1:-$(cd "$(dirname "$0")/../.." && pwd)/build/bench-echo/bench/echo}
tmp=$(mktemp -d)
pid=""
cleanup() {
    if [ -n "$pid" ]; then
        kill -CONT "$pid" 2>/dev/null || true
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
fails=0

start_env=()
start() { # start server-binary mode [options...]; sets pid and port; start_env: VAR=value...
    local prog=$1 i
    shift
    env "${start_env[@]}" "$dir/$prog" 0 "$@" >"$tmp/ready" 2>"$tmp/server.err" &
    pid=$!
    for ((i = 0; i < 400; i++)); do # a JVM takes a second or so
        grep -q '^ready ' "$tmp/ready" && break
        sleep 0.05
    done
    port=$(sed -n 's/^ready port=\([0-9]*\).*/\1/p' "$tmp/ready")
    [ -n "$port" ] || { echo "selftest: $prog did not start"; cat "$tmp/server.err"; exit 1; }
}

stop() {
    kill -CONT "$pid" 2>/dev/null || true
    kill -TERM "$pid"
    wait "$pid" || { echo "FAIL: server exited with $? on SIGTERM"; fails=$((fails + 1)); }
    pid=""
}

check() { # check "what" expected-exit grep-pattern -- loadgen args...
    local what=$1 want=$2 pat=$3 rc=0
    shift 4
    "$dir/echo_loadgen" "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
    if [ "$rc" = "$want" ] && grep -Eq "$pat" "$tmp/out" "$tmp/err"; then
        echo "ok:   $what (exit $rc; $(grep -Eo "$pat" "$tmp/out" "$tmp/err" | head -n1 | cut -d: -f2-))"
    else
        echo "FAIL: $what: exit $rc (wanted $want), pattern '$pat'"
        sed 's/^/    /' "$tmp/out" "$tmp/err"
        fails=$((fails + 1))
    fi
}

for mode in raw framed; do
    start echo_server_epoll "$mode" --corrupt=100
    check "corrupting server, $mode" 1 'errors=[1-9][0-9]*' -- -p "$port" -m "$mode" -t 0.5 -w 0
    stop
done

start echo_server_epoll raw
kill -STOP "$pid"
check "stopped server" 1 'no response completed' -- -p "$port" -t 0.5 -w 0
stop
check "nothing listening" 2 'failed: Connection refused' -- -p "$port" -t 0.5 -w 0

for prog in echo_server_epoll echo_server_libevent echo_server_libuv echo_server_netty; do
    [ -x "$dir/$prog" ] || { echo "skip: $prog not built"; continue; }
    for mode in raw framed; do
        start "$prog" "$mode"
        check "$prog $mode, pipelined" 0 'errors=0 failed_conns=0' -- -p "$port" -m "$mode" -t 0.3 -w 0
        check "$prog $mode, 64 KiB" 0 'errors=0 failed_conns=0' -- -p "$port" -m "$mode" -c 4 -d 2 -s 65536 -t 0.3 -w 0
        check "$prog $mode, odd size" 0 'errors=0 failed_conns=0' -- -p "$port" -m "$mode" -c 3 -d 5 -s 70001 -t 0.3 -w 0
        stop
    done
done

if [ -f "$dir/libecho_malloc_count.so" ]; then
    for prog in echo_server_epoll echo_server_libevent; do
        [ -x "$dir/$prog" ] || continue
        mc=$tmp/$prog.mc
        start_env=("ECHO_MALLOC_COUNT_FILE=$mc" "LD_PRELOAD=$dir/libecho_malloc_count.so")
        start "$prog" framed
        start_env=()
        want='srv_allocs_req=0\.0000'
        [ "$prog" = echo_server_libevent ] && want='srv_allocs_req=(0\.[0-9]*[1-9]|[1-9])[0-9.]*'
        check "malloc counter, $prog" 0 "$want" -- -p "$port" -m framed -t 0.3 -w 0.1 --malloc-stats "$mc"
        stop
    done
fi

if [ "$fails" != 0 ]; then
    echo "selftest: $fails check(s) failed"
    exit 1
fi
echo "selftest: all checks passed"
