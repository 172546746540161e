#!/usr/bin/env bash
# Echo benchmark matrix: every available server x three scenarios x raw/framed,
# one server at a time, server and load generator pinned to the same CPU,
# servers alternating within each round (A B C D, A B C D, ...), medians over
# the rounds and ratios against the hand-written epoll server.
#
#   bench/echo/run.sh [options]
#     -r, --rounds N        rounds (default 3)
#     -t, --duration S      measured seconds per cell (default 5)
#     -w, --warmup S        unmeasured seconds before each cell (default 1)
#     -q, --quick           smoke test: 1 round, 1 s cells, 0.5 s warm-up, short JIT warm-up
#         --servers LIST    comma-separated subset (default: all), e.g. epoll,libuv
#         --scenarios LIST  subset of pipelined,pingpong,bulk64k
#         --modes LIST      subset of raw,framed
#         --cpu N           the CPU both processes are pinned to (default 0)
#         --add-server SPEC one more server for this run, as "name|warm-up s|command"
#                           (same form as the SERVERS list below); may repeat
#         --max-other-load P  repeat a cell (up to --retries times, default 2) when other
#                           processes took more than P % of the pinned CPU (default 10);
#                           the attempt with the least other load is kept
#         --allocs          run C servers under libecho_malloc_count.so and report
#                           allocations per request (adds a little cost per malloc)
#         --out DIR         where results go (default build dir/bench/echo/results/<time>)
#         --no-build        use the binaries already built
#         --summary FILE    only print the table for an earlier run's results.txt
#   RILL_BUILD_DIR          build directory (default build/bench-echo, Release)
#
# Output: a Markdown table on stdout (also DIR/summary.md), every loadgen result
# line in DIR/results.txt, server logs in DIR/logs. Exit status 1 when any
# cell saw wrong responses, failed connections or a server that misbehaved.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${RILL_BUILD_DIR:-$root/build/bench-echo}
bin=$build/bench/echo

rounds=3 duration=5 warmup=1 cpu=0 quick=0 allocs=0 do_build=1 out=""
max_other=10 retries=2 summary_only=""
only_servers="" only_scenarios="" only_modes="raw,framed"

# ---- the servers: name | JIT warm-up seconds after start | command -------------
# {port} and {mode} are replaced; port 0 lets the kernel pick, the server's
# "ready port=N" line tells which. A server whose program is missing is skipped.
# The first entry is the baseline the ratios are computed against.
SERVERS=(
    "epoll|0|$bin/echo_server_epoll {port} {mode}"
    "rill|0|$build/examples/echo_server --port {port} --mode {mode}"
    "libevent|0|$bin/echo_server_libevent {port} {mode}"
    "libuv|0|$bin/echo_server_libuv {port} {mode}"
    "netty|10|$bin/echo_server_netty {port} {mode}"
)

# ---- the scenarios: name | connections | depth (requests in flight per connection) | payload bytes
SCENARIOS=(
    "pipelined|50|16|64"
    "pingpong|1|1|64"
    "bulk64k|8|1|65536"
)

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
    -r | --rounds) rounds=$2; shift ;;
    -t | --duration) duration=$2; shift ;;
    -w | --warmup) warmup=$2; shift ;;
    -q | --quick) quick=1 ;;
    --servers) only_servers=$2; shift ;;
    --scenarios) only_scenarios=$2; shift ;;
    --modes) only_modes=$2; shift ;;
    --cpu) cpu=$2; shift ;;
    --add-server) SERVERS+=("$2"); shift ;;
    --max-other-load) max_other=$2; shift ;;
    --retries) retries=$2; shift ;;
    --allocs) allocs=1 ;;
    --out) out=$2; shift ;;
    --no-build) do_build=0 ;;
    --summary) summary_only=$2; shift ;;
    -h | --help) usage ;;
    *) echo "run.sh: unknown option $1" >&2; usage ;;
    esac
    shift
done
jit_scale=1
if [ "$quick" = 1 ]; then
    rounds=1 duration=1 warmup=0.5 jit_scale=0.3
fi

in_list() { # in_list item comma-list (an empty list holds everything)
    [ -z "$2" ] && return 0
    case ",$2," in *",$1,"*) return 0 ;; esac
    return 1
}

