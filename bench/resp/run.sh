#!/usr/bin/env bash
# RESP benchmark: redis-benchmark against rill's kv_server and against
# redis-server 7.0, one server at a time, server and redis-benchmark pinned to
# the same CPUs, servers alternating within each round (rill redis, rill
# redis, ...), medians over the rounds and ratios rill/redis.
#
#   bench/resp/run.sh [options]
#     -r, --rounds N        rounds (default 3)
#     -t, --duration S      about this many measured seconds per cell (default 5): -n is
#                           sized from the warm-up's rate
#     -w, --warmup S        about this many unmeasured seconds before each cell (default 1)
#     -q, --quick           smoke test: 1 round, 1 s cells, 0.5 s warm-up (about 1 minute)
#         --workers LIST    CPUs to pin to, and rill's worker loops (default 1,2): W uses
#                           CPUs N..N+W-1 for the server and redis-benchmark alike
#         --cells LIST      subset of get-P16-c50,set-P16-c50,get-c50,set-c50,get-c1,set-c1
#         --servers LIST    subset of rill,redis,redis-io2 (default all). redis-io2 is
#                           redis-server with --io-threads 2 (reads too); it runs only
#                           with 2 or more CPUs
#         --keyspace N      redis-benchmark -r (default 100000)
#         --cpu N           first CPU to pin to (default 0)
#         --max-other-load P  repeat a cell (up to --retries times, default 2) when other
#                           processes took more than P % of the pinned CPUs (default 10);
#                           the attempt with the least other load is kept
#         --rill-bin PROG   run PROG as rill's server (same command line as kv_server)
#         --out DIR         where results go (default build dir/bench/resp/results/<time>)
#         --no-build        use the binaries already built
#         --summary FILE    only print the table for an earlier run's results.txt
#         --profile perf|callgrind
#                           profile each server instead of timing it: perf record -g on
#                           the server during each cell (top symbols by self time), or
#                           callgrind instruction counts per request (user space; top
#                           functions); rill and redis unless --servers, --workers 1 unless
#                           given, one round. rill is built with -g and frame pointers in
#                           build/bench-profile (RILL_PROFILE_BUILD_DIR)
#   RILL_BUILD_DIR          build directory (default build/bench-codec, Release)
#
# Output: a Markdown table on stdout (also DIR/summary.md), one line per
# measured cell in DIR/results.txt, server and redis-benchmark output in
# DIR/logs. Exit status 1 when a server failed the redis-cli check, a cell saw
# errors, or a server misbehaved.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# Its own build tree: build/release is rebuilt by whoever works in the tree,
# and a library replaced under a running benchmark fails or skews it.
build=${RILL_BUILD_DIR:-$root/build/bench-codec}

rounds=3 duration=5 warmup=1 cpu=0 quick=0 do_build=1 out="" summary_only=""
max_other=10 retries=2 keyspace=100000 rill_bin="" profile=""
workers_list="" only_cells="" only_servers=""
base=redis # the ratio columns are server / this one

# ---- the cells: name | redis-benchmark test | pipeline depth | connections | guessed req/s
# The guess sizes the first warm-up only. SET runs before GET, so that GET
# finds the keyspace filled (the first SET warm-up fills it).
CELLS=(
    "set-P16-c50|set|16|50|300000"
    "get-P16-c50|get|16|50|400000"
    "set-c50|set|1|50|50000"
    "get-c50|get|1|50|50000"
    "set-c1|set|1|1|20000"
    "get-c1|get|1|1|20000"
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
    --workers) workers_list=$2; shift ;;
    --cells) only_cells=$2; shift ;;
    --servers) only_servers=$2; shift ;;
    --keyspace) keyspace=$2; shift ;;
    --cpu) cpu=$2; shift ;;
    --max-other-load) max_other=$2; shift ;;
    --retries) retries=$2; shift ;;
    --rill-bin) rill_bin=$2; shift ;;
    --out) out=$2; shift ;;
    --no-build) do_build=0 ;;
    --summary) summary_only=$2; shift ;;
    --profile) profile=$2; shift ;;
    -h | --help) usage ;;
    *) echo "run.sh: unknown option $1" >&2; usage ;;
    esac
    shift
done
if [ "$quick" = 1 ]; then
    rounds=1 duration=1 warmup=0.5 retries=0
fi
case "$profile" in
"") workers_list=${workers_list:-1,2} ;;
perf | callgrind)
    workers_list=${workers_list:-1} only_servers=${only_servers:-rill,redis} rounds=1
    build=${RILL_PROFILE_BUILD_DIR:-$root/build/bench-profile}
    ;;
