#!/usr/bin/env bash
# Build (or reuse) the throw-away RDMA guest: a stock Debian kernel booted by
# qemu, plus an initramfs holding static busybox, our /init and the modules
# for 9p, overlayfs, Soft-RoCE (rdma_rxe) and virtio-net (the two-VM pair
# mode).  See README.md beside this file.
#
# Usage: build-guest.sh [-q]       (idempotent; prints the cache dir on success;
#                                  -q: say nothing when the cache is up to date)
#
# Env:
#   RXE_VM_CACHE    cache dir (default /var/tmp/rxe-vm)
#   RXE_VM_KPKG     kernel package to use (default: what linux-image-amd64
#                   depends on; a cached kernel is reused while it is there)
#   RXE_VM_BUSYBOX  static busybox binary (default: busybox from PATH)
#   RXE_VM_REBUILD=1  ignore the cache and rebuild everything
#
# Cache layout: deb/KPKG_*.deb (kept so the initramfs can be rebuilt without
# network), vmlinux (uncompressed, for qemu's PVH boot), initramfs.cpio.gz,
# stamp (what they were built from).  Writes go to temp names + mv, under a
# lock, so concurrent callers see either the old or the new complete guest.
set -euo pipefail

quiet=0
[[ ${1:-} == -q ]] && quiet=1

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
cache=${RXE_VM_CACHE:-/var/tmp/rxe-vm}

# Bump when the layout/contents change in a way the stamp cannot see.
builder_version=2

# Modules /init loads, in order (busybox modprobe pulls in the dependencies).
# A leading '?' marks ones whose load failure is not fatal.
modules=(
  virtio_pci      # virtio transport for the 9p shares
  9pnet_virtio
  9p
  overlay         # tmpfs upper over the read-only host root
  crc32_generic   # rdma_rxe needs a "crc32" shash for the RoCE ICRC
  '?crc32-pclmul'
  rdma_rxe        # Soft-RoCE (ib_core, ib_uverbs, udp_tunnel...)
  rdma_ucm        # /dev/infiniband/rdma_cm for librdmacm (rdma_cm, ib_cm, iw_cm)
  '?ib_umad'      # perftest links libibumad
  veth            # the netdev rxe0 sits on (single-guest mode)
  '?virtio_net'   # the NIC of the two-VM pair mode (net_failover, failover)
)

log() { printf 'build-guest: %s\n' "$*" >&2; }
die() { printf 'build-guest: error: %s\n' "$*" >&2; exit 1; }

need() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' not found: $2"
}

need apt-get "this builder needs a Debian/Ubuntu host (apt)"
need apt-cache "this builder needs a Debian/Ubuntu host (apt)"
need dpkg "this builder needs a Debian/Ubuntu host (dpkg)"
need xz "install xz-utils"
need gzip "install gzip"
need sha256sum "install coreutils"
need flock "install util-linux"

busybox=${RXE_VM_BUSYBOX:-$(command -v busybox || true)}
[[ -n $busybox && -x $busybox ]] ||
  die "static busybox not found: apt-get install busybox-static (or set RXE_VM_BUSYBOX)"
# The initramfs has no libc: a dynamically linked busybox cannot run there.
if command -v readelf >/dev/null 2>&1 &&
   readelf -l "$busybox" 2>/dev/null | grep -q 'program interpreter'; then
  die "$busybox is dynamically linked: apt-get install busybox-static"
fi

mkdir -p "$cache" || die "cannot create cache dir $cache"
[[ -w $cache ]] || die "cache dir $cache is not writable (set RXE_VM_CACHE)"
exec 9>"$cache/.lock"
flock 9
rm -rf "$cache"/work.* # left by a killed build; we hold the lock

# --- what the initramfs must contain --------------------------------------
init_src=$here/guest-init.sh
[[ -r $init_src ]] || die "missing $init_src"
initrd_key=$(
  {
    echo "builder=$builder_version"
    printf 'module=%s\n' "${modules[@]}"
    sha256sum <"$init_src"
    sha256sum <"${BASH_SOURCE[0]}" # this builder: its output may change too
    sha256sum <"$busybox"
  } | sha256sum | cut -d' ' -f1
)

stamp_get() { # KEY -> value from the stamp, or empty
  [[ -f $cache/stamp ]] || return 0
  sed -n "s/^$1=//p" "$cache/stamp" | head -n1
}

