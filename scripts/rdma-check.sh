#!/usr/bin/env bash
# CI entry point for the real-RDMA tests: builds (or reuses) the Soft-RoCE
# guest, then runs tests/rdma/smoke.sh against BUILD_DIR in ONE guest boot.
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
      say "PASSED in $((SECONDS - t0)) s"
    else
      say "FAILED (smoke suite exit status $rc) after $((SECONDS - t0)) s"
    fi
    exit "$rc"
    ;;
  build-failed* | boot-failed* | setup-failed*)
    cannot_run "$status (scripts/rxe-vm/run.sh exit $rc)" "$rc"
    ;;
  timeout)
    say "FAILED: the smoke suite timed out (RXE_VM_TIMEOUT) after $((SECONDS - t0)) s"
    exit "$rc"
    ;;
  *)
    say "FAILED: scripts/rxe-vm/run.sh exit $rc (${status:-no status})"
    exit $((rc == 0 ? 1 : rc))
    ;;
esac
