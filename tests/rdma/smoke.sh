#!/usr/bin/env bash
# RDMA smoke suite, run INSIDE the Soft-RoCE guest:
#
#   scripts/rxe-vm/run.sh tests/rdma/smoke.sh BUILD_DIR [-- CMD [ARGS...]]
#
# (scripts/rdma-check.sh BUILD_DIR does exactly this, plus the guest build.)
#
# Checks, one PASS/FAIL line each, then "rdma-smoke: N passed, N failed":
#   ibv_devinfo      the device is there with port 1 PORT_ACTIVE
#   ibv_rc_pingpong  rdma-core's RC pingpong, server + client (GID index)
#   rping            librdmacm ping, server + client, 10 verified pings
#   rxe_open         BUILD_DIR/tests/rdma/rxe_open (our verbs loopback check)
#   extra            the command after "--", if given (its exit status)
#
# Batching: a guest boot costs seconds, so run further suites in the same
# boot.  Either hand one command after "--", e.g. the RDMA transport's tests:
#   scripts/rxe-vm/run.sh tests/rdma/smoke.sh build -- ctest --test-dir build -L rdma --output-on-failure
# or chain anything with bash -c (the first failure does not stop the rest):
#   scripts/rxe-vm/run.sh bash -c 'tests/rdma/smoke.sh build; a=$?; ctest --test-dir build -L rdma; exit $((a | $?))'
#
# Needs RXE_VM_DEV / RXE_VM_IP / RXE_VM_GID_INDEX (set by run.sh); on a host
# with a real RDMA device, set them by hand.  Exit 0 iff every check passed,
# 2 on usage errors.  RDMA_SMOKE_TIMEOUT (s, default 120) bounds each tool,
# RDMA_SMOKE_EXTRA_TIMEOUT (default 1500) the extra command.  The tools'
# output is printed for failed checks, for all with RDMA_SMOKE_VERBOSE=1.
set -uo pipefail