# ---- summary: medians per cell, ratios against the first server ----
# Reads results.txt lines; servers, modes and scenarios keep the order in
# which they first appear (the run order), the first server is the baseline.
# Rounds in which other processes took more than $max_other % of the CPU are
# left out of a cell when the cell has undisturbed rounds.
summarize() { # summarize results-file allocs-column(0|1)
    awk -v allocs="$2" -v max_other="$max_other" '
function add(list, x) { if (!((list, x) in seen)) { seen[list, x] = 1; order[list, ++norder[list]] = x } }
function used(key, i) { return !clean[key] || ok[key, i] }
function median(key, m,    i, j, n, t, v) {
    n = 0
    for (i = 1; i <= cnt[key]; i++) if (used(key, i)) v[++n] = val[key, m, i]
    if (n == 0) return ""
    for (i = 2; i <= n; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] + 0 > t + 0; j--) v[j + 1] = v[j]; v[j + 1] = t }
    if (v[1] == "na") return "na"
    return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
function spread(key,    i, lo, hi, md, x, n) {
    md = median(key, "req_s")
    if (md + 0 == 0) return "-"
    n = 0
    for (i = 1; i <= cnt[key]; i++) {
        if (!used(key, i)) continue
        x = val[key, "req_s", i] + 0
        if (n++ == 0 || x < lo) lo = x
        if (n == 1 || x > hi) hi = x
    }
    return sprintf("%.1f%%", 100 * (hi - lo) / md)
}
function nused(key,    i, n) { n = 0; for (i = 1; i <= cnt[key]; i++) n += used(key, i); return n }
# Median over the rounds of (server / baseline) in the same round: a pair of
# runs minutes apart shares more of the machine state than two medians do.
function pratio(key, base, m,    i, j, n, t, v) {
    n = 0
    for (i = 1; i <= cnt[key]; i++) {
        if (!used(key, i)) continue
        for (j = 1; j <= cnt[base]; j++)
            if (used(base, j) && rnd[base, j] == rnd[key, i] && val[base, m, j] + 0 > 0 && val[key, m, i] != "na")
                v[++n] = val[key, m, i] / val[base, m, j]
    }
    if (n == 0) return ratio(median(key, m), median(base, m))
    for (i = 2; i <= n; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
    return sprintf("%.2fx", n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2)
}
function ratio(a, b) { return (a == "" || a == "na" || b == "" || b == "na" || b + 0 == 0) ? "-" : sprintf("%.2fx", a / b) }
function num(x, fmt) { return (x == "" || x == "na") ? "-" : sprintf(fmt, x) }
BEGIN { nm = split("req_s mb_s p50_us p99_us p999_us srv_cpu_us_req others_pct other_cpus_pct srv_allocs_req", ms, " ") }
{
    delete f
    for (i = 1; i <= NF; i++) { p = index($i, "="); f[substr($i, 1, p - 1)] = substr($i, p + 1) }
    add("s", f["server"]); add("m", f["mode"]); add("c", f["scenario"])
    key = f["scenario"] SUBSEP f["mode"] SUBSEP f["server"]
    n = ++cnt[key]
    for (i = 1; i <= nm; i++) val[key, ms[i], n] = f[ms[i]]
    rnd[key, n] = f["round"]
    ok[key, n] = f["others_pct"] == "na" || f["others_pct"] + 0 <= max_other + 0
    if (ok[key, n]) clean[key] = 1
    err[key] += f["errors"] + f["failed_conns"]
}
END {
    b = order["s", 1]
    printf "\n| scenario | mode | server | req/s | x %s | MB/s | p50 us | p99 us | p99.9 us | server CPU us/req | x %s | rounds | spread | other load | other CPUs | errors%s |\n", b, b, allocs ? " | allocs/req" : ""
    printf "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: %s|\n", allocs ? "| ---: " : ""
    for (c = 1; c <= norder["c"]; c++) for (m = 1; m <= norder["m"]; m++) {
        C = order["c", c]; M = order["m", m]
        base = C SUBSEP M SUBSEP b
        for (s = 1; s <= norder["s"]; s++) {
            S = order["s", s]
            key = C SUBSEP M SUBSEP S
            if (!cnt[key]) continue
            rps = median(key, "req_s"); cpu = median(key, "srv_cpu_us_req")
            printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d/%d | %s | %s | %s | %d%s |\n", C, M, S,
                num(rps, "%.0f"), pratio(key, base, "req_s"), num(median(key, "mb_s"), "%.1f"),
                num(median(key, "p50_us"), "%.1f"), num(median(key, "p99_us"), "%.1f"), num(median(key, "p999_us"), "%.1f"),
                num(cpu, "%.3f"), pratio(key, base, "srv_cpu_us_req"), nused(key), cnt[key], spread(key),
                num(median(key, "others_pct"), "%.0f%%"), num(median(key, "other_cpus_pct"), "%.0f%%"), err[key],
                allocs ? " | " num(median(key, "srv_allocs_req"), "%.3f") : ""
        }
    }
    print ""
    print "req/s, MB/s (payload echoed, one direction), latencies and CPU: medians over the rounds used."
    print "x " b ": ratio to the " b " server in the same cell and round, median over the rounds (for CPU,"
    print "below 1 is cheaper)."
    print "rounds: rounds used / run; a round in which other processes took more than " max_other "% of the pinned"
    print "CPU is left out when the cell has undisturbed rounds. spread: (max - min) / median of req/s over the"
    print "rounds used. other load: share of the pinned CPU taken by other processes; other CPUs: how busy the"
    print "other CPUs were (a busy sibling vCPU slows ours down); both medians. errors: wrong responses +"
    print "failed connections, summed over all rounds."
}' "$1"
}

