#!/usr/bin/env bash
# Cross-host RDMA smoke check with rdma-core's own tools, run INSIDE the two
# pair-mode guests, one side each:
#
#   scripts/rdma-pair.sh 'tests/rdma/pair_smoke.sh server' 'tests/rdma/pair_smoke.sh client'
#
# (scripts/rdma-check.sh runs exactly this after the single-guest suite.)
#
# Checks, in this order on both sides, one PASS/FAIL line each, then
# "rdma-pair-smoke ROLE: N passed, N failed":
#   rping            librdmacm: server in A on its own IP, client in B,
#                    10 verified pings; the client retries while the server
#                    is not listening yet (REJECTED / unreachable)
#   ibv_rc_pingpong  verbs RC over the TCP rendezvous port 18515, 500 x 4 KiB;
#                    the client retries while the port refuses connections
#                    (skip with RDMA_PAIR_PINGPONG=0)
#
# Needs RXE_VM_DEV, RXE_VM_IP, RXE_VM_PEER_IP, RXE_VM_GID_INDEX (set by
# scripts/rxe-vm/run.sh in pair mode).  Exit 0 iff every check passed on this
# side, 2 on usage errors.  RDMA_PAIR_WAIT (s, default 240) bounds how long
# a server waits for its client and a client retries its connect (the other
# VM may boot later); RDMA_SMOKE_TIMEOUT (s, default 120) bounds a connected
# run.  Tool output is printed for failed checks, for all with
# RDMA_SMOKE_VERBOSE=1.
set -uo pipefail

usage() {
  sed -n '2,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
  exit 2
}
(($# == 1)) || usage
role=$1
[[ $role == server || $role == client ]] || usage

for v in RXE_VM_DEV RXE_VM_IP RXE_VM_PEER_IP; do
  if [[ -z ${!v:-} ]]; then
    echo "rdma-pair-smoke: $v not set: run me in the pair-mode guests:" >&2
    echo "  scripts/rdma-pair.sh 'tests/rdma/pair_smoke.sh server' 'tests/rdma/pair_smoke.sh client'" >&2
    exit 2
  fi
done
dev=$RXE_VM_DEV
gidx=${RXE_VM_GID_INDEX:-1}
# The server listens on its own address, the client connects to its peer.
if [[ $role == server ]]; then srv_ip=$RXE_VM_IP; else srv_ip=$RXE_VM_PEER_IP; fi
wait_s=${RDMA_PAIR_WAIT:-240}
tmo=${RDMA_SMOKE_TIMEOUT:-120}
pp_port=18515

work=$(mktemp -d "${TMPDIR:-/tmp}/rdma-pair-smoke.XXXXXX")
trap 'rm -rf "$work"' EXIT

passed=0
failed=0
result() { # NAME OK(0/1) [DETAIL]
  if (($2 == 0)); then
    passed=$((passed + 1))
    echo "PASS $1${3:+ ($3)}"
  else
    failed=$((failed + 1))
    echo "FAIL $1${3:+ ($3)}"
  fi
}
# Line-buffered, bounded: a hung tool is killed and its output still shows.
t() { # SECONDS CMD...
  local s=$1
  shift
  timeout -k 5 "$s" stdbuf -oL -eL "$@"
}
show_if() { # FAILED(0/1) LABEL FILE
  if (($1 != 0)) || [[ ${RDMA_SMOKE_VERBOSE:-0} == 1 ]]; then sed "s/^/    [$2] /" "$3"; fi
}
uptime_s() { cut -d' ' -f1 /proc/uptime; }

echo "rdma-pair-smoke $role: device $dev, own IP $RXE_VM_IP, peer $RXE_VM_PEER_IP, GID index $gidx"

# --- rping: the server serves one connection (10 pings) and exits ----------
rping_server() {
  local out=$work/rping.log rc n bad=1
  # Its client may boot later than this VM: wait for it that long, plus the run.
  t $((wait_s + tmo)) rping -s -a "$srv_ip" -C 10 -v >"$out" 2>&1
  rc=$?
  n=$(grep -c 'server ping data' "$out")
  ((rc == 0 && n >= 10)) && bad=0
  show_if "$bad" "rping server" "$out"
  result rping "$bad" "server exit $rc, $n pings received"
}

rping_client() {
  local out=$work/rping.log rc=1 n i=0 bad=1 deadline=$((SECONDS + wait_s))
  while :; do
    i=$((i + 1))
    t "$tmo" rping -c -a "$srv_ip" -C 10 -v >"$out" 2>&1
    rc=$?
    # Retry only while nothing was exchanged (server VM not up or not
    # listening yet: REJECTED, UNREACHABLE or ADDR_ERROR).
    if ((rc == 0)) || grep -q 'ping data' "$out" || ((SECONDS >= deadline)); then break; fi
    ((i % 10 == 1)) && echo "    [rping] attempt $i: $(grep -m1 -iE 'event|error|fail' "$out" || echo "exit $rc"); retrying"
    sleep 1
  done
  n=$(grep -c 'ping data' "$out")
  ((rc == 0 && n >= 10)) && bad=0
  show_if "$bad" "rping client" "$out"
  result rping "$bad" "client exit $rc after $i attempt(s), $n pings verified"
}

# --- ibv_rc_pingpong: TCP rendezvous, then RC SEND/RECV over rxe ------------
pp_args=(-d "$dev" -g "$gidx" -p "$pp_port" -n 500)

pingpong_server() {
  local out=$work/pp.log rc bad=1
  t $((wait_s + tmo)) ibv_rc_pingpong "${pp_args[@]}" >"$out" 2>&1
  rc=$?
  ((rc == 0)) && grep -q 'iters in' "$out" && bad=0
  show_if "$bad" "pingpong server" "$out"
  result ibv_rc_pingpong "$bad" "server exit $rc"
}

pingpong_client() {
  local out=$work/pp.log rc=1 i=0 bad=1 deadline=$((SECONDS + wait_s))
  while :; do
    i=$((i + 1))
    t "$tmo" ibv_rc_pingpong "${pp_args[@]}" "$srv_ip" >"$out" 2>&1
    rc=$?
    # Retry only while the server's TCP port refused us (nothing exchanged).
    if ((rc == 0)) || ! grep -q "Couldn't connect" "$out" || ((SECONDS >= deadline)); then break; fi
    sleep 1
  done
  ((rc == 0)) && grep -q 'iters in' "$out" && bad=0
  show_if "$bad" "pingpong client" "$out"
  result ibv_rc_pingpong "$bad" "client exit $rc after $i attempt(s)$( ((bad)) || echo ", $(grep -m1 'Mbit/sec' "$out" | sed 's/^ *//')")"
}

checks=(rping)
[[ ${RDMA_PAIR_PINGPONG:-1} == 0 ]] || checks+=(pingpong)
for c in "${checks[@]}"; do
  t0=$(uptime_s)
  "${c}_$role"
  echo "    ($c: $(awk -v a="$t0" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }') s)"
done

echo "rdma-pair-smoke $role: $passed passed, $failed failed"
((failed == 0))
