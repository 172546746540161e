#!/usr/bin/env bash
# RPC echo benchmark: rill against gRPC C++ (async unary echo), one server at
# a time, server and load client pinned to the same CPU (BENCHMARKING.md),
# peers alternating within each round (A B C D, A B C D, ...), medians and
# spread over the rounds, ratios against gRPC.
#
#   bench/rpc/run.sh [options]
#     -r, --rounds N     rounds (default 3)
#     -t, --duration S   measured seconds per cell (default 5)
#     -w, --warmup S     unmeasured seconds before each cell (default 1)
#     -q, --quick        smoke test: 1 round, 1 s cells, 0.3 s warm-up
#         --peers LIST   subset of grpc,rill,rill-pb (default: all)
#         --cells LIST   subset of 64x1,64x50,16384x1,16384x50 (payload x calls in flight)
#         --cpu N        the CPU both processes are pinned to (default 0)
#         --out DIR      where results go (default build dir/bench/rpc/results/<time>)
#         --no-build     use the binaries already built
#         --profile callgrind  instead of timing: each server under callgrind, user-space
#                        instructions per call (idle start-up subtracted) and its top
#                        functions; repeatable whatever the machine's load
#   RILL_BUILD_DIR       build directory (default build/bench-rpc, Release)
#
# Peers (every one: one connection, N calls in flight on it):
#   grpc        grpc_echo_server / grpc_echo_client (C++, completion queues)
#   rill        rill_rpc_echo_server / rill_rpc_load: raw payload calls
#   rill-pb     the same over the protobuf-c stubs (rpc_protobuf.h), bench.Echo/Say
# (The rpc handlers flush once per read batch themselves, so the former
# rill+batch peer, a flush-consolidating stage in front, is gone.)
#
# Output: a Markdown table on stdout (also DIR/summary.md), every result line
# in DIR/results.txt, logs in DIR/logs. Exit status 1 when a cell failed or
# saw wrong answers.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${RILL_BUILD_DIR:-$root/build/bench-rpc}
bin=$build/bench/rpc
gbin=$bin/grpc

rounds=3 duration=5 warmup=1 cpu=0 do_build=1 out="" profile=""
peers="grpc,rill,rill-pb"
cells="64x1,64x50,16384x1,16384x50"

while [ $# -gt 0 ]; do
    case $1 in
    -r | --rounds) rounds=$2; shift ;;
    -t | --duration) duration=$2; shift ;;
    -w | --warmup) warmup=$2; shift ;;
    -q | --quick) rounds=1 duration=1 warmup=0.3 ;;
    --peers) peers=$2; shift ;;
    --cells) cells=$2; shift ;;
    --cpu) cpu=$2; shift ;;
    --out) out=$2; shift ;;
    --no-build) do_build=0 ;;
    --profile) profile=$2; shift ;;
    -h | --help) sed -n '2,31p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

build_all() {
    cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DRILL_BUILD_TESTS=OFF \
        -DRILL_BUILD_EXAMPLES=OFF >/dev/null
    cmake --build "$build" --target rill_rpc_echo_server rill_rpc_load >/dev/null
    # gRPC C++: generated code and g++, rebuilt only when a source changed.
    mkdir -p "$gbin"
    local srcs=("$here/echo.proto" "$here/grpc_echo_server.cc" "$here/grpc_echo_client.cc"
        "$here/bench_common.h") stale=0 s
    for s in "${srcs[@]}"; do
        [ "$s" -nt "$gbin/grpc_echo_client" ] && stale=1
    done
    [ -x "$gbin/grpc_echo_server" ] && [ -x "$gbin/grpc_echo_client" ] && [ $stale = 0 ] && return 0
    echo "run.sh: building the gRPC peer (about a minute)" >&2
    protoc --proto_path="$here" --cpp_out="$gbin" --grpc_out="$gbin" \
        --plugin=protoc-gen-grpc="$(command -v grpc_cpp_plugin)" "$here/echo.proto"
    local flags
    flags=$(pkg-config --cflags --libs grpc++ protobuf)
    # shellcheck disable=SC2086
    g++ -O2 -std=c++17 -I"$gbin" -I"$here" -c "$gbin/echo.pb.cc" -o "$gbin/echo.pb.o" $flags
    # shellcheck disable=SC2086
    g++ -O2 -std=c++17 -I"$gbin" -I"$here" -c "$gbin/echo.grpc.pb.cc" -o "$gbin/echo.grpc.pb.o" $flags
    for s in grpc_echo_server grpc_echo_client; do
        # shellcheck disable=SC2086
        g++ -O2 -std=c++17 -I"$gbin" -I"$here" -o "$gbin/$s" "$here/$s.cc" "$gbin/echo.pb.o" \
            "$gbin/echo.grpc.pb.o" $flags
    done
}