resolve_kpkg() {
  local out pkg
  out=$(LC_ALL=C apt-cache depends linux-image-amd64 2>&1) || true
  pkg=$(awk '/Depends: linux-image-[0-9]/ { print $2; exit }' <<<"$out")
  [[ -n $pkg ]] || die "cannot resolve the guest kernel from linux-image-amd64: run 'apt-get update' first (the package lists may be empty), or set RXE_VM_KPKG=linux-image-<version>-amd64.
'apt-cache depends linux-image-amd64' said:
$out"
  printf '%s\n' "$pkg"
}

cached_kpkg=$(stamp_get kpkg)
if [[ -n ${RXE_VM_KPKG:-} ]]; then
  kpkg=$RXE_VM_KPKG
elif [[ ${RXE_VM_REBUILD:-0} != 1 && -n $cached_kpkg ]] &&
     { [[ -s $cache/vmlinux ]] || compgen -G "$cache/deb/${cached_kpkg}_*.deb" >/dev/null; }; then
  # Keep the kernel we have: no apt look-up, works offline and stays stable
  # across security updates until the cache is removed.
  kpkg=$cached_kpkg
else
  kpkg=$(resolve_kpkg)
fi

vmlinux_ok() {
  [[ -s $cache/vmlinux ]] &&
    [[ $(head -c4 "$cache/vmlinux" | od -An -tx1 | tr -d ' \n') == 7f454c46 ]]
}

if [[ ${RXE_VM_REBUILD:-0} != 1 && $kpkg == "$cached_kpkg" ]] && vmlinux_ok &&
   [[ -s $cache/initramfs.cpio.gz && $(stamp_get initrd_key) == "$initrd_key" ]]; then
  ((quiet)) || log "up to date: $kpkg ($(stamp_get kver)) in $cache"
  printf '%s\n' "$cache"
  exit 0
fi

t0=$SECONDS
# Invalidate first: an interrupted build must not leave a stamp that vouches
# for a half-replaced guest.
rm -f "$cache/stamp"
work=$(mktemp -d "$cache/work.XXXXXX")
trap 'rm -rf "$work"' EXIT