if [ -n "$summary_only" ]; then
    summarize "$summary_only" "$(grep -q 'srv_allocs_req=[0-9]' "$summary_only" && echo 1 || echo 0)"
    exit 0
fi

# ---- build ----
# The peers (target bench_echo) must build; rill's echo server
# (examples/echo_server.c) may be mid-change in the shared tree, so a failure
# there only drops rill from this run.
if [ "$do_build" = 1 ]; then
    gen=()
    if [ ! -f "$build/CMakeCache.txt" ] && command -v ninja >/dev/null; then
        gen=(-G Ninja)
    fi
    cmake -S "$root" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
        -DRILL_BUILD_TESTS=OFF -DRILL_BUILD_EXAMPLES=ON >/dev/null
    cmake --build "$build" --target bench_echo >/dev/null
    if ! cmake --build "$build" --target echo_server >"$build/echo_server-build.log" 2>&1; then
        echo "run.sh: rill's echo_server did not build (see $build/echo_server-build.log)" >&2
        rm -f "$build/examples/echo_server" # so that rill is skipped, not run stale
    fi
fi
[ -x "$bin/echo_loadgen" ] || { echo "run.sh: $bin/echo_loadgen not built" >&2; exit 2; }
command -v taskset >/dev/null || { echo "run.sh: taskset (util-linux) is missing" >&2; exit 2; }

# ---- which servers run ----
names=() warms=() cmds=()
for entry in "${SERVERS[@]}"; do
    IFS='|' read -r name warm cmd <<<"$entry"
    in_list "$name" "$only_servers" || continue
    prog=${cmd%% *}
    if [ ! -x "$prog" ]; then
        echo "run.sh: skipping $name: $prog not built (see the cmake output for why)" >&2
        continue
    fi
    names+=("$name") warms+=("$warm") cmds+=("$cmd")
