#!/usr/bin/env bash
# Build (or reuse) the throw-away RDMA guest: a stock Debian kernel booted by
# qemu, plus an initramfs holding static busybox, our /init and the modules
# for 9p, overlayfs and Soft-RoCE (rdma_rxe).  See README.md beside this file.
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
builder_version=1

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
  veth            # the netdev rxe0 sits on
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

# --- what the initramfs must contain --------------------------------------
init_src=$here/guest-init.sh
[[ -r $init_src ]] || die "missing $init_src"
initrd_key=$(
  {
    echo "builder=$builder_version"
    printf 'module=%s\n' "${modules[@]}"
    sha256sum <"$init_src"
    sha256sum <"$busybox"
  } | sha256sum | cut -d' ' -f1
)

stamp_get() { # KEY -> value from the stamp, or empty
  [[ -f $cache/stamp ]] || return 0
  sed -n "s/^$1=//p" "$cache/stamp" | head -n1
}

resolve_kpkg() {
  local out pkg
  if ! out=$(LC_ALL=C apt-cache depends linux-image-amd64 2>&1); then
    die "cannot resolve the guest kernel: 'apt-cache depends linux-image-amd64' failed:
$out
Run 'apt-get update' first (the package lists may be empty), or set RXE_VM_KPKG."
  fi
  pkg=$(awk '/Depends: linux-image-[0-9]/ { print $2; exit }' <<<"$out")
  [[ -n $pkg ]] || die "cannot resolve the guest kernel: 'apt-cache depends linux-image-amd64' names no linux-image-<version> package.
Run 'apt-get update' first (the package lists may be empty), or set RXE_VM_KPKG=linux-image-<version>-amd64."
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
  if ! (cd "$work/dl" && apt-get "${apt_opts[@]}" download "$kpkg"); then
    die "'apt-get download $kpkg' failed. Check that the Debian archive is reachable
and that the package lists are current ('apt-get update'), or set RXE_VM_KPKG."
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

# The .deb ships no modules.dep (its postinst runs depmod).
"$busybox" depmod -b "$work/kroot" "$kver" || die "busybox depmod failed for $kver"
moddir=$work/kroot/lib/modules/$kver
[[ -s $moddir/modules.dep ]] || die "depmod produced no modules.dep"

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
install -m 0755 "$init_src" "$ird/init"

# Resolve each wanted module and its dependencies to paths in modules.dep
# (module names treat '-' and '_' alike).
names=()
for m in "${modules[@]}"; do names+=("${m#\?}"); done
mapfile -t kos < <(
  awk -v want="${names[*]}" '
    function norm(p,  b) { b = p; sub(/.*\//, "", b); sub(/\.ko(\.[a-z]+)?$/, "", b)
                           gsub(/-/, "_", b); return b }
    BEGIN { n = split(want, w, " "); for (i = 1; i <= n; i++) { x = w[i]; gsub(/-/, "_", x); wanted[x] = 1 } }
    { f = $1; sub(/:$/, "", f)
      if (norm(f) in wanted) { found[norm(f)] = 1; print f
        for (i = 2; i <= NF; i++) print $i } }
    END { for (x in wanted) if (!(x in found)) print "MISSING:" x }
  ' "$moddir/modules.dep" | sort -u
)
for ko in "${kos[@]}"; do
  if [[ $ko == MISSING:* ]]; then
    name=${ko#MISSING:}
    # Optional modules may be built in or absent; required ones must exist.
    opt=0
    for m in "${modules[@]}"; do
      if [[ $m == \?* ]]; then
        m=${m#\?}
        [[ ${m//-/_} == "$name" ]] && opt=1
      fi
    done
    if ((opt)); then log "note: optional module $name not found in $kver"; continue; fi
    if grep -qE "/${name//_/[-_]}\.ko" "$moddir/modules.builtin" 2>/dev/null; then continue; fi
    die "module $name not found in $kpkg ($kver)"
  fi
  dst=$ird/lib/modules/$kver/${ko%.xz}
  dst=${dst%.zst}
  mkdir -p "$(dirname "$dst")"
  case $ko in
    *.xz) xz -dc "$moddir/$ko" >"$dst" ;;
    *.zst) need zstd "modules are zstd-compressed"; zstd -qdc "$moddir/$ko" >"$dst" ;;
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
  echo "modules=${#kos[@]}"
} >"$cache/stamp.tmp"
mv -f "$cache/stamp.tmp" "$cache/stamp"

log "built $kpkg ($kver), ${#kos[@]} modules, in $((SECONDS - t0)) s: $cache"
printf '%s\n' "$cache"