# --- kernel package ------------------------------------------------------
shopt -s nullglob
debs=("$cache/deb/${kpkg}_"*.deb)
if ((${#debs[@]} == 0)); then
  log "downloading $kpkg"
  mkdir -p "$work/dl" "$cache/deb"
  apt_opts=()
  # As root apt warns that the _apt user cannot write here; it is harmless.
  [[ $(id -u) == 0 ]] && apt_opts+=(-o APT::Sandbox::User=root)
  if ! (cd "$work/dl" && apt-get "${apt_opts[@]}" download "$kpkg" >&2); then
    die "'apt-get download $kpkg' failed: is the Debian archive reachable and were the package lists updated ('apt-get update')? Or set RXE_VM_KPKG, or RXE_VM_REBUILD=1 to re-resolve the kernel."
  fi
  dl=("$work/dl/"*.deb)
  ((${#dl[@]} == 1)) || die "apt-get download produced no single .deb for $kpkg"
  rm -f "$cache/deb/"*.deb # keep only the kernel in use
  mv "${dl[0]}" "$cache/deb/"
  debs=("$cache/deb/${dl[0]##*/}")
fi
deb=${debs[-1]}
shopt -u nullglob

log "unpacking ${deb##*/}"
dpkg -x "$deb" "$work/kroot" || die "dpkg -x $deb failed (corrupt download? remove $cache/deb)"
kdirs=("$work/kroot/lib/modules/"*/)
((${#kdirs[@]} == 1)) || die "expected one lib/modules/<kver> in $kpkg, found ${#kdirs[@]}"
kver=$(basename "${kdirs[0]}")
vmlinuz=$work/kroot/boot/vmlinuz-$kver
[[ -f $vmlinuz ]] || die "$kpkg has no boot/vmlinuz-$kver"

moddir=$work/kroot/lib/modules/$kver
[[ -d $moddir/kernel ]] || die "$kpkg has no lib/modules/$kver/kernel"

# --- vmlinux: uncompressed ELF so qemu can boot it via PVH (skips the slow
# in-guest xz decompression under TCG) ----------------------------------------
if [[ $kpkg != "$cached_kpkg" ]] || ! vmlinux_ok || [[ ${RXE_VM_REBUILD:-0} == 1 ]]; then
  log "extracting vmlinux"
  off=$(LC_ALL=C grep -abo $'\xfd7zXZ' "$vmlinuz" | head -n1 | cut -d: -f1 || true)
  [[ -n $off ]] || die "no xz stream in $vmlinuz (kernel not xz-compressed?)"
  # xz complains about the trailing data after the stream; the ELF check
  # below is what tells success.
  tail -c +$((off + 1)) "$vmlinuz" | xz -dc >"$work/vmlinux" 2>/dev/null || true
  [[ $(head -c4 "$work/vmlinux" | od -An -tx1 | tr -d ' \n') == 7f454c46 ]] ||
    die "could not extract an ELF vmlinux from $vmlinuz"
  mv -f "$work/vmlinux" "$cache/vmlinux"
fi

# --- initramfs -----------------------------------------------------------
log "building initramfs"
ird=$work/initrd
mkdir -p "$ird"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,run,tmp,etc,lower,ovl,newroot,results}
cp "$busybox" "$ird/bin/busybox"
ln -s busybox "$ird/bin/sh" # for /init's #! line; the rest comes from --install
install -m 0755 "$init_src" "$ird/init"

# Pick each wanted module plus, recursively, what its .modinfo "depends="
# names.  (The .deb ships no modules.dep, its postinst runs depmod; running
# busybox depmod over all ~4000 modules costs more than reading these few.)
# Module names treat '-' and '_' alike.
declare -A kopath=() picked=()
while IFS= read -r p; do
  b=${p##*/}
  b=${b%%.ko*}
  kopath[${b//-/_}]=$p
done < <(cd "$moddir" && find kernel -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst')

ko_depends() { # FILE -> its depends= list, ','-separated
  case $1 in
    *.xz) xz -dc "$1" ;;
    *.zst) need zstd "modules are zstd-compressed: apt-get install zstd"; zstd -qdc "$1" ;;
    *) cat "$1" ;;
  esac | tr '\0' '\n' | sed -n 's/^depends=//p' | head -n1
}

pick() { # NAME: returns 1 when there is no such module file
  local n=${1//-/_} p d
  local -a deps
  [[ -n ${picked[$n]:-} ]] && return 0
  p=${kopath[$n]:-}
  [[ -n $p ]] || return 1
  picked[$n]=$p
  IFS=, read -r -a deps <<<"$(ko_depends "$moddir/$p")"
  for d in "${deps[@]}"; do
    [[ -z $d ]] || pick "$d" || die "module $d (needed by $n) not found in $kpkg"
  done
}

for m in "${modules[@]}"; do
  name=${m#\?}
  pick "$name" && continue
  # Built in: nothing to load.  Optional: /init tolerates its absence.
  grep -qE "/${name//[-_]/[-_]}\.ko\$" "$moddir/modules.builtin" 2>/dev/null && continue
  [[ $m == \?* ]] && { log "note: optional module $name not in $kver"; continue; }
  die "module $name not found in $kpkg ($kver)"
done

for ko in "${picked[@]}"; do
  dst=${ko%.xz}
  dst=$ird/lib/modules/$kver/${dst%.zst}
  mkdir -p "$(dirname "$dst")"
  # Stored uncompressed: busybox modprobe need not support xz/zstd.
  case $ko in
    *.xz) xz -dc "$moddir/$ko" >"$dst" ;;
    *.zst) zstd -qdc "$moddir/$ko" >"$dst" ;;
    *) cp "$moddir/$ko" "$dst" ;;
  esac
done
cp "$moddir"/modules.builtin* "$moddir"/modules.order "$ird/lib/modules/$kver/" 2>/dev/null || true
"$busybox" depmod -b "$ird" "$kver" || die "busybox depmod failed for the initramfs"
printf '%s\n' "${modules[@]}" >"$ird/etc/rxe-vm-modules"
printf '%s\n' "$kver" >"$ird/etc/rxe-vm-kver"

(cd "$ird" && find . | LC_ALL=C sort | "$busybox" cpio -o -H newc -R 0:0 2>/dev/null | gzip -1) \
  >"$work/initramfs.cpio.gz" || die "packing the initramfs failed"
mv -f "$work/initramfs.cpio.gz" "$cache/initramfs.cpio.gz"

{
  echo "kpkg=$kpkg"
  echo "kver=$kver"
  echo "deb=${deb##*/}"
  echo "initrd_key=$initrd_key"
  echo "modules=${#picked[@]}"
} >"$cache/stamp.tmp"
mv -f "$cache/stamp.tmp" "$cache/stamp"

log "built $kpkg ($kver), ${#picked[@]} modules, in $((SECONDS - t0)) s: $cache"
printf '%s\n' "$cache"
