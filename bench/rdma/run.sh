#!/usr/bin/env bash
# rill over rdma:// against perftest, in ONE Soft-RoCE guest boot:
#
#   scripts/rxe-vm/run.sh bench/rdma/run.sh BUILD_DIR [--quick] [--no-callgrind]
#
# BUILD_DIR: a Release build with RILL_RDMA=ON and RILL_BUILD_BENCH=ON (it
# has bench/rdma/rdma_bench), e.g.
#   cmake -S . -B build/bench-rdma -G Ninja -DCMAKE_BUILD_TYPE=Release \
#         -DRILL_RDMA=ON -DRILL_BUILD_BENCH=ON -DRILL_BUILD_TESTS=OFF
#
# Runs, on the guest's one rxe device talking to itself:
#   ping-pong latency, 2 B and 64 B: ib_send_lat (busy-polling, and -e for
#     completion events) vs rdma_bench pingpong (loop busy_poll on / off)
#   streaming bandwidth, 64 KiB and 1 MiB: ib_send_bw (poll and -e),
#     ib_write_bw (poll; it has no -e) vs rdma_bench stream (busy poll, events)
#   one-sided READ latency, 2 B / 64 B / 4 KiB, one outstanding:
#     ib_read_lat (poll, -e) vs rdma_bench read (busy poll, events)
#   user-space instructions per round trip (callgrind, event mode, 64 B
#     ping-pong) of both rdma_bench processes, from two runs of different
#     lengths (the difference cancels start-up); perftest is left out (it
#     spins on the CQ, see README.md)
# and prints a table with rill / perftest ratios (lower is better for
# latency, higher for bandwidth). The guest is emulated
# (TCG): absolute figures mean little, ratios within one run do.
#
# --quick: fewer iterations (a smoke run). --no-callgrind: skip callgrind.
# ROUNDS=N (default 2) repeats the timing part, alternating the order of
# rill and perftest, and reports the median of the rounds (the mean of two).
# RDMA_BENCH_OUT=DIR keeps the raw logs there (default: a temporary dir;
# give a dir under the cwd to see them on the host). RDMA_BENCH_TIMEOUT
# (s, default 60) bounds each tool run: perftest's -e tests sometimes hang
# on rxe (a completion event that never comes); they are then reported as
# failed and their cells stay empty.
set -uo pipefail

usage() {
  sed -n '2,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
  exit 2
}
(($# >= 1)) || usage
build=$1
shift
quick=0
callgrind=1
for a in "$@"; do
  case $a in
  --quick) quick=1 ;;
  --no-callgrind) callgrind=0 ;;
  *) usage ;;
  esac
done
bench=$build/bench/rdma/rdma_bench
if [[ ! -x $bench ]]; then
  echo "rdma-bench: $bench not built (RILL_RDMA=ON, RILL_BUILD_BENCH=ON)" >&2
  exit 2
fi
if [[ -z ${RXE_VM_IP:-} ]]; then
  echo "rdma-bench: run me in the RDMA guest: scripts/rxe-vm/run.sh $0 $build" >&2
  exit 2
fi
ip=$RXE_VM_IP
rounds=${ROUNDS:-2}
if ((quick)); then
  lat_n=300 bw_n_64k=100 bw_n_1m=10 cg_n1=50 cg_n2=250
else
  lat_n=1000 bw_n_64k=200 bw_n_1m=20 cg_n1=100 cg_n2=600