*) echo "run.sh: --profile takes perf or callgrind" >&2; exit 2 ;;
esac

in_list() { # in_list item comma-list (an empty list holds everything)
    [ -z "$2" ] && return 0
    case ",$2," in *",$1,"*) return 0 ;; esac
    return 1
}

# ---- summary: medians per cell, ratios against $base ----
# Reads results.txt lines (key=value fields). A round in which other
# processes took more than $max_other % of the pinned CPUs is left out of a
# cell when the cell has undisturbed rounds. Ratios are medians of per-round
# pairs (server / peer in the same round), as bench/echo does.
summarize() { # summarize results-file
    awk -v base="$base" -v max_other="$max_other" '
function add(list, x) { if (!((list, x) in seen)) { seen[list, x] = 1; order[list, ++norder[list]] = x } }
function used(key, i) { return !clean[key] || ok[key, i] }
function sort(v, n,    i, j, t) { for (i = 2; i <= n; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] + 0 > t + 0; j--) v[j + 1] = v[j]; v[j + 1] = t } }
function median(key, m,    i, n, v) {
    n = 0
    for (i = 1; i <= cnt[key]; i++) if (used(key, i) && val[key, m, i] != "na") v[++n] = val[key, m, i]
    if (n == 0) return ""
    sort(v, n)
    return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
function spread(key, m,    i, lo, hi, md, x, n) {
    md = median(key, m)
    if (md + 0 == 0) return "-"
    n = 0
    for (i = 1; i <= cnt[key]; i++) {
        if (!used(key, i) || val[key, m, i] == "na") continue
        x = val[key, m, i] + 0
        if (n++ == 0 || x < lo) lo = x
        if (n == 1 || x > hi) hi = x
    }
    return sprintf("%.1f%%", 100 * (hi - lo) / md)
}
function nused(key,    i, n) { n = 0; for (i = 1; i <= cnt[key]; i++) n += used(key, i); return n }
# Per-round ratios server / peer; pr_med and pr_lo/pr_hi after the call.
function pratios(key, bkey, m,    i, j, n, v) {
    pr_med = pr_lo = pr_hi = ""
    if (key == bkey) return 0
    n = 0
    for (i = 1; i <= cnt[key]; i++) {
        if (!used(key, i)) continue
        for (j = 1; j <= cnt[bkey]; j++)
            if (used(bkey, j) && rnd[bkey, j] == rnd[key, i] && val[bkey, m, j] + 0 > 0 && val[key, m, i] != "na")
                v[++n] = val[key, m, i] / val[bkey, m, j]
    }
    if (n == 0) return 0
    sort(v, n)
    pr_med = sprintf("%.2fx", n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2)
    if (n > 1) { pr_lo = sprintf("%.2f", v[1]); pr_hi = sprintf("%.2f", v[n]) }
    return n
}
function num(x, fmt) { return (x == "" || x == "na") ? "-" : sprintf(fmt, x) }
function or_dash(x) { return x == "" ? "-" : x }
BEGIN { nm = split("req_s p50_us p99_us srv_cpu_us_req cli_cpu_us_req others_pct other_cpus_pct", ms, " ") }
/^round=/ {
    delete f
    for (i = 1; i <= NF; i++) { p = index($i, "="); f[substr($i, 1, p - 1)] = substr($i, p + 1) }
    add("w", f["workers"]); add("c", f["cell"]); add("s", f["server"])
    cpus[f["workers"]] = f["cpus"]
    key = f["workers"] SUBSEP f["cell"] SUBSEP f["server"]
    n = ++cnt[key]
    for (i = 1; i <= nm; i++) val[key, ms[i], n] = f[ms[i]]
    rnd[key, n] = f["round"]
    ok[key, n] = f["others_pct"] == "na" || f["others_pct"] + 0 <= max_other + 0
    if (ok[key, n]) clean[key] = 1
    err[key] += f["errors"]
    if (f["verified"] != 1) bad[key] = 1
}
END {
    printf "\n| CPUs | cell | server | req/s | x %s | range | p50 us | p99 us | p50 x %s | server CPU us/req | CPU x %s | client CPU us/req | rounds | spread | other load | other CPUs | errors | valid |\n", base, base, base
    printf "| --- | --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n"
    for (w = 1; w <= norder["w"]; w++) for (c = 1; c <= norder["c"]; c++) for (s = 1; s <= norder["s"]; s++) {
        W = order["w", w]; C = order["c", c]; S = order["s", s]
        key = W SUBSEP C SUBSEP S; bkey = W SUBSEP C SUBSEP base
        if (!cnt[key]) continue
        pratios(key, bkey, "req_s"); rq = pr_med; rg = pr_lo == "" ? "" : pr_lo "-" pr_hi
        pratios(key, bkey, "p50_us"); pl = pr_med
        pratios(key, bkey, "srv_cpu_us_req"); pc = pr_med
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d/%d | %s | %s | %s | %d | %s |\n",
            cpus[W], C, S (S == "rill" ? " --workers " W : ""), num(median(key, "req_s"), "%.0f"),
            or_dash(rq), or_dash(rg), num(median(key, "p50_us"), "%.0f"), num(median(key, "p99_us"), "%.0f"),
            or_dash(pl), num(median(key, "srv_cpu_us_req"), "%.2f"), or_dash(pc),
            num(median(key, "cli_cpu_us_req"), "%.2f"), nused(key), cnt[key], spread(key, "req_s"),
            num(median(key, "others_pct"), "%.0f%%"), num(median(key, "other_cpus_pct"), "%.0f%%"),
            err[key], (err[key] || bad[key]) ? "INVALID" : "yes"
    }
    # rill against every other peer that ran beside it (redis-io2 as well as redis)
    hdr = 0
    for (w = 1; w <= norder["w"]; w++) for (s = 1; s <= norder["s"]; s++) {
        P = order["s", s]
        if (P == "rill" || P == base) continue
        for (c = 1; c <= norder["c"]; c++) {
            W = order["w", w]; C = order["c", c]
            key = W SUBSEP C SUBSEP "rill"; pkey = W SUBSEP C SUBSEP P
            if (!cnt[key] || !cnt[pkey]) continue
            if (!hdr++) {
                print "\n| CPUs | cell | rill / peer | req/s ratio | range | p50 ratio | server CPU ratio |"
                print "| --- | --- | --- | ---: | --- | ---: | ---: |"
            }
            pratios(key, pkey, "req_s"); rq = pr_med; rg = pr_lo == "" ? "" : pr_lo "-" pr_hi
            pratios(key, pkey, "p50_us"); pl = pr_med
            pratios(key, pkey, "srv_cpu_us_req"); pc = pr_med
            printf "| %s | %s | rill / %s | %s | %s | %s | %s |\n", cpus[W], C, P, or_dash(rq), or_dash(rg), or_dash(pl), or_dash(pc)
        }
    }
    print ""
    print "cell: redis-benchmark test, -P depth (none: one request at a time), -c connections; -r and -d as"
    print "in the header. rill runs --workers = number of CPUs; redis-server has one thread; redis-io2 adds"
    print "--io-threads 2 --io-threads-do-reads yes. req/s, latencies (redis-benchmark) and CPU: medians over"
    print "the rounds used. x " base ": server / " base " in the same cell and round, median over the rounds"
    print "(p50 and CPU: below 1 is better); range: lowest and highest per-round req/s ratio. server CPU:"
    print "utime+stime of the server process (all threads) over the measured run / requests; client CPU"
    print "likewise for redis-benchmark. rounds: used / run (a round in which other processes took more than"
    print max_other "% of the pinned CPUs is left out when the cell has undisturbed rounds). spread: (max - min) /"
    print "median of req/s. other load: share of the pinned CPUs taken by other processes; other CPUs: how"
    print "busy the CPUs outside the set were. errors: error replies or failed runs; a cell with errors, or"
    print "whose server failed the redis-cli check, is INVALID."
}' "$1"
}

