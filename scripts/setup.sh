#!/usr/bin/env bash
# Install every Debian package rill's build, tests and RDMA test guest need.
# Idempotent: runs `apt-get update` once, and only when something is missing.
set -euo pipefail

PACKAGES=(
    # build
    gcc make cmake ninja-build pkg-config git
    # libraries (DESIGN.md: Debian packages only, nothing vendored)
    liburcu-dev libjemalloc-dev libcriterion-dev
    libibverbs-dev librdmacm-dev ibverbs-providers
    # RDMA test guest (scripts/rxe-vm): qemu TCG + busybox initramfs
    qemu-system-x86 busybox-static iproute2 xz-utils ibverbs-utils rdmacm-utils perftest
    # echo benchmark peers (bench/echo): libevent, libuv, Netty 4.1 on Java 17
    libevent-dev libuv1-dev libnetty-java openjdk-17-jdk-headless
    # codec tests and benchmarks (real clients and peers): libFuzzer, curl, wrk,
    # redis-cli and redis-benchmark, redis-server and nginx
    clang libclang-rt-14-dev curl wrk redis-tools redis-server nginx-light
    # RPC: protobuf-c stubs, ZooKeeper discovery (C client and a real server for
    # the tests), and gRPC C++ as the benchmark peer (bench/rpc)
    libprotobuf-c-dev protobuf-c-compiler libzookeeper-mt-dev zookeeper
    libgrpc++-dev protobuf-compiler-grpc protobuf-compiler libprotobuf-dev g++
)

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "setup: all ${#PACKAGES[@]} packages present"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing packages: ${missing[*]}" >&2
    echo "setup: run this script as root (e.g. sudo $0) to install them" >&2
    exit 1
fi

echo "setup: installing ${missing[*]}"
apt_opts=(-o DPkg::Lock::Timeout=600 -y -q --no-install-recommends)
apt-get -o DPkg::Lock::Timeout=600 update -q
DEBIAN_FRONTEND=noninteractive apt-get install "${apt_opts[@]}" "${missing[@]}"
echo "setup: done"
