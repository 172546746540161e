#!/bin/sh
# /init of the rxe guest (busybox sh, PID 1; baked into the initramfs by
# build-guest.sh).  Loads the modules, mounts the host's root read-only over
# 9p under a tmpfs overlay, shares the run dir and the read-write dirs, then
# chroots into the host root and runs /run/rxe-vm/guest-run.sh there.
# It always ends in a poweroff so qemu exits; the host decides from the files
# in the run share (rc / setup-failed / init-failed) what happened.

PATH=/bin:/sbin:/usr/bin:/usr/sbin
export PATH
/bin/busybox --install -s

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
read -r t_init _ </proc/uptime
exec </dev/console >/dev/console 2>&1

share=  # where the run share is mounted, once it is

say() { echo "rxe-vm-init: $*"; }
stamp() {
  read -r up _ </proc/uptime
  [ -n "$share" ] && echo "$up $*" >>"$share/timings"
}

die() {
  say "FAILED: $*"
  if [ -n "$share" ]; then
    echo "$*" >"$share/init-failed"
    sync
  fi
  poweroff -f
  sleep 5
  exit 1
}

# Any kernel request_module() goes to busybox too.
echo /sbin/modprobe >/proc/sys/kernel/modprobe

while read -r m; do
  case $m in
    '') continue ;;
    \?*) modprobe "${m#?}" || say "note: optional module ${m#?} did not load" ;;
    *) modprobe "$m" || die "modprobe $m failed" ;;
  esac
done </etc/rxe-vm-modules

msize=512000
mount -t 9p -o trans=virtio,version=9p2000.L,msize=$msize,cache=none results /results ||
  die "cannot mount the run share"
share=/results
echo "$t_init init started" >>"$share/timings"
stamp "modules loaded, run share mounted"
[ -r /results/config ] || die "no /results/config"
# Written by run.sh: RXE_VM_RW_COUNT, RXE_VM_RW_<i> (single-quoted paths).
# shellcheck disable=SC1091
. /results/config

mount -t 9p -o trans=virtio,version=9p2000.L,msize=$msize,ro,cache=loose hostroot /lower ||
  die "cannot mount the host root share"
mount -t tmpfs -o mode=0755 ovl /ovl
mkdir -p /ovl/upper /ovl/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/ovl/upper,workdir=/ovl/work /newroot ||
  die "cannot mount the overlay root"

nr=/newroot
mount -t proc proc $nr/proc
mount -t sysfs sysfs $nr/sys
# A fresh devtmpfs creates /dev/infiniband/{uverbs0,rdma_cm} by itself.
mount -t devtmpfs devtmpfs $nr/dev
mkdir -p $nr/dev/pts $nr/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts $nr/dev/pts
mount -t tmpfs -o mode=1777 shm $nr/dev/shm
# Clean /run (ip netns, lock files...); /tmp stays the host's (via the
# overlay) so host-built binaries there are found.
mount -t tmpfs -o mode=0755 run $nr/run
mkdir -p $nr/run/rxe-vm
mount -o move /results $nr/run/rxe-vm || die "cannot move the run share"
share=$nr/run/rxe-vm

i=0
while [ "$i" -lt "${RXE_VM_RW_COUNT:-0}" ]; do
  dir=
  eval "dir=\$RXE_VM_RW_$i"
  # Physical paths (run.sh resolves symlinks), so this cannot escape $nr.
  mkdir -p "$nr$dir" || die "cannot create $dir in the guest"
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=$msize,cache=mmap "rw$i" "$nr$dir" ||
    die "cannot mount the read-write share $dir"
  i=$((i + 1))
done

stamp "chroot"
chroot $nr /bin/bash /run/rxe-vm/guest-run.sh ||
  say "guest-run.sh exited with $?"

sync
poweroff -f
sleep 5
