#!/usr/bin/env bash
# Set up, build and run every test (the README's test command).
#
#   scripts/test.sh                 Debug build in build/debug, all ctest suites
#   RILL_SANITIZE=address scripts/test.sh      ASan+UBSan build in build/asan
#   RILL_SANITIZE=thread  scripts/test.sh      TSan build in build/tsan, tests labelled "threaded"
#   RILL_CTEST_ARGS="-L core" scripts/test.sh  pass extra arguments to ctest
#
# Every test runs with the leak detector in paranoid mode; a leaked message
# fails its test.
set -euo pipefail
cd "$(dirname "$0")/.."

"${RILL_SETUP:-scripts/setup.sh}"

san="${RILL_SANITIZE:-}"
case "$san" in
"") dir=build/debug ;;
address) dir=build/asan ;;
thread) dir=build/tsan ;;
*) echo "test.sh: RILL_SANITIZE must be empty, address or thread" >&2; exit 2 ;;
esac
dir="${RILL_BUILD_DIR:-$dir}"

cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DRILL_SANITIZE="$san" \
    -DRILL_BUILD_BENCH=OFF ${RILL_CMAKE_ARGS:-} >/dev/null
cmake --build "$dir"

ctest_args=(--output-on-failure -j "$(nproc)")
if [ "$san" = thread ]; then
    ctest_args+=(-L threaded)
    # TSan needs an address space without ASLR surprises on some kernels.
    export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1 second_deadlock_stack=1}"
elif [ "$san" = address ]; then
    export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
    export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1 halt_on_error=1}"
fi
# Tests labelled "guest" need a real RDMA device: they run inside the
# Soft-RoCE guest (scripts/rdma-check.sh, a CI stage), not here, unless this
# machine has a device (RXE_VM_DEV set, as inside the guest).
if [ -z "${RXE_VM_DEV:-}" ] && grep -q "RILL_RDMA:BOOL=ON" "$dir/CMakeCache.txt" 2>/dev/null; then
    ctest_args+=(-LE guest)
    echo "##################################################################"
    echo "### test.sh: the RDMA device tests (ctest label 'guest') are NOT"
    echo "### run by this command: no RDMA device here. They run in the"
    echo "### Soft-RoCE guest: scripts/rdma-check.sh $dir (CI does)."
    echo "##################################################################"
fi
# shellcheck disable=SC2086
ctest --test-dir "$dir" "${ctest_args[@]}" ${RILL_CTEST_ARGS:-}
