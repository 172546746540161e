#!/usr/bin/env bash
# HTTP benchmark: wrk against rill's http_hello and against nginx answering
# `return 200 "hello"`, one server at a time, server and wrk pinned to the same
# CPUs, servers alternating within each round (rill nginx, rill nginx, ...),
# medians over the rounds and ratios rill/nginx.
#
#   bench/http/run.sh [options]
#     -r, --rounds N        rounds (default 5)
#     -t, --duration S      measured seconds per cell, whole seconds (default 5)
#     -w, --warmup S        unmeasured wrk seconds before each cell (default 1)
#     -q, --quick           smoke test: 1 round, 1 s cells, 1 s warm-up (about 30 s)
#         --workers LIST    rill worker loops = nginx worker processes (default 1,2)
#         --conns LIST      wrk connections (default 50,8)
#         --threads N       wrk threads (default 1)
#         --servers LIST    subset of rill,nginx (default both)
#         --cpu N           first CPU to pin to (default 0); W workers use CPUs N..N+W-1,
#                           shared by the server and wrk
#         --max-other-load P  repeat a cell (up to --retries times, default 2) when other
#                           processes took more than P % of the pinned CPUs (default 10);
#                           the attempt with the least other load is kept
#         --rill-bin PROG   run PROG as rill's server (same command line as http_hello)
#         --out DIR         where results go (default build dir/bench/http/results/<time>)
#         --no-build        use the binaries already built
#         --summary FILE    only print the table for an earlier run's results.txt
#         --profile perf|callgrind
#                           profile each server instead of timing it: perf record -g on
#                           the server during each cell (top symbols by self time), or
#                           callgrind instruction counts per request (user space; top
#                           functions); --workers 1 unless given, one round. rill is built
#                           with -g and frame pointers in build/bench-profile
#                           (RILL_PROFILE_BUILD_DIR)
#   RILL_BUILD_DIR          build directory (default build/bench-codec, Release)
#
# Output: a Markdown table on stdout (also DIR/summary.md), one line per
# measured cell in DIR/results.txt, server and wrk output in DIR/logs. Exit
# status 1 when a server failed verification, a cell saw non-2xx responses or
# socket errors, or a server misbehaved.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# Its own build tree: build/release is rebuilt by whoever works in the tree,
# and a library replaced under a running benchmark fails or skews it.
build=${RILL_BUILD_DIR:-$root/build/bench-codec}

rounds=5 duration=5 warmup=1 cpu=0 quick=0 do_build=1 out="" summary_only=""
max_other=10 retries=2 threads=1 rill_bin="" profile=""
workers_list="" conns_list="50,8" only_servers=""
base=nginx # the ratio columns are server / this one

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
    --conns) conns_list=$2; shift ;;
    --threads) threads=$2; shift ;;
    --servers) only_servers=$2; shift ;;
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
    rounds=1 duration=1 warmup=1 retries=0
fi
case "$profile" in
"") workers_list=${workers_list:-1,2} ;;
perf | callgrind)
    workers_list=${workers_list:-1} rounds=1
    build=${RILL_PROFILE_BUILD_DIR:-$root/build/bench-profile}
    ;;