fi
out=${RDMA_BENCH_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/rdma-bench.XXXXXX")}
mkdir -p "$out"
results=$out/results.txt # lines: KEY VALUE
: >"$results"
bg=()
cleanup() {
  local p
  for p in "${bg[@]}"; do kill "$p" 2>/dev/null; done
}
trap cleanup EXIT
t() { timeout -k 5 "${RDMA_BENCH_TIMEOUT:-60}" "$@"; }
tv() { timeout -k 5 180 "$@"; } # under valgrind: start-up alone takes seconds
port=18600
next_port() { port=$((port + 1)); }
put() { echo "$1 $2" >>"$results"; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }

echo "rdma-bench: $(date -u '+%Y-%m-%d %H:%M UTC'), guest $(nproc) CPU(s), device ${RXE_VM_DEV:-?}," \
  "load $(cut -d' ' -f1-3 /proc/loadavg), rounds $rounds, latency iterations $lat_n"

# ---- perftest: server in the background, client retried until it connects ----
# perftest NAME TOOL ARGS...: records the client's output in $out/NAME.cli
perftest() {
  local name=$1 tool=$2
  shift 2
  next_port
  local srv=$out/$name.srv cli=$out/$name.cli spid rc=1
  t "$tool" -R -F -p "$port" "$@" >"$srv" 2>&1 &
  spid=$!
  bg+=("$spid")
  sleep 0.5
  for _ in $(seq 1 20); do
    t "$tool" -R -F -p "$port" "$@" "$ip" >"$cli" 2>&1
    rc=$?
    ((rc == 0)) && break
    kill -0 "$spid" 2>/dev/null || break
    grep -q '^ *[0-9]' "$cli" && break # ran, then failed: don't retry
    sleep 0.3
  done
  wait "$spid"
  if ((rc != 0)); then
    echo "rdma-bench: $name failed (client exit $rc):" >&2
    sed 's/^/    /' "$cli" >&2
    return 1
  fi
}
# Latency line: #bytes #iterations t_min t_max t_typical t_avg t_stdev 99% 99.9%
perftest_lat() { # KEY NAME TOOL ARGS...
  local key=$1
  shift
  perftest "$@" || return
  awk -v k="$key" '$1 ~ /^[0-9]+$/ && NF >= 8 {
      printf "%s.min %s\n%s.p50 %s\n%s.avg %s\n%s.p99 %s\n", k, $3, k, $5, k, $6, k, $8 }' "$out/$1.cli" >>"$results"
}
# Bandwidth line: #bytes #iterations BW_peak BW_average MsgRate (MB = MiB)
perftest_bw() { # KEY NAME TOOL ARGS...
  local key=$1
  shift
  perftest "$@" || return
  awk -v k="$key" '$1 ~ /^[0-9]+$/ && NF >= 5 { printf "%s.bw %s\n", k, $4 }' "$out/$1.cli" >>"$results"
}

# ---- rill: one rdma_bench server per mode, many client runs ----
rill_srv_pid=
rill_uri=
rill_server() { # MODE [WRAPPER...]
  local mode=$1
  shift
  next_port
  local log=$out/rill-server-$port.log
  "$@" "$bench" server --uri "rdma://$ip:$port" --busy-poll "$mode" >"$log" 2>&1 &
  rill_srv_pid=$!
  bg+=("$rill_srv_pid")
  for _ in $(seq 1 600); do
    grep -q '^ready port=' "$log" && break
    kill -0 "$rill_srv_pid" 2>/dev/null || break
    sleep 0.1
  done
  if ! grep -q '^ready port=' "$log"; then
    echo "rdma-bench: rill server ($mode) did not start:" >&2
    sed 's/^/    /' "$log" >&2
    return 1
  fi
  rill_uri="rdma://$ip:$port"
}
rill_server_stop() {
  [[ -n $rill_srv_pid ]] || return 0
  kill -TERM "$rill_srv_pid" 2>/dev/null
  wait "$rill_srv_pid" 2>/dev/null
  rill_srv_pid=
}
# rill_client KEY NAME ARGS...: one rdma_bench client run, parsed
rill_client() {
  local key=$1 name=$2
  shift 2
  local log=$out/$name.log
  if ! RDMA_BENCH_STATS=1 t "$bench" client --uri "$rill_uri" "$@" >"$log" 2>&1; then
    echo "rdma-bench: $name failed:" >&2
    sed 's/^/    /' "$log" >&2
    return 1
  fi
  awk -v k="$key" '/^result / {
      for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      if (v["test"] == "stream") printf "%s.bw %s\n", k, v["MiBps"]
      else printf "%s.min %s\n%s.p50 %s\n%s.avg %s\n%s.p99 %s\n", k, v["min_us"], k, v["p50_us"], k, v["avg_us"], k, v["p99_us"] }' \
    "$log" >>"$results"
}

