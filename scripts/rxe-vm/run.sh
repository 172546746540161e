#!/usr/bin/env bash
# Run a command inside a throw-away qemu VM that has real kernel RDMA:
# Soft-RoCE device rxe0 on 192.0.2.1 (a veth inside the guest; the VM has no
# NIC).  The guest chroots into this machine's own root (shared read-only over
# 9p, writes go to a RAM overlay), so host-built binaries run as they are.
#
# Usage: run.sh CMD [ARGS...]
#
# CMD runs as root, in the caller's cwd, with the caller's environment plus
# RXE_VM_DEV=rxe0, RXE_VM_IP=192.0.2.1, RXE_VM_GID_INDEX=1; its stdin is
# /dev/null, its stdout/stderr are streamed here live.  The cwd and the dirs in
# RXE_VM_RW are shared read-write: what CMD writes there lands on the host;
# everything else it writes is lost at poweroff.
#
# Exit status: CMD's; 124 when RXE_VM_TIMEOUT expired; 125 when the harness
# failed (guest build, boot, rxe setup; the reason and the tail of the
# console / setup log are printed); 130/143 on SIGINT/SIGTERM (qemu is
# stopped).
#
# Env: RXE_VM_TIMEOUT (s, default 1800), RXE_VM_SMP (2), RXE_VM_MEM (MiB,
# 2048; the RAM overlay gets up to half), RXE_VM_RW (extra read-write dirs,
# ':'-separated), RXE_VM_CACHE (/var/tmp/rxe-vm), RXE_VM_ACCEL
# (tcg,thread=multi), RXE_VM_CPU (max), RXE_VM_KEEP=1 (keep the run dir),
# RXE_VM_VERBOSE=1 (print guest milestones and wall time), RXE_VM_STATUS_FILE
# (write one line there: ok, timeout, build-failed: ..., boot-failed: ...,
# setup-failed: ..., usage: ..., interrupted; a timeout before CMD started is
# boot-failed, still exit 124).
#
# Pair mode (two VMs talking RoCE to each other; scripts/rdma-pair.sh starts
# both): RXE_VM_NET=pair-a or pair-b (default veth: the single guest above).
# The VM gets one virtio-net NIC whose Ethernet frames qemu carries as UDP
# datagrams over 127.0.0.1 between the ports in RXE_VM_PAIR_PORTS (A:B,
# default 47990:47991; pair-a binds A, pair-b binds B); rxe0 sits on it with
# 192.0.2.1 (pair-a) or 192.0.2.2 (pair-b), and CMD also gets RXE_VM_PEER_IP
# (the other VM's address).  Use RXE_VM_SMP=1 for each on a 2-core machine.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
cache=${RXE_VM_CACHE:-/var/tmp/rxe-vm}
smp=${RXE_VM_SMP:-2}
mem=${RXE_VM_MEM:-2048}
tmo=${RXE_VM_TIMEOUT:-1800}
accel=${RXE_VM_ACCEL:-tcg,thread=multi}
cpu=${RXE_VM_CPU:-max}
status_file=${RXE_VM_STATUS_FILE:-}
net=${RXE_VM_NET:-veth}
pair_ports=${RXE_VM_PAIR_PORTS:-47990:47991}
t_start=$EPOCHREALTIME

say() { printf 'rxe-vm: %s\n' "$*" >&2; }
status() { if [[ -n $status_file ]]; then printf '%s\n' "$*" >"$status_file" || true; fi; }
harness_fail() { # REASON: status line + message, exit 125
  status "$1"
  say "$1"
  exit 125
}

if (($# == 0)); then
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
  harness_fail "usage: run.sh CMD [ARGS...]"
fi
for v in SMP MEM TIMEOUT; do
  case $v in SMP) x=$smp ;; MEM) x=$mem ;; TIMEOUT) x=$tmo ;; esac
  [[ $x =~ ^[1-9][0-9]*$ ]] || harness_fail "usage: RXE_VM_$v must be a positive integer, not '$x'"
done
case $net in
  veth) ;;
  pair-a | pair-b)
    port_a=0 port_b=0
    if [[ $pair_ports =~ ^([1-9][0-9]{0,4}):([1-9][0-9]{0,4})$ ]]; then
      port_a=${BASH_REMATCH[1]} port_b=${BASH_REMATCH[2]}
    fi
    if ((port_a == 0 || port_a > 65535 || port_b > 65535 || port_a == port_b)); then
      harness_fail "usage: RXE_VM_PAIR_PORTS must be two different UDP ports A:B, not '$pair_ports'"
    fi
    ;;
  *) harness_fail "usage: RXE_VM_NET must be veth, pair-a or pair-b, not '$net'" ;;