if [ $do_build = 1 ]; then
    build_all
fi
out=${out:-$bin/results/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out/logs"
: >"$out/results.txt"

server_cmd() {
    case $1 in
    grpc) echo "$gbin/grpc_echo_server 0" ;;
    rill | rill-pb) echo "$bin/rill_rpc_echo_server 0" ;;
    esac
}

client_cmd() {
    case $1 in
    grpc) echo "$gbin/grpc_echo_client" ;;
    rill) echo "$bin/rill_rpc_load" ;;
    rill-pb) echo "$bin/rill_rpc_load --pb" ;;
    esac
}

server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT

start_server() { # start_server peer log [prefix command...] -> server_pid, port
    local i peer=$1 log=$2
    shift 2
    # shellcheck disable=SC2046
    taskset -c "$cpu" "$@" $(server_cmd "$peer") >"$log" 2>&1 &
    server_pid=$!
    port=""
    for ((i = 0; i < 600; i++)); do
        port=$(sed -n 's/^ready port=\([0-9]*\).*/\1/p' "$log" 2>/dev/null | head -n1)
        [ -n "$port" ] && return 0
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "run.sh: the $peer server did not become ready:" >&2
    sed 's/^/    /' "$log" >&2
    cleanup
    server_pid=""
    return 1
}

failed=0
IFS=, read -ra peer_list <<<"$peers"
IFS=, read -ra cell_list <<<"$cells"

cg_total() { # total instructions of a callgrind output file
    # awk reads to the end: an early exit would fail the pipe (pipefail).
    callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ && !n++ { gsub(",", "", $1); print $1 }'
}