done
[ ${#names[@]} -gt 0 ] || { echo "run.sh: no server to run" >&2; exit 2; }
modes=()
for m in raw framed; do in_list "$m" "$only_modes" && modes+=("$m"); done
scen=()
for s in "${SCENARIOS[@]}"; do in_list "${s%%|*}" "$only_scenarios" && scen+=("$s"); done

out=${out:-$bin/results/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out/logs"
results=$out/results.txt
: >"$results"

# ---- nothing stays behind ----
server_pid="" loadgen_pid=""
cleanup() {
    [ -n "$loadgen_pid" ] && kill "$loadgen_pid" 2>/dev/null || true
    if [ -n "$server_pid" ]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        sleep 0.5
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    rm -f "$out"/*.mc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

status=0
failed_servers=","

start_server() { # start_server name cmd mode log -> sets server_pid, port
    local name=$1 cmd=$2 mode=$3 log=$4 prog pre=() i
    cmd=${cmd//\{port\}/0}
    cmd=${cmd//\{mode\}/$mode}
    prog=${cmd%% *}
    if [ "$allocs" = 1 ] && [ "$(head -c 4 "$prog" | od -An -c | tr -d ' ')" = '177ELF' ]; then
        pre=(env "LD_PRELOAD=$bin/libecho_malloc_count.so" "ECHO_MALLOC_COUNT_FILE=$out/$name.mc")
    fi
    # shellcheck disable=SC2086
    taskset -c "$cpu" "${pre[@]}" $cmd >"$log" 2>&1 &
    server_pid=$!
    port=""
    for ((i = 0; i < 600; i++)); do
        if grep -q '^ready ' "$log" 2>/dev/null; then
            port=$(sed -n 's/^ready port=\([0-9]*\).*/\1/p' "$log" | head -n1)
            return 0
        fi
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "run.sh: $name ($mode) did not become ready; its log:" >&2
    sed 's/^/    /' "$log" >&2
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
    return 1
}

stop_server() { # stop_server name mode
    local rc=0 i
    kill -TERM "$server_pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$server_pid" 2>/dev/null; then
        echo "run.sh: $1 ($2) ignored SIGTERM for 10 s; killed" >&2
        kill -KILL "$server_pid" 2>/dev/null || true
        status=1
    fi
    wait "$server_pid" 2>/dev/null || rc=$?
    if [ "$rc" != 0 ]; then
        echo "run.sh: $1 ($2) exited with status $rc" >&2
        status=1
    fi
    server_pid=""
}

loadgen() { # loadgen args... ; sets result_line (empty when there is none)
    local rc=0
    taskset -c "$cpu" "$bin/echo_loadgen" -q "$@" >"$out/loadgen.out" 2>"$out/loadgen.err" &
    loadgen_pid=$!
    wait "$loadgen_pid" || rc=$?
    loadgen_pid=""
    result_line=$(grep '^result ' "$out/loadgen.out" || true)
    if [ "$rc" != 0 ]; then
        echo "run.sh: loadgen exit $rc: $(tr '\n' ' ' <"$out/loadgen.err")" >&2
        status=1
    fi
}

echo "# echo benchmark, $(date '+%Y-%m-%d %H:%M'), $(uname -r), $(nproc) CPUs, pinned to cpu$cpu" | tee "$out/summary.md"
echo "# rounds $rounds x ${duration} s (+${warmup} s warm-up per cell); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/summary.md"
cells=$((${#names[@]} * ${#modes[@]} * ${#scen[@]}))
echo "run.sh: ${#names[@]} servers (${names[*]}), $cells cells per round, results in $out" >&2

for ((r = 1; r <= rounds; r++)); do
    for mode in "${modes[@]}"; do
        for ((k = 0; k < ${#names[@]}; k++)); do
            name=${names[k]}
            case "$failed_servers" in *",$name/$mode,"*) continue ;; esac
            log=$out/logs/$name-$mode-$r.log
            if ! start_server "$name" "${cmds[k]}" "$mode" "$log"; then
                failed_servers="$failed_servers$name/$mode,"
                status=1
                continue
            fi
            mc_args=()
            [ -f "$out/$name.mc" ] && mc_args=(--malloc-stats "$out/$name.mc")
            jit=$(awk -v w="${warms[k]}" -v s="$jit_scale" 'BEGIN { printf "%.1f", w * s / 3 }')
            for s in "${scen[@]}"; do
                IFS='|' read -r sname conns depth size <<<"$s"
                if [ "$jit" != "0.0" ]; then # JIT warm-up: a third of it in each scenario
                    loadgen -p "$port" -m "$mode" -c "$conns" -d "$depth" -s "$size" \
                        -t "$jit" -w 0
                fi
            done
            for s in "${scen[@]}"; do
                IFS='|' read -r sname conns depth size <<<"$s"
                line="" best=""
                for ((attempt = 0; attempt <= retries; attempt++)); do
                    loadgen -p "$port" -m "$mode" -c "$conns" -d "$depth" -s "$size" \
                        -t "$duration" -w "$warmup" --server-pid "$server_pid" --label "$name" \
                        "${mc_args[@]}"
                    other=$(echo "$result_line" | sed -n 's/.* others_pct=\([0-9.]*\).*/\1/p')
                    [ -n "$result_line" ] || break
                    if [ -z "$line" ] || [ -z "$other" ] || awk -v a="$other" -v b="$best" 'BEGIN { exit !(a < b) }'; then
                        line=$result_line best=${other:-0}
                    fi
                    [ -n "$other" ] && awk -v a="$other" -v m="$max_other" 'BEGIN { exit !(a > m) }' || break
                    echo "run.sh: round $r $name $mode $sname: other processes took ${other}% of cpu$cpu; repeating" >&2
                done
                if [ -z "$line" ]; then
                    echo "run.sh: round $r $name $mode $sname: no result" >&2
                    continue
                fi
                echo "round=$r server=$name scenario=$sname ${line#result }" >>"$results"
                printf 'run.sh: round %d %-9s %-6s %-9s %s\n' "$r" "$name" "$mode" "$sname" \
                    "$(echo "$line" | grep -o 'req_s=[^ ]*\|mb_s=[^ ]*\|p50_us=[^ ]*\|srv_cpu_us_req=[^ ]*\|errors=[^ ]*\|others_pct=[^ ]*\|other_cpus_pct=[^ ]*' | tr '\n' ' ')" >&2
            done
            stop_server "$name" "$mode"
        done
    done
done

summarize "$results" "$allocs" | tee -a "$out/summary.md"
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/summary.md"
exit "$status"
