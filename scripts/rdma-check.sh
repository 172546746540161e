#!/usr/bin/env bash
# CI entry point for the real-RDMA tests: builds (or reuses) the Soft-RoCE
# guest, then runs tests/rdma/smoke.sh against BUILD_DIR in ONE guest boot,
# then a server/client pair across TWO guests (scripts/rdma-pair.sh; default
# tests/rdma/pair_smoke.sh: rping + ibv_rc_pingpong between two kernels).
#
# Usage: scripts/rdma-check.sh BUILD_DIR [-- CMD [ARGS...]]
#   BUILD_DIR  a build configured with RDMA enabled (has tests/rdma/rxe_open)
#   -- CMD     one more suite to run in the same boot, counted by the smoke
#              summary (e.g. -- ctest --test-dir BUILD_DIR -L rdma)
#
# Exit status: 0 all checks passed; non-zero otherwise.  If the guest cannot
# be built, booted or set up (no qemu, no kernel package, no Soft-RoCE...),
# that is a failure, unless RILL_SKIP_RDMA=1: then a loud banner says the RDMA
# tests were SKIPPED and why, and the exit status is 0.  A test failure or a
# timeout is never skipped.  Env for the VM: see scripts/rxe-vm/run.sh.
#
# Pair run env: RILL_RDMA_PAIR=0 skips it (default on).  RDMA_PAIR_SERVER_CMD
# and RDMA_PAIR_CLIENT_CMD (set both or neither): the two `bash -c` strings
# for pair-a (server, 192.0.2.1) and pair-b (client, retries until the server
# listens), run in the caller's cwd with RILL_RDMA_BUILD_DIR=BUILD_DIR (shared
# read-write) and RXE_VM_IP / RXE_VM_PEER_IP set; default the pair_smoke.sh
# pair.  RDMA_PAIR_TIMEOUT (s, default 600) bounds each of the two VMs.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
vm=$root/scripts/rxe-vm

if (($# < 1)) || [[ $1 == -h || $1 == --help ]]; then
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
  exit 2
fi
[[ -d $1 ]] || { echo "rdma-check: build dir '$1' does not exist" >&2; exit 2; }
build_dir=$(cd -- "$1" && pwd -P)
shift

t0=$SECONDS
say() { printf 'rdma-check: %s\n' "$*"; }

# The guest could not be made to run: fail, or skip loudly if allowed.
cannot_run() { # REASON EXIT_STATUS
  if [[ ${RILL_SKIP_RDMA:-0} == 1 ]]; then
    local line='##########################################################################'
    printf '\n%s\n%s\n' "$line" "$line"
    printf '###\n###   RDMA TESTS SKIPPED  (RILL_SKIP_RDMA=1)\n###\n'
    printf '###   The RDMA guest could not run, so NOTHING RDMA-related was tested:\n'
    printf '###     %s\n' "$1"
    printf '###\n###   Unset RILL_SKIP_RDMA to make this a failure.\n###\n'
    printf '%s\n%s\n\n' "$line" "$line"
    exit 0
  fi
  say "FAILED: the RDMA guest could not run: $1"
  say "(set RILL_SKIP_RDMA=1 to skip the RDMA tests on a machine that cannot run the guest)"
  exit "$2"
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/rdma-check.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

say "building the RDMA guest (cache ${RXE_VM_CACHE:-/var/tmp/rxe-vm})"
# Its log stays live on stderr; a copy gives the reason for the banner.
build_guest() { "$vm/build-guest.sh" 2>&1 >/dev/null | tee "$tmp/build.log" >&2; }
# Stale package lists name a kernel the archive no longer has: as root,
# refresh them once and try again.
guest_failed=0
if ! build_guest; then
  guest_failed=1
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    say "guest build failed; refreshing the package lists and retrying once"
    apt-get -o DPkg::Lock::Timeout=600 update -q >&2 || true
    RXE_VM_REBUILD=1 build_guest && guest_failed=0
  fi
fi
if [ "$guest_failed" = 1 ]; then
  why=$(sed -n 's/^build-guest: error: //p' "$tmp/build.log" | head -n1)
  cannot_run "building the guest failed: ${why:-see scripts/rxe-vm/build-guest.sh output above}" 1
fi
command -v qemu-system-x86_64 >/dev/null 2>&1 ||
  cannot_run "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)" 1

# Not a guest problem: an RDMA build without the check binary is a failure.
if [[ ! -x $build_dir/tests/rdma/rxe_open ]]; then
  say "FAILED: $build_dir/tests/rdma/rxe_open is missing: configure the build with RDMA enabled and build it"
  exit 1
fi

pair=${RILL_RDMA_PAIR:-1}
q_smoke=$(printf '%q' "$root/tests/rdma/pair_smoke.sh")
pair_server=${RDMA_PAIR_SERVER_CMD:-$q_smoke server}
pair_client=${RDMA_PAIR_CLIENT_CMD:-$q_smoke client}
if [[ $pair != 0 && ${RDMA_PAIR_SERVER_CMD:+1} != "${RDMA_PAIR_CLIENT_CMD:+1}" ]]; then
  say "usage: set both RDMA_PAIR_SERVER_CMD and RDMA_PAIR_CLIENT_CMD, or neither"
  exit 2
fi
pair_tmo=${RDMA_PAIR_TIMEOUT:-600}

status_file=$tmp/status
say "running tests/rdma/smoke.sh in the guest"
rc=0
# The build dir is shared read-write too, so test outputs written there
# (ctest logs, junit files) land on the host.
RXE_VM_STATUS_FILE=$status_file RXE_VM_RW=$build_dir${RXE_VM_RW:+:$RXE_VM_RW} \
  "$vm/run.sh" "$root/tests/rdma/smoke.sh" "$build_dir" "$@" || rc=$?
status=$(head -n1 "$status_file" 2>/dev/null || true)

case $status in
  ok)
    if ((rc == 0)); then
      say "single guest: PASSED in $((SECONDS - t0)) s"
    else
      say "single guest: FAILED (smoke suite exit status $rc) after $((SECONDS - t0)) s"
    fi
    ;;
  build-failed* | boot-failed* | setup-failed*)
    cannot_run "$status (scripts/rxe-vm/run.sh exit $rc)" "$rc"
    ;;
  timeout)
    say "single guest: FAILED: the smoke suite timed out (RXE_VM_TIMEOUT) after $((SECONDS - t0)) s"
    ;;
  *)
    say "single guest: FAILED: scripts/rxe-vm/run.sh exit $rc (${status:-no status})"
    rc=$((rc == 0 ? 1 : rc))
    ;;