*) echo "run.sh: --profile takes perf or callgrind" >&2; exit 2 ;;
esac
case "$duration$warmup" in *[!0-9]*)
    echo "run.sh: wrk takes whole seconds: --duration $duration --warmup $warmup" >&2
    exit 2 ;;
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
# pairs (server / base in the same round), as bench/echo does.
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
function pratio(key, bkey, m,    i, j, n, v) {
    if (key == bkey) return ""
    n = 0
    for (i = 1; i <= cnt[key]; i++) {
        if (!used(key, i)) continue
        for (j = 1; j <= cnt[bkey]; j++)
            if (used(bkey, j) && rnd[bkey, j] == rnd[key, i] && val[bkey, m, j] + 0 > 0 && val[key, m, i] != "na")
                v[++n] = val[key, m, i] / val[bkey, m, j]
    }
    if (n == 0) return ""
    sort(v, n)
    return sprintf("%.2fx", n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2)
}
# Per-round ratio range, so the spread of the ratio itself is visible.
function prange(key, bkey, m,    i, j, n, lo, hi, x) {
    if (key == bkey) return ""
    n = 0
    for (i = 1; i <= cnt[key]; i++) {
        if (!used(key, i)) continue
        for (j = 1; j <= cnt[bkey]; j++)
            if (used(bkey, j) && rnd[bkey, j] == rnd[key, i] && val[bkey, m, j] + 0 > 0 && val[key, m, i] != "na") {
                x = val[key, m, i] / val[bkey, m, j]
                if (n++ == 0 || x < lo) lo = x
                if (n == 1 || x > hi) hi = x
            }
    }
    return n < 2 ? "" : sprintf("%.2f-%.2f", lo, hi)
}
function num(x, fmt) { return (x == "" || x == "na") ? "-" : sprintf(fmt, x) }
function or_dash(x) { return x == "" ? "-" : x }
BEGIN { nm = split("req_s p50_us p99_us srv_cpu_us_req cli_cpu_us_req resp_bytes others_pct other_cpus_pct", ms, " ") }
/^round=/ {
    delete f
    for (i = 1; i <= NF; i++) { p = index($i, "="); f[substr($i, 1, p - 1)] = substr($i, p + 1) }
    add("w", f["workers"]); add("c", f["conns"]); add("s", f["server"])
    cpus[f["workers"]] = f["cpus"]
    key = f["workers"] SUBSEP f["conns"] SUBSEP f["server"]
    n = ++cnt[key]
    for (i = 1; i <= nm; i++) val[key, ms[i], n] = f[ms[i]]
    rnd[key, n] = f["round"]
    ok[key, n] = f["others_pct"] == "na" || f["others_pct"] + 0 <= max_other + 0
    if (ok[key, n]) clean[key] = 1
    err[key] += f["non2xx"] + f["sock_errors"] + f["wrk_failed"]
    if (f["verified"] != 1) bad[key] = 1
}
END {
    printf "\n| workers | CPUs | conns | server | req/s | x %s | range | p50 us | p99 us | p50 x %s | server CPU us/req | CPU x %s | wrk CPU us/req | B/resp | rounds | spread | other load | other CPUs | errors | valid |\n", base, base, base
    printf "| ---: | --- | ---: | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n"
    for (w = 1; w <= norder["w"]; w++) for (c = 1; c <= norder["c"]; c++) for (s = 1; s <= norder["s"]; s++) {
        W = order["w", w]; C = order["c", c]; S = order["s", s]
        key = W SUBSEP C SUBSEP S; bkey = W SUBSEP C SUBSEP base
        if (!cnt[key]) continue
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d/%d | %s | %s | %s | %d | %s |\n",
            W, cpus[W], C, S, num(median(key, "req_s"), "%.0f"),
            or_dash(pratio(key, bkey, "req_s")), or_dash(prange(key, bkey, "req_s")),
            num(median(key, "p50_us"), "%.0f"), num(median(key, "p99_us"), "%.0f"),
            or_dash(pratio(key, bkey, "p50_us")),
            num(median(key, "srv_cpu_us_req"), "%.2f"), or_dash(pratio(key, bkey, "srv_cpu_us_req")),
            num(median(key, "cli_cpu_us_req"), "%.2f"), num(median(key, "resp_bytes"), "%.0f"),
            nused(key), cnt[key], spread(key, "req_s"),
            num(median(key, "others_pct"), "%.0f%%"), num(median(key, "other_cpus_pct"), "%.0f%%"),
            err[key], (err[key] || bad[key]) ? "INVALID" : "yes"
    }
    print ""
    print "req/s, latencies (wrk --latency) and CPU: medians over the rounds used. x " base ": server / " base " in"
    print "the same cell and round, median over the rounds (p50 and CPU: below 1 is better); range: lowest and"
    print "highest per-round req/s ratio. server CPU: utime+stime of the server (nginx: master and workers)"
    print "over the measured window / requests; wrk CPU likewise for wrk. B/resp: bytes of one response,"
    print "headers included. rounds: used / run (a round in which other processes took more than " max_other "% of"
    print "the pinned CPUs is left out when the cell has undisturbed rounds). spread: (max - min) / median of"
    print "req/s. other load: share of the pinned CPUs taken by other processes; other CPUs: how busy the"
    print "CPUs outside the set were. errors: non-2xx responses + socket errors + failed wrk runs, over all"
    print "rounds; a cell with errors, or whose server failed the curl check, is INVALID."
}' "$1"
}

