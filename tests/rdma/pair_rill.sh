#!/usr/bin/env bash
# Cross-host check of rill's RDMA transport between the two pair-mode guests
# (two kernels, two Soft-RoCE devices, RoCE frames between them):
#
#   RDMA_PAIR_SERVER_CMD='tests/rdma/pair_rill.sh server BUILD_DIR' \
#   RDMA_PAIR_CLIENT_CMD='tests/rdma/pair_rill.sh client BUILD_DIR' \
#     scripts/rdma-check.sh BUILD_DIR
#
# First the rdma-core tools (tests/rdma/pair_smoke.sh), then rill itself:
# the server guest runs examples/echo_server on rdma://ITS_IP:7471; the
# client guest runs examples/echo_client against it (64 B ping-pongs, then
# 1 MiB messages: fragmentation and rendezvous READ across hosts), each a
# new connection, retrying while the server
# guest is not listening yet. The server stops after its client is done
# (it waits for a marker file in the shared build dir) or after
# RDMA_PAIR_WAIT seconds (default 300). Exit 0 iff every check passed here.
set -uo pipefail

(($# == 2)) || { sed -n '2,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }
role=$1
build=$2
here=$(cd "$(dirname "$0")" && pwd -P)
wait_s=${RDMA_PAIR_WAIT:-300}
done_mark=$build/.rdma-pair-client-done
bin=$build/examples
export RILL_LEAK=paranoid RILL_LOG=${RILL_LOG:-warn}

"$here/pair_smoke.sh" "$role" || exit $?

fail=0
if [[ $role == server ]]; then
  rm -f "$done_mark"
  "$bin/echo_server" --uri "rdma://$RXE_VM_IP:7471" --mode raw &
  srv=$!
  deadline=$((SECONDS + wait_s))
  until [[ -e $done_mark ]] || ((SECONDS >= deadline)); do sleep 0.5; done
  [[ -e $done_mark ]] || { echo "FAIL rill pair: no client finished within $wait_s s"; fail=1; }
  kill -INT "$srv"
  wait "$srv" || { echo "FAIL rill echo_server exited $?"; fail=1; }
  ((fail == 0)) && echo "PASS rill pair server: echo_server exited cleanly, no leaks"
  exit "$fail"
fi

# client: retry each first connect while the server guest is not up yet
run_client() { # PORT COUNT SIZE

  for _ in $(seq 1 60); do
    if timeout 120 "$bin/echo_client" --uri "rdma://$RXE_VM_PEER_IP:$1" --count "$2" --size "$3"; then
      echo "PASS rill echo_client rdma://$RXE_VM_PEER_IP:$1 $2 x $3 B"
      return 0
    fi
    sleep 2
  done
  echo "FAIL rill echo_client rdma://$RXE_VM_PEER_IP:$1 $2 x $3 B"
  return 1
}
run_client 7471 200 64 || fail=1
run_client 7471 4 1048576 || fail=1
run_client 7471 1000 4096 || fail=1
touch "$done_mark"
exit "$fail"
