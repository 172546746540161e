#!/usr/bin/env bash
# Build the libFuzzer targets (tests/fuzz/fuzz_<name>.c) with clang,
# ASan and UBSan, and run each for a bounded time on a copy of its seed
# corpus (tests/fuzz/corpus/<name>/; the repository is never written).
#
#   scripts/fuzz.sh                 every target, RILL_FUZZ_SECONDS (30) each
#   scripts/fuzz.sh decoder http    only these targets
#   RILL_FUZZ_SECONDS=300 scripts/fuzz.sh resp
#
# Environment:
#   RILL_FUZZ_SECONDS    fuzzing time per target (default 30)
#   RILL_FUZZ_MAX_LEN    largest input in bytes (default 4096)
#   RILL_FUZZ_BUILD_DIR  build directory (default build/fuzz)
#   RILL_SETUP           command run instead of scripts/setup.sh (as test.sh)
#
# Fails (non-zero) when any target crashes, leaks, exceeds -timeout=10 s on
# one input or -rss_limit_mb=2048, and prints the target and the reproducer
# path; rerun one with <build>/fuzz/fuzz_<name> <reproducer>. Prints one
# summary line per target. Scratch corpora, logs and reproducers go to
# <build>/fuzz-run/<name>/.
set -euo pipefail
cd "$(dirname "$0")/.."

"${RILL_SETUP:-scripts/setup.sh}"

dir="${RILL_FUZZ_BUILD_DIR:-build/fuzz}"
secs="${RILL_FUZZ_SECONDS:-30}"
max_len="${RILL_FUZZ_MAX_LEN:-4096}"
case "$secs" in '' | *[!0-9]*) echo "fuzz.sh: RILL_FUZZ_SECONDS must be a number" >&2; exit 2 ;; esac

# RelWithDebInfo: libFuzzer needs speed; the contract checks stay on.
CC=clang cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRILL_FUZZ=ON \
    -DRILL_DEBUG_CHECKS=ON -DRILL_BUILD_TESTS=OFF -DRILL_BUILD_EXAMPLES=OFF \
    -DRILL_BUILD_BENCH=OFF >/dev/null
cmake --build "$dir"

all=()
for src in tests/fuzz/fuzz_*.c; do
    [ -e "$src" ] || continue
    n=${src##*/fuzz_}
    all+=("${n%.c}")
done
if [ $# -gt 0 ]; then
    targets=("$@")
    for t in "${targets[@]}"; do
        if [ ! -f "tests/fuzz/fuzz_$t.c" ]; then
            echo "fuzz.sh: no target '$t' (have: ${all[*]:-none})" >&2
            exit 2
        fi
    done
else
    targets=("${all[@]}")
fi
if [ ${#targets[@]} -eq 0 ]; then
    echo "fuzz.sh: no fuzz targets in tests/fuzz" >&2
    exit 2
fi

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
export RILL_LOG="${RILL_LOG:-error}"

run_root="$dir/fuzz-run"
failed=()
summary=()
for t in "${targets[@]}"; do
    work="$run_root/$t"
    rm -rf "$work"
    mkdir -p "$work/corpus" "$work/artifacts"
    if [ -d "tests/fuzz/corpus/$t" ]; then
        cp -R "tests/fuzz/corpus/$t/." "$work/corpus/"
    else
        echo "fuzz.sh: warning: no seed corpus tests/fuzz/corpus/$t/" >&2
    fi
    dict=()
    [ -f "tests/fuzz/$t.dict" ] && dict=("-dict=tests/fuzz/$t.dict")
    echo "=== fuzz: $t for ${secs} s ==="
    rc=0
    # The outer timeout only guards against a hung process; libFuzzer
    # stops itself after max_total_time.
    timeout --signal=KILL $((secs * 2 + 120)) "$dir/fuzz/fuzz_$t" \
        -max_total_time="$secs" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$work/artifacts/" -print_final_stats=1 "${dict[@]}" \
        "$work/corpus" >"$work/log" 2>&1 || rc=$?
    # libFuzzer's final stats and its last status line ("#N DONE cov: ...").
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/log" | tail -1)
    cov=$({ grep -o ' cov: [0-9]*' "$work/log" || true; } | tail -1 | tr -dc 0-9)
    ft=$({ grep -o ' ft: [0-9]*' "$work/log" || true; } | tail -1 | tr -dc 0-9)
    corp=$(find "$work/corpus" -type f | wc -l)
    repro=$(find "$work/artifacts" -type f \
        \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | head -1)
    line=$(printf '%-14s runs %-10s execs/s %-7s cov %-6s ft %-6s corpus %s' "$t" "${runs:-?}" \
        "${speed:-?}" "${cov:-?}" "${ft:-?}" "$corp")
    if [ "$rc" -ne 0 ] || [ -n "$repro" ]; then
        tail -n 60 "$work/log"
        kind=${repro##*/}
        kind=${kind%%-*}
        [ "$rc" -eq 137 ] && kind="hung (killed after $((secs * 2 + 120)) s)"
        echo "fuzz: $t FAILED (${kind:-exit $rc}), log $work/log"
        if [ -n "$repro" ]; then
            echo "fuzz: $t reproducer: $repro"
            echo "fuzz: rerun: $dir/fuzz/fuzz_$t $repro"
        fi
        failed+=("$t")
        summary+=("FAIL $line")
    else
        summary+=("ok   $line")
    fi
done

echo
echo "=== fuzz summary (${secs} s per target) ==="
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz: all ${#targets[@]} target(s) passed"
