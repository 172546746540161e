#!/usr/bin/env bash
# Run a server and a client in two Soft-RoCE guests side by side, so RDMA
# traffic really crosses between two kernels (two rxe devices in one guest
# cannot talk): SERVER_CMD in pair-a (192.0.2.1), CLIENT_CMD in pair-b
# (192.0.2.2).  See scripts/rxe-vm/README.md.
#
# Usage: scripts/rdma-pair.sh [--timeout S] SERVER_CMD CLIENT_CMD
#   SERVER_CMD, CLIENT_CMD  one string each, run with `bash -c` in its guest,
#              in the caller's cwd with the caller's environment plus
#              RXE_VM_DEV, RXE_VM_IP (own address), RXE_VM_PEER_IP (the
#              other guest's), RXE_VM_GID_INDEX, RXE_VM_NET (pair-a/pair-b)
#   --timeout S  bound for each VM run, boot included (default 600)
#
# Example:
#   scripts/rdma-pair.sh 'rping -s -a $RXE_VM_IP -C 10 -v' \
#     'tests/rdma/pair_smoke.sh client'        # (or the pair_smoke.sh pair)
#
# Both guests boot at the same time, in any order: the client must retry its
# connect until the server listens (rdma_cm: REJECTED until then).  Output is
# streamed live, each line prefixed [a] (server) or [b] (client).  When one
# side fails or times out, the other VM is stopped.
#
# Exit status: 0 iff both commands exited 0; 125 harness failure (a guest
# could not be built, booted or set up, or a UDP port was busy; the reason is
# printed); 124 a VM run timed out; otherwise the first failing command's
# status; 130/143 on SIGINT/SIGTERM (both VMs stopped), 2 on usage errors.
#
# Env: RXE_VM_PAIR_PORTS (UDP ports on 127.0.0.1 carrying the guests'
# Ethernet, A:B, default 47990:47991; give concurrent pair runs different
# ones), RXE_VM_SMP (default 1 here: two VMs on a 2-core machine), and the
# other RXE_VM_* settings of scripts/rxe-vm/run.sh.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
vm=$root/scripts/rxe-vm

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
  exit 2
}
tmo=600
while (($# > 0)); do
  case $1 in
    --timeout) (($# >= 2)) || usage; tmo=$2; shift 2 ;;
    --timeout=*) tmo=${1#*=}; shift ;;
    -h | --help) usage ;;
    --) shift; break ;;
    -*) usage ;;
    *) break ;;
  esac