esac

command -v qemu-system-x86_64 >/dev/null 2>&1 ||
  harness_fail "boot-failed: qemu-system-x86_64 not installed (apt-get install qemu-system-x86)"

if ! RXE_VM_CACHE=$cache "$here/build-guest.sh" -q >/dev/null; then
  status "build-failed: build-guest.sh failed (see above)"
  say "building the guest failed (see above)"
  exit 125
fi
[[ -s $cache/vmlinux && -s $cache/initramfs.cpio.gz ]] ||
  harness_fail "build-failed: no guest in $cache after build-guest.sh"

# --- read-write shares: the cwd plus RXE_VM_RW, physical paths (the guest
# mounts them under its new root before chroot, where host symlinks would
# resolve wrongly), parents first, nested ones dropped as already covered ---
declare -a rw=()
add_rw() {
  local d
  d=$(cd -- "$1" 2>/dev/null && pwd -P) || harness_fail "usage: RXE_VM_RW entry '$1' is not a directory"
  if [[ $d == / ]]; then
    say "note: not sharing / read-write (run from a project dir to get outputs back)"
    return
  fi
  rw+=("$d")
}
add_rw "$PWD"
if [[ -n ${RXE_VM_RW:-} ]]; then
  IFS=: read -r -a extra <<<"$RXE_VM_RW"
  for d in "${extra[@]}"; do [[ -n $d ]] && add_rw "$d"; done
