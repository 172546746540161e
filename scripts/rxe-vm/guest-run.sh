#!/bin/bash
# Second stage inside the rxe guest, run by /init with the host's bash after
# chroot into the (overlaid) host root; run.sh copies it into the run share,
# so it is always the version of the checkout that started the VM.
#
# Brings up lo and a veth pair, puts Soft-RoCE device rxe0 on veth0
# (192.0.2.1; TEST-NET-1, only ever inside the guest), waits for the port and
# its IPv4-mapped GID, then runs the caller's command in the caller's cwd with
# the caller's environment plus RXE_VM_DEV, RXE_VM_IP, RXE_VM_GID_INDEX,
# RXE_VM_NET.  In pair mode (RXE_VM_NET=pair-a / pair-b in the run share's
# config) rxe0 goes on the VM's one virtio-net NIC instead, with 192.0.2.1
# (pair-a) or 192.0.2.2 (pair-b), and the command also gets RXE_VM_PEER_IP.
#
# Results, in the run share: setup.log; setup-failed (setup failed, command not
# run); stdout.log, stderr.log (the command's output, streamed by run.sh);
# rc (the command's exit status); timings (guest uptime at each milestone).
set -uo pipefail

R=/run/rxe-vm
DEV=rxe0
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# RXE_VM_NET (and the share list /init used) from run.sh.
RXE_VM_NET=veth
# shellcheck disable=SC1091
. "$R/config"
NET=$RXE_VM_NET
PEER_IP=""
case $NET in
  pair-a) IP=192.0.2.1 PEER_IP=192.0.2.2 ;;
  pair-b) IP=192.0.2.2 PEER_IP=192.0.2.1 ;;
  *) NET=veth IP=192.0.2.1 ;;
esac
# ::ffff:$IP as it appears in sysfs
IFS=. read -r o1 o2 o3 o4 <<<"$IP"
GID_WANT=$(printf '0000:0000:0000:0000:0000:ffff:%02x%02x:%02x%02x' "$o1" "$o2" "$o3" "$o4")
NETDEV=veth0

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

setup_veth() {
  run ip link add veth0 type veth peer name veth1
  run ip addr add "$IP/24" dev veth0
  # veth0 only gets carrier once its peer is up.
  run ip link set veth1 up
  run ip link set veth0 up
}

setup_nic() { # pair mode: the only non-lo interface is the virtio-net NIC
  local deadline=$((SECONDS + 10)) f
  local -a nics
  while :; do
    nics=()
    for f in /sys/class/net/*; do
      [[ ${f##*/} == lo || ! -e $f/device ]] || nics+=("${f##*/}")
    done
    ((${#nics[@]} > 0)) || ((SECONDS >= deadline)) || { sleep 0.2; continue; }
    break
  done
  ls /sys/class/net
  ((${#nics[@]} == 1)) ||
    fail "$NET: expected one network device besides lo, found ${#nics[@]} (${nics[*]}); is virtio_net in the initramfs?"
  NETDEV=${nics[0]}
  run ip addr add "$IP/24" dev "$NETDEV"
  run ip link set "$NETDEV" up
}

setup() {
  run ip link set lo up
  if [[ $NET == veth ]]; then setup_veth; else setup_nic; fi
  run rdma link add "$DEV" type rxe netdev "$NETDEV"

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
      ip addr show dev "$NETDEV"
      rdma link show
      fail "$DEV port 1 not ACTIVE with GID ::ffff:$IP after ${RXE_VM_SETUP_TIMEOUT:-60} s"
    fi
    sleep 0.2
  done
  echo "$DEV on $NETDEV port 1: $state, GID ::ffff:$IP at index $gid_index (after $polls polls)"
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
  ours=(RXE_VM_DEV="$DEV" RXE_VM_IP="$IP" RXE_VM_GID_INDEX="$gid_index" RXE_VM_NET="$NET")
  [[ -z $PEER_IP ]] || ours+=(RXE_VM_PEER_IP="$PEER_IP")
  env -i "${envv[@]}" PWD="$PWD" "${ours[@]}" \
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