esac

if [[ $pair == 0 ]]; then
  say "pair run skipped (RILL_RDMA_PAIR=0)"
  say "$( ((rc == 0)) && echo PASSED || echo FAILED) in $((SECONDS - t0)) s"
  exit "$rc"
fi

# --- two guests: the server in pair-a, the client in pair-b -----------------
t1=$SECONDS
say "pair run (two guests): server: $pair_server"
say "pair run (two guests): client: $pair_client"
prc=0 note=""
RILL_RDMA_BUILD_DIR=$build_dir RXE_VM_RW=$build_dir${RXE_VM_RW:+:$RXE_VM_RW} \
  "$root/scripts/rdma-pair.sh" --timeout "$pair_tmo" "$pair_server" "$pair_client" || prc=$?
if ((prc == 0)); then
  say "pair run: PASSED in $((SECONDS - t1)) s"
elif ((prc == 125)) && [[ ${RILL_SKIP_RDMA:-0} == 1 ]]; then
  note=" (pair run SKIPPED: harness failure)"
  line='##########################################################################'
  printf '\n%s\n###\n###   RDMA PAIR TESTS SKIPPED  (RILL_SKIP_RDMA=1)\n' "$line"
  printf '###   The two-guest run could not start (harness failure, see above),\n'
  printf '###   so NOTHING was tested across two hosts.  The single-guest result stands.\n'
  printf '###\n%s\n\n' "$line"
elif ((prc == 125)); then
  say "pair run: FAILED: the two guests could not run (harness failure, see above)"
  say "(set RILL_SKIP_RDMA=1 to skip the RDMA tests on a machine that cannot run the guests)"
else
  say "pair run: FAILED (scripts/rdma-pair.sh exit $prc) after $((SECONDS - t1)) s"
fi
# The first failure's status wins; a skipped harness failure counts as none.
if ((rc == 0 && prc != 0)) && { ((prc != 125)) || [[ ${RILL_SKIP_RDMA:-0} != 1 ]]; }; then
  rc=$prc
fi
say "$( ((rc == 0)) && echo PASSED || echo FAILED) in $((SECONDS - t0)) s$note"
exit "$rc"