usage() {
  sed -n '2,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
  exit 2
}
(($# >= 1)) || usage
build_dir=$1
shift
extra=()
if (($# > 0)); then
  [[ $1 == -- ]] || usage
  shift
  extra=("$@")
  ((${#extra[@]} > 0)) || usage
fi

if [[ -z ${RXE_VM_DEV:-} || -z ${RXE_VM_IP:-} ]]; then
  echo "rdma-smoke: RXE_VM_DEV/RXE_VM_IP not set: run me in the RDMA guest:" >&2
  echo "  scripts/rxe-vm/run.sh tests/rdma/smoke.sh $build_dir" >&2
  exit 2
fi
dev=$RXE_VM_DEV
ip=$RXE_VM_IP
gidx=${RXE_VM_GID_INDEX:-1}
tmo=${RDMA_SMOKE_TIMEOUT:-120}

work=$(mktemp -d "${TMPDIR:-/tmp}/rdma-smoke.XXXXXX")
bg_pids=()
cleanup() {
  local p
  for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

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
t() { timeout -k 5 "$tmo" stdbuf -oL -eL "$@"; }
# Tool output is shown for failed checks only (all with RDMA_SMOKE_VERBOSE=1).
show() { sed "s/^/    [$1] /" "$2"; }
show_if() { # FAILED(0/1) LABEL FILE
  if (($1 != 0)) || [[ ${RDMA_SMOKE_VERBOSE:-0} == 1 ]]; then show "$2" "$3"; fi
}
uptime_s() { cut -d' ' -f1 /proc/uptime; }

listening_tcp() { # PORT: is something listening on it?
  ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
}

echo "rdma-smoke: device $dev, IP $ip, GID index $gidx, build dir $build_dir"

# --- ibv_devinfo --------------------------------------------------------
check_devinfo() {
  local out=$work/devinfo.log
  if t ibv_devinfo -d "$dev" >"$out" 2>&1 && grep -q 'PORT_ACTIVE' "$out"; then
    show_if 0 ibv_devinfo "$out"
    result ibv_devinfo 0 "$dev port 1 PORT_ACTIVE"
  else
    show ibv_devinfo "$out"
    result ibv_devinfo 1 "$dev missing or port not PORT_ACTIVE"
  fi
}

# --- ibv_rc_pingpong: server in the background, the client once the
# server's TCP rendezvous port is listening (retried in case it was early) ---
check_rc_pingpong() {
  local port=18515 srv=$work/pp-server.log cli=$work/pp-client.log
  local spid i crc=1 src deadline
  t ibv_rc_pingpong -d "$dev" -g "$gidx" -p "$port" >"$srv" 2>&1 &
  spid=$!
  bg_pids+=("$spid")
  deadline=$((SECONDS + 30))
  until listening_tcp "$port" || ((SECONDS >= deadline)) || ! kill -0 "$spid" 2>/dev/null; do
    sleep 0.2
  done
  for i in 1 2 3 4 5; do
    t ibv_rc_pingpong -d "$dev" -g "$gidx" -p "$port" "$ip" >"$cli" 2>&1
    crc=$?
    # Retry only while the server has not accepted yet (nothing exchanged).
    if ((crc == 0)) || ! grep -q "Couldn't connect" "$cli" || ! kill -0 "$spid" 2>/dev/null; then
      break
    fi
    echo "    [ibv_rc_pingpong] client attempt $i could not connect, retrying"
    sleep 1
  done
  wait "$spid"
  src=$?
  local bad=1
  ((crc == 0 && src == 0)) && grep -q 'iters in' "$cli" && bad=0
  show_if "$bad" "pingpong server" "$srv"
  show_if "$bad" "pingpong client" "$cli"
  if ((bad == 0)); then
    result ibv_rc_pingpong 0 "$(grep -m1 'Mbit/sec' "$cli" | sed 's/^ *//')"
  else
    result ibv_rc_pingpong 1 "server exit $src, client exit $crc"
  fi
}

# --- rping: rdma_cm listens are not sockets, so give the server a head
# start and retry the client while it is refused -----------------------------
check_rping() {
  local srv=$work/rping-server.log cli=$work/rping-client.log
  local spid i crc=1 src n
  t rping -s -a "$ip" -C 10 -v >"$srv" 2>&1 &
  spid=$!
  bg_pids+=("$spid")
  sleep 1
  for i in 1 2 3 4 5 6 7 8 9 10; do
    t rping -c -a "$ip" -C 10 -v >"$cli" 2>&1
    crc=$?
    # Retry only while nothing was exchanged and the server still waits.
    if ((crc == 0)) || grep -q 'ping data' "$cli" || ! kill -0 "$spid" 2>/dev/null; then
      break
    fi
    echo "    [rping] client attempt $i failed before any ping, retrying"
    sleep 1
  done
  wait "$spid"
  src=$?
  n=$(grep -c 'ping data' "$cli")
  local bad=1
  ((crc == 0 && src == 0 && n >= 10)) && bad=0
  show_if "$bad" "rping server" "$srv"
  show_if "$bad" "rping client" "$cli"
  if ((bad == 0)); then
    result rping 0 "$n pings verified"
  else
    result rping 1 "server exit $src, client exit $crc, $n ping lines"
  fi
}

# --- our own verbs check ----------------------------------------------------
check_rxe_open() {
  local bin=$build_dir/tests/rdma/rxe_open out=$work/rxe_open.log rc
  if [[ ! -x $bin ]]; then
    result rxe_open 1 "$bin not built (configure with RDMA enabled and build first)"
    return
  fi
  # stdbuf preloads its library ahead of a sanitizer runtime: let ASan
  # builds of the check start anyway.
  ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
    RXE_VM_DEV=$dev RXE_VM_GID_INDEX=$gidx t "$bin" >"$out" 2>&1
  rc=$?
  show_if "$((rc != 0))" rxe_open "$out"
  if ((rc == 0)); then
    result rxe_open 0 "RDMA WRITE + SEND/RECV verified"
  else
    result rxe_open 1 "exit $rc: $(grep -m1 'FAIL' "$out")"
  fi
}

check_extra() {
  local rc
  echo "rdma-smoke: running extra: ${extra[*]}"
  timeout -k 10 "${RDMA_SMOKE_EXTRA_TIMEOUT:-1500}" "${extra[@]}"
  rc=$?
  result "extra: ${extra[*]}" "$((rc != 0))" "exit $rc"
}

for c in check_devinfo check_rc_pingpong check_rping check_rxe_open; do
  t0=$(uptime_s)
  "$c"
  echo "    (${c#check_}: $(awk -v a="$t0" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }') s)"
done
((${#extra[@]} == 0)) || check_extra

echo "rdma-smoke: $passed passed, $failed failed"
((failed == 0))