perftest_part() { # ROUND
  local r=$1 s n
  for s in 2 64; do
    perftest_lat "r$r.lat$s.pt_poll" "r$r-send_lat-$s-poll" ib_send_lat -s "$s" -n "$lat_n"
    perftest_lat "r$r.lat$s.pt_event" "r$r-send_lat-$s-event" ib_send_lat -s "$s" -n "$lat_n" -e
  done
  for s in 2 64 4096; do
    perftest_lat "r$r.read$s.pt_poll" "r$r-read_lat-$s-poll" ib_read_lat -s "$s" -n "$lat_n"
    perftest_lat "r$r.read$s.pt_event" "r$r-read_lat-$s-event" ib_read_lat -s "$s" -n "$lat_n" -e
  done
  for s in 65536 1048576; do
    [[ $s == 65536 ]] && n=$bw_n_64k || n=$bw_n_1m
    perftest_bw "r$r.bw$s.pt_send_poll" "r$r-send_bw-$s-poll" ib_send_bw -s "$s" -n "$n"
    perftest_bw "r$r.bw$s.pt_send_event" "r$r-send_bw-$s-event" ib_send_bw -s "$s" -n "$n" -e
    perftest_bw "r$r.bw$s.pt_write_poll" "r$r-write_bw-$s-poll" ib_write_bw -s "$s" -n "$n"
  done
}

rill_part() { # ROUND
  local r=$1 mode m s
  for mode in off on; do
    [[ $mode == on ]] && m=busy || m=event
    rill_server "$mode" || continue
    for s in 2 64; do
      rill_client "r$r.lat$s.rill_$m" "r$r-rill-pingpong-$s-$m" --test pingpong --size "$s" \
        --iters "$lat_n" --busy-poll "$mode"
    done
    for s in 2 64 4096; do
      rill_client "r$r.read$s.rill_$m" "r$r-rill-read-$s-$m" --test read --size "$s" \
        --iters "$lat_n" --busy-poll "$mode"
    done
    rill_client "r$r.bw65536.rill_$m" "r$r-rill-stream-64k-$m" --test stream --size 65536 \
      --iters "$bw_n_64k" --busy-poll "$mode"
    rill_client "r$r.bw1048576.rill_$m" "r$r-rill-stream-1m-$m" --test stream --size 1048576 \
      --iters "$bw_n_1m" --busy-poll "$mode"
    rill_server_stop
  done
}

t0=$(uptime_s)
for r in $(seq 1 "$rounds"); do
  if ((r % 2)); then
    perftest_part "$r"
    rill_part "$r"
  else
    rill_part "$r"
    perftest_part "$r"
  fi
  echo "rdma-bench: round $r done at +$(awk -v a="$t0" -v b="$(uptime_s)" 'BEGIN { printf "%.0f", b - a }') s"
done

# ---- callgrind: instructions per round trip, event mode, 64 B ----
# Ir of the whole process from two runs of N1 and N2 round trips: (Ir2 -
# Ir1) / (N2 - N1) is the cost of one round trip, start-up and teardown
# cancel out. Client and server each do one send and one receive per round
# trip, so per message (send path + receive path) it is the same figure.
cg_total() { # FILE: the events total (Ir)
  awk '/^(summary|totals):/ { print $2; exit }' "$1"
}
cg_rill() { # N: runs the pair, records client and server Ir
  local n=$1 vg=(valgrind --tool=callgrind --dump-instr=no)
  rill_server off "${vg[@]}" "--callgrind-out-file=$out/cg-rill-server-$n.out" || return 1
  tv "${vg[@]}" "--callgrind-out-file=$out/cg-rill-client-$n.out" "$bench" client \
    --uri "$rill_uri" --test pingpong --size 64 --iters "$n" --warmup 0 --no-sort >"$out/cg-rill-client-$n.log" 2>&1 ||
    { sed 's/^/    /' "$out/cg-rill-client-$n.log" >&2; rill_server_stop; return 1; }
  rill_server_stop
  put "cg.rill_client.$n" "$(cg_total "$out/cg-rill-client-$n.out")"
  put "cg.rill_server.$n" "$(cg_total "$out/cg-rill-server-$n.out")"
}
if ((callgrind)); then
  if command -v valgrind >/dev/null; then
    for n in "$cg_n1" "$cg_n2"; do
      cg_rill "$n" || echo "rdma-bench: callgrind rill ($n) failed" >&2
    done
  else
    echo "rdma-bench: no valgrind: instruction counts skipped" >&2
    callgrind=0
  fi
  echo "rdma-bench: callgrind done at +$(awk -v a="$t0" -v b="$(uptime_s)" 'BEGIN { printf "%.0f", b - a }') s"
fi

