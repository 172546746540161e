#!/usr/bin/env bash
# The RDMA examples, run for real INSIDE the Soft-RoCE guest (CI runs this
# after the transport's suites, in the same boot):
#
#   scripts/rxe-vm/run.sh tests/rdma/examples.sh BUILD_DIR
#
# Each server is started, waited for ("ready port=" on its stdout), then its
# client runs; both must exit 0, the client must print what the example is
# about, and (RILL_LEAK=paranoid) neither may leak a buffer:
#   rdma_read_server / rdma_read_client           DISNI ReadServer/ReadClient:
#                                                 one-sided READs in growing pieces
#   rdma_sendrecv_server / rdma_sendrecv_client   DISNI SendRecvServer/Client,
#                                                 a small and a 3 MB (rendezvous) message
#   echo_server / echo_client --uri rdma://...    the TCP echo handlers over RDMA
# Prints one PASS/FAIL line each; exit 0 iff all passed.
set -uo pipefail

(($# == 1)) || { sed -n '2,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }
bin=$1/examples
ip=${RXE_VM_IP:?run me in the RDMA guest (scripts/rxe-vm/run.sh)}
export RILL_LEAK=paranoid RILL_LEAK_EXITCODE=99 RILL_LOG=warn
work=$(mktemp -d "${TMPDIR:-/tmp}/rdma-examples.XXXXXX")
trap 'rm -rf "$work"' EXIT
failed=0

# NAME EXPECT SERVER_ARGV... -- CLIENT_ARGV...
pair() {
  local name=$1 expect=$2
  shift 2
  local srv=() cli=()
  while (($#)) && [[ $1 != -- ]]; do srv+=("$1"); shift; done
  shift
  cli=("$@")
  "${srv[@]}" >"$work/$name.srv" 2>&1 &
  local spid=$!
  for _ in $(seq 1 200); do
    grep -q '^ready port=' "$work/$name.srv" && break
    kill -0 "$spid" 2>/dev/null || break
    sleep 0.1
  done
  timeout 120 "${cli[@]}" >"$work/$name.cli" 2>&1
  local crc=$?
  # The DISNI servers exit after their one client; echo_server on a signal.
  if [[ ${srv[0]} == */echo_server ]]; then kill -INT "$spid"; fi
  local src=0
  timeout 60 tail --pid="$spid" -f /dev/null || kill -9 "$spid"
  wait "$spid" || src=$?
  if ((crc == 0 && src == 0)) && grep -q -- "$expect" "$work/$name.cli"; then
    echo "PASS $name"
  else
    echo "FAIL $name (client exit $crc, server exit $src)"
    sed "s/^/    [$name server] /" "$work/$name.srv"
    sed "s/^/    [$name client] /" "$work/$name.cli"
    failed=1
  fi
}

pair read "read memory from server (100 bytes)" \
  "$bin/rdma_read_server" --uri "rdma://$ip:1919" -- "$bin/rdma_read_client" --uri "rdma://$ip:1919"
pair sendrecv "Message from the server" \
  "$bin/rdma_sendrecv_server" --uri "rdma://$ip:1920" -- "$bin/rdma_sendrecv_client" --uri "rdma://$ip:1920"
pair sendrecv-3MB "message received (3000000 bytes)" \
  "$bin/rdma_sendrecv_server" --uri "rdma://$ip:1921" -- \
  "$bin/rdma_sendrecv_client" --uri "rdma://$ip:1921" --size 3000000
pair echo "200 x 64 bytes" \
  "$bin/echo_server" --uri "rdma://$ip:7471" -- "$bin/echo_client" --uri "rdma://$ip:7471" --count 200 --size 64
exit "$failed"