if [ -n "$summary_only" ]; then
    summarize "$summary_only"
    exit 0
fi

# ---- tools and servers ----
die() { echo "run.sh: $*" >&2; exit 2; }
for tool in redis-benchmark redis-cli taskset; do
    command -v "$tool" >/dev/null || die "$tool is missing (Debian packages: redis-tools, util-linux; see scripts/setup.sh)"
done
rbench=$(command -v redis-benchmark)
redis_bin=$(command -v redis-server || true)
[ -z "$redis_bin" ] && [ -x /usr/bin/redis-server ] && redis_bin=/usr/bin/redis-server
kv=${rill_bin:-$build/examples/kv_server}
case "$profile" in
perf) command -v perf >/dev/null || die "perf is missing (Debian package linux-perf)" ;;
callgrind)
    for tool in valgrind callgrind_control callgrind_annotate; do
        command -v "$tool" >/dev/null || die "$tool is missing (Debian package valgrind)"
    done ;;
esac

servers=()
for s in rill redis redis-io2; do in_list "$s" "$only_servers" && servers+=("$s"); done
[ ${#servers[@]} -gt 0 ] || die "no server selected (--servers takes rill,redis,redis-io2)"
if in_list redis "$only_servers" || in_list redis-io2 "$only_servers"; then
    [ -n "$redis_bin" ] || die "redis-server not found (Debian package redis-server)"
fi
ncpu=$(nproc)
IFS=, read -r -a workers <<<"$workers_list"
for w in "${workers[@]}"; do
    [ "$((cpu + w))" -le "$ncpu" ] || die "--workers $w from cpu$cpu needs $((cpu + w)) CPUs; this machine has $ncpu"
done
cells=()
for c in "${CELLS[@]}"; do in_list "${c%%|*}" "$only_cells" && cells+=("$c"); done
[ ${#cells[@]} -gt 0 ] || die "no cell selected (--cells takes $(printf '%s\n' "${CELLS[@]}" | cut -d'|' -f1 | paste -sd,))"

# ---- build ----
if in_list rill "$only_servers" && [ -z "$rill_bin" ]; then
    if [ ! -e "$root/examples/kv_server.c" ] && [ ! -d "$root/examples/kv_server" ]; then
        die "rill's kv_server example is not in this tree yet (examples/kv_server.c or examples/kv_server/);
    run with --servers redis to measure redis alone, or --rill-bin PROG for a stand-in"
    fi
    if [ "$do_build" = 1 ]; then
        mkdir -p "$build"
        gen=()
        if [ ! -f "$build/CMakeCache.txt" ] && command -v ninja >/dev/null; then
            gen=(-G Ninja)
        fi
        pflags=()
        [ -n "$profile" ] && pflags=(-DCMAKE_C_FLAGS="-g -fno-omit-frame-pointer")
        if ! { cmake -S "$root" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
            -DRILL_BUILD_TESTS=OFF -DRILL_BUILD_EXAMPLES=ON "${pflags[@]}" &&
            cmake --build "$build" --target kv_server; } >"$build/kv_server-build.log" 2>&1; then
            die "rill's kv_server did not build; see $build/kv_server-build.log"
        fi
    fi
    [ -x "$kv" ] || die "$kv is not built (build it, or drop --no-build)"
fi
if [ -n "$rill_bin" ]; then
    [ -x "$rill_bin" ] || die "--rill-bin $rill_bin is not an executable"
fi

out=${out:-$build/bench/resp/results/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out/logs"
results=$out/results.txt
: >"$results"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rill-bench-resp.XXXXXX")

# ---- nothing stays behind ----
server_pid="" bench_pid="" prof_pid="" prof_prefix=()
alive() { # alive pid: running, not a zombie waiting to be reaped
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    s=${s##*) }
    [ "${s%% *}" != Z ]
}
stop_all() { # stop_all pid...: SIGTERM, up to 5 s, then SIGKILL; reap our children
    local p i
    for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
    for ((i = 0; i < 50; i++)); do
        for p in "$@"; do alive "$p" && break; done
        alive "$p" || break
        sleep 0.1
    done
    for p in "$@"; do
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
}
cleanup() {
    local i
    if [ -n "$prof_pid" ]; then
        kill -INT "$prof_pid" 2>/dev/null || true
        wait "$prof_pid" 2>/dev/null || true
    fi
    if [ -n "$bench_pid" ]; then # the wrapper shell ends, and reaps the client, once the client is gone
        pkill -TERM -P "$bench_pid" 2>/dev/null || true
        for ((i = 0; i < 20; i++)); do alive "$bench_pid" && sleep 0.1; done
        pkill -KILL -P "$bench_pid" 2>/dev/null || true
        stop_all "$bench_pid"
    fi
    [ -n "$server_pid" ] && stop_all "$server_pid"
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

status=0
tck=$(getconf CLK_TCK)

# A TCP port nobody on this machine uses, below the ephemeral range the
# client's connections take their ports from.
free_port() {
    local p i hex
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + RANDOM % 12000))
        hex=$(printf '%04X' "$p")
        if ! awk -v h="$hex" 'FNR > 1 { split($2, a, ":"); if (a[2] == h) f = 1 } END { exit !f }' \
            /proc/net/tcp /proc/net/tcp6 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

cpu_set() { # cpu_set workers -> "0" or "0,1"
    local i s=""
    for ((i = cpu; i < cpu + $1; i++)); do s=$s${s:+,}$i; done
    echo "$s"
}

# utime+stime in ticks of a process (all its threads)
proc_ticks() {
    awk '{ sub(/^.*\) /, ""); split($0, f, " "); t += f[12] + f[13] } END { print t + 0 }' \
        "/proc/$1/stat" 2>/dev/null || echo 0
}

# Busy and total ticks of the pinned CPUs, busy and total of the others.
cpu_sample() { # cpu_sample cpus
    awk -v set=",$1," '/^cpu[0-9]/ {
        id = substr($1, 4); busy = $2 + $3 + $4 + $7 + $8; tot = busy + $5 + $6 + $9
        if (index(set, "," id ",")) { b += busy; t += tot } else { rb += busy; rt += tot }
    } END { print b + 0, t + 0, rb + 0, rt + 0 }' /proc/stat
}

wait_tcp() { # wait_tcp port pid: until a connect succeeds or the process dies (30 s)
    local i
    for ((i = 0; i < 300; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

start_rill() { # start_rill workers cpus log -> server_pid, port
    local w=$1 cpus=$2 log=$3 i
    port=$(free_port) || die "no free port"
    taskset -c "$cpus" "${prof_prefix[@]}" "$kv" --host 127.0.0.1 --port "$port" --workers "$w" \
        >"$log" 2>&1 &
    server_pid=$!
    for ((i = 0; i < 300; i++)); do # 30 s: valgrind starts slowly
        if grep -q "^kv_server: listening on 127.0.0.1:$port\$" "$log" 2>/dev/null; then
            wait_tcp "$port" "$server_pid" && return 0
            break
        fi
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    return 1
}

start_redis() { # start_redis workers cpus log [extra redis-server options] -> server_pid, port
    local cpus=$2 log=$3 dir=$tmp/redis
    shift 3
    port=$(free_port) || die "no free port"
    rm -rf "$dir"
    mkdir -p "$dir"
    (cd "$dir" && exec taskset -c "$cpus" "${prof_prefix[@]}" "$redis_bin" --port "$port" --bind 127.0.0.1 \
        --save "" --appendonly no --daemonize no --dir "$dir" "$@") >"$log" 2>&1 &
    server_pid=$!
    wait_tcp "$port" "$server_pid"
}

start_redis-io2() {
    start_redis "$@" --io-threads 2 --io-threads-do-reads yes
}

stop_server() { # stop_server label log
    local rc=0 i
    kill -TERM "$server_pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$server_pid" 2>/dev/null; then
        echo "run.sh: $1 ignored SIGTERM for 10 s; killed" >&2
        kill -KILL "$server_pid" 2>/dev/null || true
        status=1
    fi
    wait "$server_pid" 2>/dev/null || rc=$?
    if [ "$rc" != 0 ] && [ "$rc" != 143 ]; then # 143: ended by the SIGTERM itself
        echo "run.sh: $1 exited with status $rc (log: $2)" >&2
        status=1
    fi
    server_pid=""
}

# Both servers must answer the same way: SET replies OK, GET returns the value
# (one with CR LF inside too), a missing key is nil.
verify() { # verify label port
    local label=$1 p=$2 got want k=rill:bench:check:$RANDOM
    got=$(
        for cmd in "SET $k hello_world" "GET $k" "SET $k CRLF" "GET $k" "GET $k:missing"; do
            # shellcheck disable=SC2086 # split into the command's words
            set -- $cmd
            [ "${3:-}" = CRLF ] && set -- "$1" "$2" $'a\r\nb'
            redis-cli --no-raw -h 127.0.0.1 -p "$p" "$@" 2>&1
        done
    )
    want=$(printf '%s\n' OK '"hello_world"' OK '"a\r\nb"' '(nil)')
    if [ "$got" != "$want" ]; then
        echo "run.sh: $label does not answer SET/GET as redis does (redis-cli); expected:" >&2
        echo "$want" | sed 's/^/    /' >&2
        echo "  got:" >&2
        echo "$got" | sed 's/^/    /' >&2
        return 1
    fi
}

# After the SET cells: the keys redis-benchmark wrote hold its 3-byte values.
verify_keys() { # verify_keys label port -> number of bad keys
    local i k v bad=0 found=0
    for i in 1 2 3 5 8 13 21 34 55 89; do
        k=$(printf 'key:%012d' $((i * 997 % keyspace)))
        v=$(redis-cli --no-raw -h 127.0.0.1 -p "$2" GET "$k" 2>&1)
        case "$v" in
        '(nil)') ;;
        \"???\") found=$((found + 1)) ;;
        *) bad=$((bad + 1)); echo "run.sh: $1: GET $k after the SET runs gave $v" >&2 ;;
        esac
    done
    [ "$found" -gt 0 ] || { bad=$((bad + 1)); echo "run.sh: $1: none of the sampled keys was set by redis-benchmark" >&2; }
    echo "$bad"
}

run_bench() { # run_bench cpus test depth conns requests port outfile -> exit status; cli_ticks
    local rc=0
    bash -c 'out=$1 cpuf=$2; shift 2; "$@" >"$out" 2>&1; rc=$?
        s=$(cat /proc/$$/stat); s=${s##*) }; set -- $s; echo $((${14} + ${15})) >"$cpuf"; exit $rc' \
        _ "$7" "$tmp/bench.cpu" taskset -c "$1" "$rbench" -h 127.0.0.1 -p "$6" -t "$2" -P "$3" \
        -c "$4" -n "$5" -r "$keyspace" -d 3 --csv &
    bench_pid=$!
    wait "$bench_pid" || rc=$?
    bench_pid=""
    cli_ticks=$(cat "$tmp/bench.cpu" 2>/dev/null || echo 0)
    return "$rc"
}

# key=value fields from redis-benchmark's CSV line ("SET","rps","avg",...,"p50","p95","p99","max")
parse_bench() { # parse_bench file test
    awk -F'","' -v t="$2" '
$1 == "\"" toupper(t) { gsub(/"/, ""); split($0, f, ","); rps = f[2]; p50 = f[5] * 1000; p99 = f[7] * 1000; ok = 1 }
/^Error|Could not connect|Server closed|[Ee]rror:/ { errs++ }
END { printf "req_s=%.0f p50_us=%.1f p99_us=%.1f errors=%d", rps, p50, p99, errs + !ok }' "$1"
}

# ---- --profile: one profile per server and cell ----
# perf: perf record -g on the server while the cell runs, then the symbols
# with the most self time. callgrind: the server runs under callgrind with
# instrumentation off; each cell's measured run is bracketed by zero /
# instrumentation on / dump, so a dump holds that cell's requests only
# (connection setup of its clients included, spread over -n). Instruction
# counts are user space only and do not depend on the machine's load.
newest() { # newest file...: the most recently modified of the files
    local f n=$1
    for f in "$@"; do [ "$f" -nt "$n" ] && n=$f; done
    echo "$n"
}

profile_servers() {
    local pdir=$out/profile w cpus log cell cname test depth conns guess n rate f total s label
    mkdir -p "$pdir"
    for w in "${workers[@]}"; do
        cpus=$(cpu_set "$w")
        for s in "${servers[@]}"; do
            [ "$s" = redis-io2 ] && [ "$w" -lt 2 ] && continue
            label="$s (CPUs $cpus)"
            log=$out/logs/$s-w$w-$profile.log
            prof_prefix=()
            [ "$profile" = callgrind ] && prof_prefix=(valgrind --tool=callgrind --instr-atstart=no
                "--callgrind-out-file=$pdir/callgrind-$s-w$w.out")
            if ! "start_$s" "$w" "$cpus" "$log" || ! verify "$label" "$port"; then
                sed 's/^/    /' "$log" >&2
                die "$label did not start or answered wrongly under $profile"
            fi
            # fill the keyspace first, so that GET finds its keys whatever the cells
            run_bench "$cpus" set 16 50 $((keyspace * 5)) "$port" "$out/logs/bench-$s-w$w-fill.txt" ||
                status=1
            for cell in "${cells[@]}"; do
                IFS='|' read -r cname test depth conns guess <<<"$cell"
                blog=$out/logs/bench-$s-w$w-$cname-$profile.txt
                n=$(awk -v g="$guess" -v w="$warmup" 'BEGIN { n = int(g * w); print n < 1000 ? 1000 : n }')
                [ "$profile" = callgrind ] && n=$((n / 20 + 1000))
                rate=$guess
                if run_bench "$cpus" "$test" "$depth" "$conns" "$n" "$port" "$blog"; then
                    rate=$(parse_bench "$blog" "$test" | sed 's/^req_s=\([0-9]*\).*/\1/')
                    [ "${rate:-0}" -gt 0 ] || rate=$guess
                fi
                # callgrind runs the instrumented server ~10x slower than this warm-up;
                # 20000 requests at least, so that connection setup weighs little
                n=$(awk -v g="$rate" -v d="$duration" -v cg="$([ "$profile" = callgrind ] && echo 1 || echo 0)" \
                    'BEGIN { n = int(g * d / (cg ? 10 : 1)); m = cg ? 20000 : 5000; print n < m ? m : n }')
                echo "run.sh: profiling $label $cname ($profile, -n $n)" >&2
                f=$pdir/$profile-$s-w$w-$cname
                if [ "$profile" = perf ]; then
                    perf record -F 1999 -e cpu-clock -g -p "$server_pid" -o "$f.data" >"$f.log" 2>&1 &
                    prof_pid=$!
                    sleep 0.5
                    run_bench "$cpus" "$test" "$depth" "$conns" "$n" "$port" "$blog" || status=1
                    kill -INT "$prof_pid" 2>/dev/null || true
                    wait "$prof_pid" 2>/dev/null || true
                    prof_pid=""
                    perf report -i "$f.data" --no-children --stdio -g none --percent-limit 0.3 \
                        --sort dso,sym 2>/dev/null | grep -v '^#' | grep -v '^$' >"$f.txt" || true
                    perf report -i "$f.data" --children --stdio -g none --percent-limit 2 \
                        --sort sym 2>/dev/null | grep -v '^#' | grep -v '^$' >"$f-children.txt" || true
                    perf report -i "$f.data" --no-children --stdio -g none --sort dso 2>/dev/null |
                        grep -v '^#' | grep -v '^$' >"$f-dso.txt" || true
                    echo "## $label, $cname: $(parse_bench "$blog" "$test"); perf, self time by library: $(head -n 4 "$f-dso.txt" | awk '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $2, $1 }')" |
                        tee -a "$pdir/summary.md"
                    head -n 25 "$f.txt" | tee -a "$pdir/summary.md"
                else
                    callgrind_control -z "$server_pid" >/dev/null 2>&1
                    callgrind_control -i on "$server_pid" >/dev/null 2>&1
                    run_bench "$cpus" "$test" "$depth" "$conns" "$n" "$port" "$blog" || status=1
                    callgrind_control -d "$cname" "$server_pid" >/dev/null 2>&1
                    callgrind_control -i off "$server_pid" >/dev/null 2>&1
                    mv "$(newest "$pdir/callgrind-$s-w$w.out".*)" "$f.out"
                    callgrind_annotate --inclusive=no "$f.out" >"$f.txt" 2>/dev/null || true
                    callgrind_annotate --inclusive=yes "$f.out" >"$f-inclusive.txt" 2>/dev/null || true
                    total=$(awk '/PROGRAM TOTALS/ { gsub(/,/, "", $1); print $1; exit }' "$f.txt")
                    echo "## $label, $cname: $n requests, $(awk -v t="$total" -v n="$n" 'BEGIN { printf "%.0f", t / n }') instructions per request (user space); callgrind, self" |
                        tee -a "$pdir/summary.md"
                    awk '/file:function/ { on = 1; getline; next } on && NF && ++k <= 25 { print } on && !NF { on = 0 }' \
                        "$f.txt" | awk -v n="$n" '{ x = $1; gsub(/,/, "", x);
                        printf "%8.0f Ir/req  %s\n", x / n, $0 }' | tee -a "$pdir/summary.md"
                fi
            done
            stop_server "$label" "$log"
            rm -f "$pdir/callgrind-$s-w$w.out" # the empty file valgrind creates at start
        done
    done
    echo "run.sh: profiles in $pdir" >&2
}

if [ -n "$profile" ]; then
    profile_servers
    exit "$status"
fi

rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -n "$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null)" ] && rev="$rev+uncommitted"
echo "# resp benchmark, rill $rev, $(date '+%Y-%m-%d %H:%M'), $(uname -r), $ncpu CPUs, $("$rbench" --version | cut -d' ' -f1-2), -r $keyspace -d 3" | tee "$out/summary.md"
echo "# rounds $rounds x ~${duration} s (+~${warmup} s warm-up per cell); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/summary.md"
echo "run.sh: servers ${servers[*]}, workers ${workers[*]}, ${#cells[@]} cells, results in $out" >&2

failed=","
for ((r = 1; r <= rounds; r++)); do
    for w in "${workers[@]}"; do
        cpus=$(cpu_set "$w")
        for s in "${servers[@]}"; do
            [ "$s" = redis-io2 ] && [ "$w" -lt 2 ] && continue
            label="$s (CPUs $cpus)"
            case "$failed" in *",$s/$w,"*) continue ;; esac
            log=$out/logs/$s-w$w-r$r.log
            if ! "start_$s" "$w" "$cpus" "$log" || ! verify "$label" "$port"; then
                echo "run.sh: $label did not start or answered wrongly; its log ($log):" >&2
                sed 's/^/    /' "$log" >&2
                [ -n "$server_pid" ] && stop_server "$label" "$log"
                failed="$failed$s/$w,"
                status=1
                continue
            fi
            lines=()
            for cell in "${cells[@]}"; do
                IFS='|' read -r cname test depth conns guess <<<"$cell"
                blog=$out/logs/bench-$s-w$w-$cname-r$r.txt
                # warm-up, and the rate that sizes the measured run
                n=$(awk -v g="$guess" -v w="$warmup" 'BEGIN { n = int(g * w); print n < 1000 ? 1000 : n }')
                rate=$guess
                if run_bench "$cpus" "$test" "$depth" "$conns" "$n" "$port" "$blog"; then
                    rate=$(parse_bench "$blog" "$test" | sed 's/^req_s=\([0-9]*\).*/\1/')
                    [ "${rate:-0}" -gt 0 ] || rate=$guess
                fi
                n=$(awk -v g="$rate" -v d="$duration" 'BEGIN { n = int(g * d); print n < 1000 ? 1000 : n }')
                line="" best=""
                for ((attempt = 0; attempt <= retries; attempt++)); do
                    s0=$(proc_ticks "$server_pid")
                    read -r b0 t0 rb0 rt0 <<<"$(cpu_sample "$cpus")"
                    rc=0
                    run_bench "$cpus" "$test" "$depth" "$conns" "$n" "$port" "$blog" || rc=$?
                    read -r b1 t1 rb1 rt1 <<<"$(cpu_sample "$cpus")"
                    s1=$(proc_ticks "$server_pid")
                    fields=$(parse_bench "$blog" "$test")
                    if [ "$rc" != 0 ] || [ "${fields##*errors=}" != 0 ]; then
                        echo "run.sh: round $r $label $cname: redis-benchmark failed (status $rc): $(tr '\n' ' ' <"$blog" | cut -c1-300)" >&2
                        status=1
                        errs=${fields##*errors=}
                        line="req_s=na p50_us=na p99_us=na errors=$((errs > 0 ? errs : 1)) srv_cpu_us_req=na cli_cpu_us_req=na others_pct=na other_cpus_pct=na" best=0
                        cp "$blog" "$blog.kept"
                        break
                    fi
                    costs=$(awk -v s="$((s1 - s0))" -v c="$cli_ticks" -v n="$n" -v tck="$tck" \
                        -v b="$((b1 - b0))" -v t="$((t1 - t0))" -v rb="$((rb1 - rb0))" -v rt="$((rt1 - rt0))" 'BEGIN {
                        o = t > 0 ? 100 * (b - s - c) / t : 0; if (o < 0) o = 0
                        printf "srv_cpu_us_req=%.3f cli_cpu_us_req=%.3f others_pct=%.1f other_cpus_pct=%s",
                            s * 1e6 / tck / n, c * 1e6 / tck / n, o,
                            (rt > 0 ? sprintf("%.1f", 100 * rb / rt) : "na") }')
                    other=$(echo "$costs" | sed 's/.*others_pct=\([0-9.]*\).*/\1/')
                    if [ -z "$line" ] || awk -v a="$other" -v b="$best" 'BEGIN { exit !(a < b) }'; then
                        line="$fields $costs" best=$other
                        cp "$blog" "$blog.kept"
                    fi
                    awk -v a="$other" -v m="$max_other" 'BEGIN { exit !(a > m) }' || break
                    echo "run.sh: round $r $label $cname: other processes took ${other}% of CPUs $cpus; repeating" >&2
                done
                [ -f "$blog.kept" ] && mv "$blog.kept" "$blog"
                lines+=("round=$r server=$s workers=$w cpus=$cpus cell=$cname test=$test pipeline=$depth conns=$conns requests=$n $line")
                printf 'run.sh: round %d %-9s w%d %-12s %s\n' "$r" "$s" "$w" "$cname" \
                    "$(echo "$line" | grep -o 'req_s=[^ ]*\|p50_us=[^ ]*\|srv_cpu_us_req=[^ ]*\|errors=[^ ]*\|others_pct=[^ ]*' | tr '\n' ' ')" >&2
            done
            # the values SET wrote must read back
            verified=1
            if in_list set "$(printf '%s\n' "${cells[@]}" | cut -d'|' -f2 | paste -sd,)" &&
                [ "$(verify_keys "$label" "$port")" != 0 ]; then
                verified=0 status=1
            fi
            for l in "${lines[@]}"; do echo "$l verified=$verified" >>"$results"; done
            stop_server "$label" "$log"
        done
    done
done

summarize "$results" | tee -a "$out/summary.md"
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/summary.md"
exit "$status"