fi
declare -a shares=()
while IFS= read -r d; do
  [[ -n $d ]] || continue # no rw dirs at all (cwd /): printf gave one empty line
  covered=0
  for s in "${shares[@]}"; do
    [[ $d == "$s" || $d == "$s"/* ]] && covered=1
  done
  ((covered)) || shares+=("$d")
done < <(printf '%s\n' "${rw[@]}" | awk '{ print length($0) "\t" $0 }' | sort -n -k1,1 -s | cut -f2-)

# --- the run dir, shared with the guest as "results" ---------------------
rundir=$(mktemp -d "${TMPDIR:-/tmp}/rxe-vm.XXXXXX")
qpid=""
tail_pids=()
# shellcheck disable=SC2317 # reached via trap
cleanup() {
  local p
  for p in "${tail_pids[@]}" $qpid; do kill "$p" 2>/dev/null || true; done
  if [[ ${RXE_VM_KEEP:-0} == 1 ]]; then
    say "run dir kept: $rundir"
  else
    rm -rf "$rundir"
  fi
}
# shellcheck disable=SC2317 # reached via trap
on_signal() {
  trap - INT TERM
  say "caught SIG$1, stopping the VM"
  # qemu runs under timeout(1), which passes the TERM on to it.
  if [[ -n $qpid ]]; then
    kill -TERM "$qpid" 2>/dev/null || true
    wait "$qpid" 2>/dev/null || true
  fi
  status "interrupted"
  exit "$2"
}
trap cleanup EXIT
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM

sq() { printf "'%s'" "${1//\'/\'\\\'\'}"; } # quote for the guest's busybox sh
{
  echo "RXE_VM_RW_COUNT=${#shares[@]}"
  for i in "${!shares[@]}"; do echo "RXE_VM_RW_$i=$(sq "${shares[$i]}")"; done
  echo "RXE_VM_NET=$(sq "$net")" # read by guest-run.sh
} >"$rundir/config"
printf '%s\0' "$@" >"$rundir/argv"
env -0 >"$rundir/env"
printf '%s\0' "$PWD" "$(pwd -P)" >"$rundir/cwd"
cp "$here/guest-run.sh" "$rundir/guest-run.sh"
: >"$rundir/stdout.log"
: >"$rundir/stderr.log"

qopt() { printf '%s' "${1//,/,,}"; } # commas are option separators for qemu
qemu=(
  qemu-system-x86_64 -nodefaults -no-user-config -display none -monitor none
  -machine q35 -accel "$accel" -cpu "$cpu" -smp "$smp" -m "$mem"
  -no-reboot
  -kernel "$cache/vmlinux" -initrd "$cache/initramfs.cpio.gz"
  # panic=-1 + -no-reboot: a guest panic ends qemu at once.
  -append "console=ttyS0 panic=-1 quiet loglevel=4 rdinit=/init 8250.nr_uarts=1 tsc=reliable no_timer_check random.trust_cpu=on"
  -serial "file:$rundir/console.log"
  # multidevs=remap: / spans several host file systems; keeps inodes unique.
  -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"
  -virtfs "local,path=$(qopt "$rundir"),mount_tag=results,security_model=none,multidevs=remap"
)
for i in "${!shares[@]}"; do
  qemu+=(-virtfs "local,path=$(qopt "${shares[$i]}"),mount_tag=rw$i,security_model=none,multidevs=remap")
done
case $net in
  veth) qemu+=(-nic none) ;;
  # Frames go as UDP datagrams to the peer's port, no connection and so no
  # start order.  romfile=: no PXE option ROM (not needed for -kernel).
  pair-a) qemu+=(-netdev "socket,id=n0,udp=127.0.0.1:$port_b,localaddr=127.0.0.1:$port_a"
            -device "virtio-net-pci,netdev=n0,mac=52:54:00:c0:02:01,romfile=") ;;
  pair-b) qemu+=(-netdev "socket,id=n0,udp=127.0.0.1:$port_a,localaddr=127.0.0.1:$port_b"
            -device "virtio-net-pci,netdev=n0,mac=52:54:00:c0:02:02,romfile=") ;;
esac

# timeout(1) so the VM cannot outlive RXE_VM_TIMEOUT (exit 124), -k in case
# qemu ignores the TERM.
timeout -k 10 "$tmo" "${qemu[@]}" </dev/null >"$rundir/qemu.log" 2>&1 &
qpid=$!
# Stream the command's output while the VM runs; tail exits after a last
# read once qemu is gone.
tail -n +1 -s 0.2 -f --pid="$qpid" "$rundir/stdout.log" &
tail_pids+=($!)
tail -n +1 -s 0.2 -f --pid="$qpid" "$rundir/stderr.log" >&2 &
tail_pids+=($!)

qrc=0
wait "$qpid" || qrc=$?
qpid=""
wait "${tail_pids[@]}" 2>/dev/null || true
tail_pids=()

show_tail() { # FILE LABEL
  [[ -s $1 ]] || return 0
  say "---- last lines of $2 ----"
  tail -n 40 "$1" >&2
  say "---- end of $2 ----"
}

if [[ ${RXE_VM_VERBOSE:-0} == 1 && -s $rundir/timings ]]; then
  say "guest uptime at milestones:"
  sed 's/^/rxe-vm:   /' "$rundir/timings" >&2
  say "wall time: $(awk -v a="$t_start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
fi

if [[ -s $rundir/rc ]]; then
  rc=$(<"$rundir/rc")
  [[ $rc =~ ^[0-9]+$ ]] || harness_fail "boot-failed: bad exit status '$rc' from the guest"
  status "ok"
  exit "$rc"
fi
if ((qrc == 124)); then
  show_tail "$rundir/console.log" console.log
  if grep -q 'rxe ready' "$rundir/timings" 2>/dev/null; then
    status "timeout"
    say "timed out after $tmo s (RXE_VM_TIMEOUT); VM killed"
  else
    status "boot-failed: timed out after $tmo s before the command started"
    say "timed out after $tmo s before the command started (boot or rxe setup hung); VM killed"
  fi
  exit 124
fi
if [[ -e $rundir/setup-failed ]]; then
  show_tail "$rundir/setup.log" setup.log
  harness_fail "setup-failed: $(head -n1 "$rundir/setup-failed")"
fi
show_tail "$rundir/qemu.log" "qemu output"
show_tail "$rundir/console.log" console.log
if [[ $net == pair-* ]] && grep -qi 'address already in use' "$rundir/qemu.log" 2>/dev/null; then
  harness_fail "boot-failed: UDP port of $net busy on 127.0.0.1 (another pair run? set RXE_VM_PAIR_PORTS=A:B)"
fi
if [[ -e $rundir/init-failed ]]; then
  harness_fail "boot-failed: guest init: $(head -n1 "$rundir/init-failed")"
fi
harness_fail "boot-failed: the VM ended without running the command (qemu exit status $qrc)"
