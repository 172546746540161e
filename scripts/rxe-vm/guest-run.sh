#!/bin/bash
# Second stage inside the rxe guest, run by /init with the host's bash after
# chroot into the (overlaid) host root; run.sh copies it into the run share,
# so it is always the version of the checkout that started the VM.
#
# Brings up lo and a veth pair, puts Soft-RoCE device rxe0 on veth0
# (192.0.2.1; TEST-NET-1, only ever inside the guest), waits for the port and
# its IPv4-mapped GID, then runs the caller's command in the caller's cwd with
# the caller's environment plus RXE_VM_DEV, RXE_VM_IP, RXE_VM_GID_INDEX.
#
# Results, in the run share: setup.log; setup-failed (setup failed, command not
# run); stdout.log, stderr.log (the command's output, streamed by run.sh);
# rc (the command's exit status); timings (guest uptime at each milestone).
set -uo pipefail

R=/run/rxe-vm
DEV=rxe0
IP=192.0.2.1
# ::ffff:192.0.2.1 as it appears in sysfs
GID_WANT=0000:0000:0000:0000:0000:ffff:c000:0201
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

stamp() {
  local up _
  read -r up _ </proc/uptime
  echo "$up $*" >>"$R/timings"
}

fail() {
  echo "rxe-vm setup: FAILED: $*"
  echo "$*" >"$R/setup-failed"
  sync
  exit 1
}

run() { # log and run one setup command, fail on error
  echo "+ $*"
  "$@" || fail "'$*' exited with $?"
}

setup() {
  run ip link set lo up
  run ip link add veth0 type veth peer name veth1
  run ip addr add "$IP/24" dev veth0
  # veth0 only gets carrier once its peer is up.
  run ip link set veth1 up
  run ip link set veth0 up
  run rdma link add "$DEV" type rxe netdev veth0

  local port=/sys/class/infiniband/$DEV/ports/1 state="" gid_index="" f g
  local deadline=$((SECONDS + ${RXE_VM_SETUP_TIMEOUT:-60})) polls=0
  while :; do
    polls=$((polls + 1))
    state=$(cat "$port/state" 2>/dev/null || true)
    gid_index=""
    if [[ $state == *ACTIVE* ]]; then
      # Only the first few entries: the table has 1024 files.
      for f in "$port"/gids/[0-7]; do
        g=$(cat "$f" 2>/dev/null || true)
        if [[ $g == "$GID_WANT" ]]; then gid_index=${f##*/}; break; fi
      done
    fi
    [[ -n $gid_index ]] && break
    if ((SECONDS >= deadline)); then
      echo "port state: ${state:-<none>}"
      for f in "$port"/gids/[0-7]; do echo "gid ${f##*/}: $(cat "$f" 2>/dev/null)"; done
      ip addr show dev veth0
      rdma link show
      fail "$DEV port 1 not ACTIVE with GID ::ffff:$IP after ${RXE_VM_SETUP_TIMEOUT:-60} s"
    fi
    sleep 0.2
  done
  echo "$DEV port 1: $state, GID ::ffff:$IP at index $gid_index (after $polls polls)"
  echo "$gid_index" >"$R/gid_index"
}

stamp "guest-run started"
(setup) >"$R/setup.log" 2>&1 || {
  [[ -e $R/setup-failed ]] || echo "setup exited with $?" >"$R/setup-failed"
  sync
  exit 1
}
gid_index=$(cat "$R/gid_index")
stamp "rxe ready"

# The caller's argv, environment and cwd, NUL-separated (written by run.sh).
mapfile -d '' -t argv <"$R/argv"
mapfile -d '' -t envv <"$R/env"
mapfile -d '' -t cwd <"$R/cwd" # [0] logical, [1] physical

if cd -- "${cwd[0]}" 2>/dev/null || cd -- "${cwd[1]}"; then
  # env -i: exactly the caller's environment (names bash could not export
  # included), plus ours.
  env -i "${envv[@]}" PWD="$PWD" \
    RXE_VM_DEV="$DEV" RXE_VM_IP="$IP" RXE_VM_GID_INDEX="$gid_index" \
    "${argv[@]}" </dev/null >>"$R/stdout.log" 2>>"$R/stderr.log"
  rc=$?
else
  echo "cannot cd to ${cwd[0]} in the guest" >"$R/setup-failed"
  sync
  exit 1
fi
stamp "command exited with $rc"
echo "$rc" >"$R/rc.tmp" && mv -f "$R/rc.tmp" "$R/rc"
sync