done
(($# == 2)) || usage
[[ $tmo =~ ^[1-9][0-9]*$ ]] || { echo "rdma-pair: --timeout must be a positive integer" >&2; exit 2; }
declare -A cmds=([a]="$1" [b]="$2")

say() { printf 'rdma-pair: %s\n' "$*" >&2; }
t_start=$EPOCHREALTIME
wall() { awk -v a="$t_start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

# Build (or check) the guest once, before two runs race for its lock.
if ! "$vm/build-guest.sh" -q >/dev/null; then
  say "HARNESS FAILURE: building the guest failed (see above)"
  exit 125
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/rdma-pair.XXXXXX")
declare -A pid=([a]="" [b]="") rc=([a]=1 [b]=1) stopped=()
declare -A role=([a]=server [b]=client) net=([a]=pair-a [b]=pair-b)
pref_pids=()

stop() { # TAG: stop that VM (run.sh's TERM trap stops qemu), reap it
  local t=$1 r=0
  [[ -n ${pid[$t]} ]] || return 0
  kill -TERM "${pid[$t]}" 2>/dev/null || true
  wait "${pid[$t]}" 2>/dev/null || r=$?
  rc[$t]=$r
  stopped[$t]=1
  pid[$t]=""
}
# shellcheck disable=SC2317 # reached via trap
cleanup() {
  local p
  stop a
  stop b
  for p in "${pref_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
# shellcheck disable=SC2317 # reached via trap
on_signal() {
  trap - INT TERM
  say "caught SIG$1, stopping both VMs"
  stop a
  stop b
  exit "$2"
}
trap cleanup EXIT
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM

start() { # TAG
  local t=$1
  mkfifo "$tmp/$t.out" "$tmp/$t.err"
  sed -u "s/^/[$t] /" <"$tmp/$t.out" &
  pref_pids+=($!)
  sed -u "s/^/[$t] /" <"$tmp/$t.err" >&2 &
  pref_pids+=($!)
  RXE_VM_NET=${net[$t]} RXE_VM_TIMEOUT=$tmo RXE_VM_SMP=${RXE_VM_SMP:-1} \
    RXE_VM_STATUS_FILE=$tmp/$t.status \
    "$vm/run.sh" bash -c "${cmds[$t]}" >"$tmp/$t.out" 2>"$tmp/$t.err" &
  pid[$t]=$!
}

say "server (pair-a): ${cmds[a]}"
say "client (pair-b): ${cmds[b]}"
start a
start b

# Wait for the first to end; a failure stops the other, a success waits for
# it.  run.sh bounds each VM by --timeout; the deadline here is a backstop.
deadline=$((SECONDS + tmo + 60))
first_fail="" timed_out=0
while [[ -n ${pid[a]} || -n ${pid[b]} ]]; do
  for t in a b; do
    if [[ -z ${pid[$t]} ]] || kill -0 "${pid[$t]}" 2>/dev/null; then continue; fi
    r=0
    wait "${pid[$t]}" || r=$?
    pid[$t]=""
    rc[$t]=$r
    if ((r != 0)) && [[ -z $first_fail ]]; then
      first_fail=$t
      o=$([[ $t == a ]] && echo b || echo a)
      if [[ -n ${pid[$o]} ]]; then
        say "${role[$t]} [$t] failed (exit $r): stopping the ${role[$o]} [$o]"
        stop "$o"
      fi
    fi
  done
  if ((SECONDS > deadline)); then
    say "backstop deadline passed: stopping both VMs"
    for t in a b; do
      if [[ -n ${pid[$t]} ]]; then stop "$t"; rc[$t]=124 timed_out=1; fi
    done
    first_fail=${first_fail:-a}
  fi
  [[ -z ${pid[a]} && -z ${pid[b]} ]] || sleep 0.2
done
wait "${pref_pids[@]}" 2>/dev/null || true
pref_pids=()

# Report each side: its status line from run.sh tells the harness failures
# (build/boot/setup) from the command's own exit status.
harness=0
for t in a b; do
  st=$(head -n1 "$tmp/$t.status" 2>/dev/null || true)
  r=${rc[$t]}
  case $st in
    build-failed* | boot-failed* | setup-failed* | usage*)
      harness=1
      say "${role[$t]} [$t]: HARNESS FAILURE: $st (run.sh exit $r)" ;;
    timeout)
      timed_out=1
      say "${role[$t]} [$t]: TIMED OUT after $tmo s (run.sh exit $r)" ;;
    ok) say "${role[$t]} [$t]: command exit $r" ;;
    *)
      if [[ -n ${stopped[$t]:-} ]]; then
        say "${role[$t]} [$t]: stopped (run.sh exit $r)"
      else
        say "${role[$t]} [$t]: run.sh exit $r (${st:-no status})"
        ((r != 125)) || harness=1
      fi
      ;;
  esac
done

if [[ ${rc[a]} == 0 && ${rc[b]} == 0 ]]; then
  say "PASSED in $(wall) s"
  exit 0
fi
if ((harness)); then
  say "FAILED: harness failure (a guest could not run) after $(wall) s"
  exit 125
fi
if ((timed_out)); then
  say "FAILED: timed out after $(wall) s"
  exit 124
fi
r=${rc[${first_fail:-a}]}
[[ $r =~ ^[0-9]+$ ]] && ((r != 0)) || r=1
say "FAILED: the ${role[${first_fail:-a}]} exited with $r after $(wall) s"
exit "$r"