# ---- the table ----
awk -v rounds="$rounds" -v n1="$cg_n1" -v n2="$cg_n2" -v cg="$callgrind" '
function med(key,   i, n, a, tmp, j, k) {
    n = 0
    for (i = 1; i <= rounds; i++) if (("r" i "." key) in v) a[++n] = v["r" i "." key] + 0
    if (n == 0) return ""
    for (j = 1; j <= n; j++) for (k = j + 1; k <= n; k++) if (a[k] < a[j]) { tmp = a[j]; a[j] = a[k]; a[k] = tmp }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function f(x) { return x == "" ? "-" : sprintf("%.2f", x) }
function ratio(a, b) { return (a == "" || b == "" || b == 0) ? "-" : sprintf("%.2f", a / b) }
function latrow(label, base,   st, pp, pe, rb, re) {
    for (st = 0; st < 4; st++) {
        s = st == 0 ? "min" : st == 1 ? "p50" : st == 2 ? "avg" : "p99"
        pp = med(base ".pt_poll." s); pe = med(base ".pt_event." s)
        rb = med(base ".rill_busy." s); re = med(base ".rill_event." s)
        printf "%-22s %-4s %10s %10s %10s %10s %11s %11s\n", label, s, f(pp), f(rb), f(pe), f(re), ratio(rb, pp), ratio(re, pe)
    }
}
{ v[$1] = $2 }
END {
    print ""
    print "Latency, microseconds (ping-pong: one-way = round trip / 2; READ: whole READ). Ratio = rill / perftest, lower is better."
    print "(The 4 ms timer tick of the guest makes p50/avg/p99 bimodal from run to run; min is the steadiest figure.)"
    printf "%-22s %-4s %10s %10s %10s %10s %11s %11s\n", "test", "stat", "pt poll", "rill busy", "pt event", "rill event", "busy ratio", "event ratio"
    latrow("send/recv 2 B", "lat2"); latrow("send/recv 64 B", "lat64")
    latrow("READ 2 B", "read2"); latrow("READ 64 B", "read64"); latrow("READ 4 KiB", "read4096")
    print ""
    print "Bandwidth, MiB/s (perftest MB/sec). Ratio = rill / perftest in the same mode (busy: poll), higher is better."
    print "(ib_write_bw has no event mode: its event rows compare with its polling figure.)"
    printf "%-7s %-6s %9s %9s %9s %12s %12s\n", "size", "mode", "send_bw", "write_bw", "rill", "rill/send", "rill/write"
    for (z = 0; z < 2; z++) {
        sz = z == 0 ? 65536 : 1048576
        for (m = 0; m < 2; m++) {
            pm = m == 0 ? "poll" : "event"; rm = m == 0 ? "busy" : "event"
            ps = med("bw" sz ".pt_send_" pm ".bw"); pw = med("bw" sz ".pt_write_poll.bw")
            rr = med("bw" sz ".rill_" rm ".bw")
            printf "%-7s %-6s %9s %9s %9s %12s %12s\n", z == 0 ? "64 KiB" : "1 MiB", rm, f(ps), f(pw), f(rr), ratio(rr, ps), ratio(rr, pw)
        }
    }
    if (cg) {
        print ""
        print "User-space instructions per round trip (callgrind, 64 B ping-pong, event mode, (Ir(" n2 ") - Ir(" n1 ")) / " n2 - n1 ")."
        print "Each process sends one message and receives one per round trip: the figure is its send path + receive path."
        print "(perftest is not measured: it spins on ibv_poll_cq even with -e, so its count measures the wait; see README.md.)"
        printf "%-10s %14s %14s\n", "process", "Ir/round trip", "Ir/message"
        split("client server", who, " ")
        for (w = 1; w <= 2; w++) {
            r1 = v["cg.rill_" who[w] "." n1]; r2 = v["cg.rill_" who[w] "." n2]
            ri = (r1 != "" && r2 != "") ? (r2 - r1) / (n2 - n1) : ""
            printf "%-10s %14s %14s\n", who[w], ri == "" ? "-" : sprintf("%.0f", ri), ri == "" ? "-" : sprintf("%.0f", ri / 2)
        }
    }
}' "$results"
echo
echo "rdma-bench: total +$(awk -v a="$t0" -v b="$(uptime_s)" 'BEGIN { printf "%.0f", b - a }') s of guest time; raw logs in $out"