if [ "$profile" = callgrind ]; then
    command -v valgrind >/dev/null || { echo "run.sh: valgrind is not installed" >&2; exit 2; }
    declare -A idle
    printf '%s\n' "| payload x in flight | peer | calls | server instructions per call |" \
        "| --- | --- | --- | --- |" | tee "$out/summary.md"
    for cell in "${cell_list[@]}"; do
        payload=${cell%x*} depth=${cell#*x}
        for peer in "${peer_list[@]}"; do
            log=$out/logs/cg-$peer-$cell
            key=$(server_cmd "$peer")
            if [ -z "${idle[$key]:-}" ]; then # start-up and shutdown alone
                start_server "$peer" "$log.idle" valgrind --tool=callgrind \
                    --callgrind-out-file="$out/cg-idle-$peer.out" || { failed=1; continue; }
                sleep 1
                cleanup
                idle[$key]=$(cg_total "$out/cg-idle-$peer.out")
            fi
            start_server "$peer" "$log.server" valgrind --tool=callgrind \
                --callgrind-out-file="$out/cg-$peer-$cell.out" || { failed=1; continue; }
            # shellcheck disable=SC2046
            line=$(taskset -c "$cpu" $(client_cmd "$peer") --port "$port" --payload "$payload" \
                --depth "$depth" --seconds "$duration" --warmup 0 2>"$log.client" |
                grep '^result ' || true)
            cleanup
            server_pid=""
            calls=$(sed -n 's/.* calls=\([0-9]*\).*/\1/p' <<<"$line")
            total=$(cg_total "$out/cg-$peer-$cell.out")
            if [ -z "$calls" ] || [ "$calls" = 0 ] || [ -z "$total" ]; then
                echo "run.sh: $peer $cell: no result (see $log.*)" >&2
                failed=1
                continue
            fi
            echo "| $cell | $peer | $calls | $(((total - idle[$key]) / calls)) |" |
                tee -a "$out/summary.md"
            callgrind_annotate "$out/cg-$peer-$cell.out" 2>/dev/null |
                sed -n '/file:function/,$p' | sed -n '1,22p' >"$out/cg-$peer-$cell.top.txt"
        done
    done
    echo "run.sh: top functions per cell in $out/cg-*.top.txt" >&2
    exit $failed
elif [ -n "$profile" ]; then
    echo "run.sh: --profile takes callgrind" >&2
    exit 2
fi
echo "run.sh: $rounds round(s), ${duration}s cells after ${warmup}s warm-up, cpu$cpu; load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for ((r = 1; r <= rounds; r++)); do
    for cell in "${cell_list[@]}"; do
        payload=${cell%x*} depth=${cell#*x}
        for peer in "${peer_list[@]}"; do
            log=$out/logs/$peer-$cell-r$r
            start_server "$peer" "$log.server" || { failed=1; continue; }
            # shellcheck disable=SC2046
            if ! line=$(taskset -c "$cpu" $(client_cmd "$peer") --port "$port" --payload "$payload" \
                --depth "$depth" --seconds "$duration" --warmup "$warmup" \
                --server-pid "$server_pid" 2>"$log.client" | grep '^result '); then
                echo "run.sh: $peer $cell round $r failed:" >&2
                sed 's/^/    /' "$log.client" >&2
                failed=1
            fi
            cleanup
            server_pid=""
            [ -n "$line" ] && echo "$line round=$r load=$(cut -d' ' -f1 /proc/loadavg)" >>"$out/results.txt"
            echo "  r$r $cell $peer: ${line#result }" >&2
            line=""
        done
    done
done

# ---- summary: medians over rounds, spread (max-min)/median of calls/s, ratios vs grpc ----
awk '
function kv(s,   k) { k = s; sub(/=.*/, "", k); return k }
function median(str,   a, n, i, j, t) {
    n = split(str, a, " ")
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
    return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
}
function spread(str,   a, n, i, lo, hi, m) {
    n = split(str, a, " "); lo = hi = a[1]
    for (i = 2; i <= n; i++) { if (a[i] + 0 < lo + 0) lo = a[i]; if (a[i] + 0 > hi + 0) hi = a[i] }
    m = median(str); return m > 0 ? 100 * (hi - lo) / m : 0
}
{
    delete f
    for (i = 2; i <= NF; i++) { k = kv($i); v = $i; sub(/^[^=]*=/, "", v); f[k] = v }
    key = f["payload"] "x" f["depth"] SUBSEP f["peer"]
    if (!(f["payload"] "x" f["depth"] in seen_cell)) { seen_cell[f["payload"] "x" f["depth"]] = 1; cells[++nc] = f["payload"] "x" f["depth"] }
    if (!(f["peer"] in seen_peer)) { seen_peer[f["peer"]] = 1; peers[++np] = f["peer"] }
    cps[key] = cps[key] " " f["cps"]; p50[key] = p50[key] " " f["p50_us"]
    p99[key] = p99[key] " " f["p99_us"]; cpu[key] = cpu[key] " " f["server_cpu_us_per_call"]
    n[key]++
}
END {
    print "| payload x in flight | peer | calls/s (median, spread) | p50 us | p99 us | server CPU us/call | calls/s vs grpc | p50 vs grpc |"
    print "| --- | --- | --- | --- | --- | --- | --- | --- |"
    for (c = 1; c <= nc; c++) {
        g = cells[c] SUBSEP "grpc"
        for (p = 1; p <= np; p++) {
            key = cells[c] SUBSEP peers[p]
            if (!(key in n)) continue
            m = median(cps[key]); l = median(p50[key])
            rc = (g in n) ? sprintf("%.2fx", m / median(cps[g])) : "-"
            rl = (g in n && median(p50[g]) > 0) ? sprintf("%.2fx", l / median(p50[g])) : "-"
            printf "| %s | %s | %.0f (%.1f%%, n=%d) | %.1f | %.1f | %.2f | %s | %s |\n", cells[c], peers[p], m, spread(cps[key]), n[key], l, median(p99[key]), median(cpu[key]), rc, rl
        }
    }
}' "$out/results.txt" | tee "$out/summary.md"
echo "run.sh: results in $out" >&2
exit $failed