if [ -n "$summary_only" ]; then
    summarize "$summary_only"
    exit 0
fi

# ---- tools and servers ----
die() { echo "run.sh: $*" >&2; exit 2; }
for tool in wrk curl taskset; do
    command -v "$tool" >/dev/null || die "$tool is missing (Debian packages: wrk, curl, util-linux; see scripts/setup.sh)"
done
wrk=$(command -v wrk)
nginx_bin=$(command -v nginx || true)
[ -z "$nginx_bin" ] && [ -x /usr/sbin/nginx ] && nginx_bin=/usr/sbin/nginx
hello=${rill_bin:-$build/examples/http_hello}
case "$profile" in
perf) command -v perf >/dev/null || die "perf is missing (Debian package linux-perf)" ;;
callgrind)
    for tool in valgrind callgrind_control callgrind_annotate; do
        command -v "$tool" >/dev/null || die "$tool is missing (Debian package valgrind)"
    done ;;
esac

servers=()
for s in rill nginx; do in_list "$s" "$only_servers" && servers+=("$s"); done
[ ${#servers[@]} -gt 0 ] || die "no server selected (--servers takes rill,nginx)"
if in_list nginx "$only_servers"; then
    [ -n "$nginx_bin" ] || die "nginx not found on PATH or at /usr/sbin/nginx (Debian package nginx-light)"
fi
ncpu=$(nproc)
IFS=, read -r -a workers <<<"$workers_list"
IFS=, read -r -a conns <<<"$conns_list"
for w in "${workers[@]}"; do
    [ "$((cpu + w))" -le "$ncpu" ] || die "--workers $w from cpu$cpu needs $((cpu + w)) CPUs; this machine has $ncpu"
done

# ---- build ----
if in_list rill "$only_servers" && [ -z "$rill_bin" ]; then
    if [ ! -e "$root/examples/http_hello.c" ] && [ ! -d "$root/examples/http_hello" ]; then
        die "rill's http_hello example is not in this tree yet (examples/http_hello.c or examples/http_hello/);
    run with --servers nginx to measure nginx alone, or --rill-bin PROG for a stand-in"
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
            cmake --build "$build" --target http_hello; } >"$build/http_hello-build.log" 2>&1; then
            die "rill's http_hello did not build; see $build/http_hello-build.log"
        fi
    fi
    [ -x "$hello" ] || die "$hello is not built (build it, or drop --no-build)"
fi
if [ -n "$rill_bin" ]; then
    [ -x "$rill_bin" ] || die "--rill-bin $rill_bin is not an executable"
fi

out=${out:-$build/bench/http/results/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out/logs"
results=$out/results.txt
: >"$results"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rill-bench-http.XXXXXX")

# ---- nothing stays behind ----
server_pid="" server_pids=() wrk_pid="" prof_pid="" prof_prefix=()
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
    if [ -n "$wrk_pid" ]; then # the wrapper shell ends, and reaps the client, once the client is gone
        pkill -TERM -P "$wrk_pid" 2>/dev/null || true
        for ((i = 0; i < 20; i++)); do alive "$wrk_pid" && sleep 0.1; done
        pkill -KILL -P "$wrk_pid" 2>/dev/null || true
        stop_all "$wrk_pid"
    fi
    [ -n "$server_pid" ] && stop_all "$server_pid" "${server_pids[@]}"
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

status=0
tck=$(getconf CLK_TCK)

# A TCP port nobody on this machine uses, below the ephemeral range wrk's
# connections take their ports from.
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

# utime+stime in ticks, summed over the processes (all threads of each).
proc_ticks() {
    local p files=()
    for p in "$@"; do files+=("/proc/$p/stat"); done
    awk '{ sub(/^.*\) /, ""); split($0, f, " "); t += f[12] + f[13] } END { print t + 0 }' \
        "${files[@]}" 2>/dev/null || echo 0
}

# Busy and total ticks of the pinned CPUs, busy and total of the others.
cpu_sample() { # cpu_sample cpus
    awk -v set=",$1," '/^cpu[0-9]/ {
        id = substr($1, 4); busy = $2 + $3 + $4 + $7 + $8; tot = busy + $5 + $6 + $9
        if (index(set, "," id ",")) { b += busy; t += tot } else { rb += busy; rt += tot }
    } END { print b + 0, t + 0, rb + 0, rt + 0 }' /proc/stat
}

wait_http() { # wait_http port pid: until GET / answers or the process dies (30 s)
    local i
    for ((i = 0; i < 300; i++)); do
        curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/" && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

start_rill() { # start_rill workers cpus log -> server_pid, server_pids, port
    local w=$1 cpus=$2 log=$3 i
    port=$(free_port) || die "no free port"
    taskset -c "$cpus" "${prof_prefix[@]}" "$hello" --host 127.0.0.1 --port "$port" --workers "$w" \
        >"$log" 2>&1 &
    server_pid=$! server_pids=()
    for ((i = 0; i < 300; i++)); do # 30 s: valgrind starts slowly
        if grep -q "^http_hello: listening on http://127.0.0.1:$port\$" "$log" 2>/dev/null; then
            wait_http "$port" "$server_pid" && return 0
            break
        fi
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    return 1
}

start_nginx() { # start_nginx workers cpus log -> server_pid, server_pids (workers), port
    local w=$1 cpus=$2 log=$3 dir=$tmp/nginx-$1 user="" reuse="" i
    port=$(free_port) || die "no free port"
    rm -rf "$dir"
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && user="user $(id -un) $(id -gn);"
    [ "$w" -gt 1 ] && reuse=" reuseport"
    sed -e "s|@USER@|$user|; s|@WORKERS@|$w|; s|@DIR@|$dir|g; s|@PORT@|$port|; s|@REUSEPORT@|$reuse|" \
        "$here/nginx.conf.in" >"$dir/nginx.conf"
    # under callgrind, one process: the master serves (worker_processes is then ignored)
    [ "$profile" = callgrind ] && sed -i 's/^master_process on;/master_process off;/' "$dir/nginx.conf"
    taskset -c "$cpus" "${prof_prefix[@]}" "$nginx_bin" -p "$dir" -e "$dir/error.log" \
        -c "$dir/nginx.conf" >"$log" 2>&1 &
    server_pid=$! server_pids=()
    wait_http "$port" "$server_pid" || { cat "$dir/error.log" >>"$log" 2>/dev/null; return 1; }
    [ "$profile" = callgrind ] && return 0
    for ((i = 0; i < 50; i++)); do
        mapfile -t server_pids < <(pgrep -P "$server_pid")
        [ "${#server_pids[@]}" -ge "$w" ] && return 0
        sleep 0.1
    done
    echo "run.sh: nginx started ${#server_pids[@]} of $w workers" >&2
    return 1
}

stop_server() { # stop_server label log
    local rc=0 i p
    kill -TERM "$server_pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$server_pid" 2>/dev/null; then
        echo "run.sh: $1 ignored SIGTERM for 10 s; killed" >&2
        kill -KILL "$server_pid" 2>/dev/null || true
        for p in "${server_pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done # nginx workers
        status=1
    fi
    wait "$server_pid" 2>/dev/null || rc=$?
    if [ "$rc" != 0 ] && [ "$rc" != 143 ]; then # 143: ended by the SIGTERM itself
        echo "run.sh: $1 exited with status $rc (log: $2)" >&2
        status=1
    fi
    server_pid="" server_pids=()
}

# Both servers must give the same answer: 200, body "hello", Content-Length 5,
# and keep the connection open for a second request.
verify() { # verify label port -> resp_bytes
    local label=$1 url=http://127.0.0.1:$2/ w
    if ! w=$(curl -sS --max-time 5 -D "$tmp/headers" -o "$tmp/body1" -o "$tmp/body2" \
        -w '%{http_code} %{size_header} %{size_download} %{num_connects}\n' "$url" "$url"); then
        echo "run.sh: $label: curl failed" >&2
        return 1
    fi
    resp_bytes=$(echo "$w" | awk 'NR == 1 { print $2 + $3 }')
    if [ "$(echo "$w" | awk '{ printf "%s %s %s;", $1, $3, $4 }')" != "200 5 1;200 5 0;" ] ||
        [ "$(cat "$tmp/body1")" != hello ] || [ "$(cat "$tmp/body2")" != hello ] ||
        ! grep -qi '^content-length: *5'$'\r''\?$' "$tmp/headers"; then
        echo "run.sh: $label does not answer GET / with 200 \"hello\" (Content-Length 5) on a kept-alive connection:" >&2
        echo "    curl: $(echo "$w" | tr '\n' ';') (code, header bytes, body bytes, new connections)" >&2
        echo "    bodies: \"$(head -c 80 "$tmp/body1")\" \"$(head -c 80 "$tmp/body2")\"" >&2
        sed 's/^/    /' "$tmp/headers" >&2
        return 1
    fi
}

run_wrk() { # run_wrk cpus conns seconds port outfile -> wrk exit status; cli_ticks
    local rc=0
    bash -c 'out=$1 cpuf=$2; shift 2; "$@" >"$out" 2>&1; rc=$?
        s=$(cat /proc/$$/stat); s=${s##*) }; set -- $s; echo $((${14} + ${15})) >"$cpuf"; exit $rc' \
        _ "$5" "$tmp/wrk.cpu" taskset -c "$1" "$wrk" -t"$threads" -c"$2" -d"$3"s --latency \
        "http://127.0.0.1:$4/" &
    wrk_pid=$!
    wait "$wrk_pid" || rc=$?
    wrk_pid=""
    cli_ticks=$(cat "$tmp/wrk.cpu" 2>/dev/null || echo 0)
    return "$rc"
}

# key=value fields from wrk's report
parse_wrk() {
    awk '
function us(s) { if (s ~ /us$/) return s + 0; if (s ~ /ms$/) return s * 1000; if (s ~ /s$/) return s * 1e6; return s }
/^Requests\/sec:/ { rps = $2 }
/ requests in / { req = $1 }
/^ +50%/ { p50 = us($2) }
/^ +99%/ { p99 = us($2) }
/Non-2xx or 3xx responses:/ { non2xx = $NF }
/Socket errors:/ { gsub(/,/, ""); serr = $4 + $6 + $8 + $10 }
END { printf "requests=%d req_s=%.0f p50_us=%.1f p99_us=%.1f non2xx=%d sock_errors=%d", req, rps, p50, p99, non2xx, serr }' "$1"
}

# ---- --profile: one profile per server and cell ----
# perf: perf record -g on the server (nginx: master and workers) while the
# cell runs, then the symbols with the most self time. callgrind: the server
# runs under callgrind with instrumentation off (nginx as a single process,
# master_process off); each cell's measured run is bracketed by zero /
# instrumentation on / dump, so a dump holds that cell's requests only (wrk's
# connection setup included, spread over the requests). Instruction counts
# are user space only and do not depend on the machine's load.
newest() { # newest file...: the most recently modified of the files
    local f n=$1
    for f in "$@"; do [ "$f" -nt "$n" ] && n=$f; done
    echo "$n"
}

profile_servers() {
    local pdir=$out/profile w cpus log c f total req wlog s label pids
    mkdir -p "$pdir"
    for w in "${workers[@]}"; do
        cpus=$(cpu_set "$w")
        for s in "${servers[@]}"; do
            label="$s (workers $w)"
            log=$out/logs/$s-w$w-$profile.log
            prof_prefix=()
            [ "$profile" = callgrind ] && prof_prefix=(valgrind --tool=callgrind --instr-atstart=no
                "--callgrind-out-file=$pdir/callgrind-$s-w$w.out")
            if ! "start_$s" "$w" "$cpus" "$log" || ! verify "$label" "$port"; then
                sed 's/^/    /' "$log" >&2
                die "$label did not start or answered wrongly under $profile"
            fi
            for c in "${conns[@]}"; do
                wlog=$out/logs/wrk-$s-w$w-c$c-$profile.txt
                [ "$warmup" -gt 0 ] && { run_wrk "$cpus" "$c" "$warmup" "$port" "$wlog" || true; }
                echo "run.sh: profiling $label c$c ($profile, ${duration} s)" >&2
                f=$pdir/$profile-$s-w$w-c$c
                if [ "$profile" = perf ]; then
                    pids=$(echo "$server_pid" "${server_pids[@]}" | tr ' ' ,)
                    perf record -F 1999 -e cpu-clock -g -p "$pids" -o "$f.data" >"$f.log" 2>&1 &
                    prof_pid=$!
                    sleep 0.5
                    run_wrk "$cpus" "$c" "$duration" "$port" "$wlog" || status=1
                    kill -INT "$prof_pid" 2>/dev/null || true
                    wait "$prof_pid" 2>/dev/null || true
                    prof_pid=""
                    perf report -i "$f.data" --no-children --stdio -g none --percent-limit 0.3 \
                        --sort dso,sym 2>/dev/null | grep -v '^#' | grep -v '^$' >"$f.txt" || true
                    perf report -i "$f.data" --children --stdio -g none --percent-limit 2 \
                        --sort sym 2>/dev/null | grep -v '^#' | grep -v '^$' >"$f-children.txt" || true
                    perf report -i "$f.data" --no-children --stdio -g none --sort dso 2>/dev/null |
                        grep -v '^#' | grep -v '^$' >"$f-dso.txt" || true
                    echo "## $label, c$c: $(parse_wrk "$wlog"); perf, self time by library: $(head -n 4 "$f-dso.txt" | awk '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $2, $1 }')" |
                        tee -a "$pdir/summary.md"
                    head -n 25 "$f.txt" | tee -a "$pdir/summary.md"
                else
                    callgrind_control -z "$server_pid" >/dev/null 2>&1
                    callgrind_control -i on "$server_pid" >/dev/null 2>&1
                    run_wrk "$cpus" "$c" "$duration" "$port" "$wlog" || status=1
                    callgrind_control -d "c$c" "$server_pid" >/dev/null 2>&1
                    callgrind_control -i off "$server_pid" >/dev/null 2>&1
                    mv "$(newest "$pdir/callgrind-$s-w$w.out".*)" "$f.out"
                    callgrind_annotate --inclusive=no "$f.out" >"$f.txt" 2>/dev/null || true
                    callgrind_annotate --inclusive=yes "$f.out" >"$f-inclusive.txt" 2>/dev/null || true
                    total=$(awk '/PROGRAM TOTALS/ { gsub(/,/, "", $1); print $1; exit }' "$f.txt")
                    req=$(parse_wrk "$wlog" | sed 's/^requests=\([0-9]*\).*/\1/')
                    [ "${req:-0}" -gt 0 ] || die "wrk completed no request under callgrind (see $wlog)"
                    echo "## $label, c$c: $req requests, $(awk -v t="$total" -v n="$req" 'BEGIN { printf "%.0f", t / n }') instructions per request (user space); callgrind, self" |
                        tee -a "$pdir/summary.md"
                    awk '/file:function/ { on = 1; getline; next } on && NF && ++k <= 25 { print } on && !NF { on = 0 }' \
                        "$f.txt" | awk -v n="$req" '{ x = $1; gsub(/,/, "", x);
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
echo "# http benchmark, rill $rev, $(date '+%Y-%m-%d %H:%M'), $(uname -r), $ncpu CPUs, wrk -t$threads, $("$wrk" --version 2>&1 | awk 'NR == 1 { print $1, $2 }')" | tee "$out/summary.md"
echo "# rounds $rounds x ${duration} s (+${warmup} s warm-up per cell); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/summary.md"
echo "run.sh: servers ${servers[*]}, workers ${workers[*]}, conns ${conns[*]}, results in $out" >&2

failed=","
for ((r = 1; r <= rounds; r++)); do
    for w in "${workers[@]}"; do
        cpus=$(cpu_set "$w")
        for s in "${servers[@]}"; do
            label="$s (workers $w)"
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
            for c in "${conns[@]}"; do
                wlog=$out/logs/wrk-$s-w$w-c$c-r$r.txt
                if [ "$warmup" -gt 0 ]; then
                    run_wrk "$cpus" "$c" "$warmup" "$port" "$wlog" || true
                fi
                line="" best=""
                for ((attempt = 0; attempt <= retries; attempt++)); do
                    s0=$(proc_ticks "$server_pid" "${server_pids[@]}")
                    read -r b0 t0 rb0 rt0 <<<"$(cpu_sample "$cpus")"
                    rc=0
                    run_wrk "$cpus" "$c" "$duration" "$port" "$wlog" || rc=$?
                    read -r b1 t1 rb1 rt1 <<<"$(cpu_sample "$cpus")"
                    s1=$(proc_ticks "$server_pid" "${server_pids[@]}")
                    if [ "$rc" != 0 ] || ! grep -q '^Requests/sec:' "$wlog"; then
                        echo "run.sh: round $r $label c$c: wrk failed (status $rc): $(tr '\n' ' ' <"$wlog")" >&2
                        status=1
                        line="requests=0 req_s=na p50_us=na p99_us=na non2xx=0 sock_errors=0 wrk_failed=1 srv_cpu_us_req=na cli_cpu_us_req=na others_pct=na other_cpus_pct=na"
                        cp "$wlog" "$wlog.kept"
                        break
                    fi
                    fields=$(parse_wrk "$wlog")
                    req=$(echo "$fields" | sed 's/^requests=\([0-9]*\).*/\1/')
                    costs=$(awk -v s="$((s1 - s0))" -v c="$cli_ticks" -v n="$req" -v tck="$tck" \
                        -v b="$((b1 - b0))" -v t="$((t1 - t0))" -v rb="$((rb1 - rb0))" -v rt="$((rt1 - rt0))" 'BEGIN {
                        o = t > 0 ? 100 * (b - s - c) / t : 0; if (o < 0) o = 0
                        printf "srv_cpu_us_req=%.3f cli_cpu_us_req=%.3f others_pct=%.1f other_cpus_pct=%s",
                            n ? s * 1e6 / tck / n : 0, n ? c * 1e6 / tck / n : 0, o,
                            (rt > 0 ? sprintf("%.1f", 100 * rb / rt) : "na") }')
                    other=$(echo "$costs" | sed 's/.*others_pct=\([0-9.]*\).*/\1/')
                    if [ -z "$line" ] || awk -v a="$other" -v b="$best" 'BEGIN { exit !(a < b) }'; then
                        line="$fields $costs" best=$other
                        cp "$wlog" "$wlog.kept"
                    fi
                    awk -v a="$other" -v m="$max_other" 'BEGIN { exit !(a > m) }' || break
                    echo "run.sh: round $r $label c$c: other processes took ${other}% of CPUs $cpus; repeating" >&2
                done
                [ -f "$wlog.kept" ] && mv "$wlog.kept" "$wlog"
                [ -n "$line" ] || continue
                echo "round=$r server=$s workers=$w cpus=$cpus conns=$c threads=$threads seconds=$duration $line resp_bytes=$resp_bytes verified=1" >>"$results"
                case "$line" in *" non2xx=0 sock_errors=0 s"*) ;; *) status=1 ;; esac
                printf 'run.sh: round %d %-5s w%d c%-3s %s\n' "$r" "$s" "$w" "$c" \
                    "$(echo "$line" | grep -o 'req_s=[^ ]*\|p50_us=[^ ]*\|p99_us=[^ ]*\|srv_cpu_us_req=[^ ]*\|non2xx=[^ ]*\|sock_errors=[^ ]*\|others_pct=[^ ]*' | tr '\n' ' ')" >&2
            done
            stop_server "$label" "$log"
        done
    done
done

summarize "$results" | tee -a "$out/summary.md"
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/summary.md"
exit "$status"
