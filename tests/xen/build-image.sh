#!/usr/bin/env bash
# Builds the cached part of the real-Xen test image from Debian packages only (docs/xen.md):
#   xen.elf (xen-hypervisor-4.17-amd64, extracted, not installed), a debootstrap'ed dom0 root
#   (kernel, xen-utils, xtpm's runtime libraries) as rootfs.img, the dom0 kernel + initrd, the
#   uncompressed domU vmlinux, static busybox and the domU's Xen modules.
# The result lives in $XTPM_XEN_CACHE (default ~/.cache/xtpm-xen)/img-<key>, where the key hashes the
# candidate package versions and this script; a warm run only prints that directory. The build
# runs in a temp dir under the cache and is renamed into place (atomic), under a lock, so
# concurrent callers build it once. Needs root (debootstrap) and the apt mirror.
# Usage: tests/xen/build-image.sh [--cache DIR]   -> prints the image directory on stdout;
#        exit 77 when it is not cached and cannot be built here (not root, tools missing)
set -euo pipefail

cache=${XTPM_XEN_CACHE:-$HOME/.cache/xtpm-xen}
[[ ${1:-} == --cache ]] && cache=$2
suite=bookworm
# dom0 packages; the libraries are what `ldd` of xtpm-vtpmd and xtpm-front lists (boot.sh checks).
dom0_pkgs=linux-image-amd64,initramfs-tools,kmod,xen-utils-4.17,xenstore-utils,busybox-static,procps
dom0_pkgs+=,libtpms0,libbotan-2-19,libssl3,libstdc++6,libxenstore4,libxengnttab1,libxenevtchn1
IFS=, read -r -a key_pkgs <<<"xen-hypervisor-4.17-amd64,$dom0_pkgs,libc6"
domu_modules=(xen-tpmfront xen-evtchn xen-gntalloc xen-gntdev xenfs)

log() { echo "build-image: $*" >&2; }

versions() { # pkg=candidate-version lines, one apt-cache call
    local v
    v=$(apt-cache policy "${key_pkgs[@]}" 2>/dev/null |
        awk '/^[^ ]/ {p = $1; sub(/:$/, "", p)} /Candidate:/ && $2 != "(none)" {print p "=" $2}')
    [[ $(wc -l <<<"$v") -eq ${#key_pkgs[@]} ]] || { log "no candidate version for some of ${key_pkgs[*]} (apt-get update?)"; return 1; }
    echo "$v"
}

# The first enabled mirror serving "$suite" in the apt sources (deb822 or one-line form).
mirror() {
    [[ -n ${XTPM_XEN_MIRROR:-} ]] && { echo "$XTPM_XEN_MIRROR"; return; }
    local m
    m=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v s="$suite" 'BEGIN {RS = ""}
        $0 ~ "(^|\n)Types:[^\n]*deb" && $0 ~ "(^|\n)Suites:([^\n]* )?" s "( |\n|$)" && $0 !~ "Enabled: *no" {
            if (match($0, /URIs:[ \t]*[^ \t\n]+/)) { u = substr($0, RSTART, RLENGTH); sub(/URIs:[ \t]*/, "", u); print u; exit } }')
    [[ -n $m ]] || m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
        awk -v s="$suite" '$1 == "deb" { for (i = 2; i < NF; i++) if ($i ~ /^[a-z]+:\/\// && $(i + 1) == s) { print $i; exit } }')
    echo "${m:-http://deb.debian.org/debian}"
}

vers=$(versions)
key=$({ echo "$vers"; sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1; } | sha256sum | cut -c1-16)
img=$cache/img-$key
[[ -f $img/manifest.txt ]] && { echo "$img"; exit 0; }

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9  # another build of the same image may be running: wait for it
[[ -f $img/manifest.txt ]] && { echo "$img"; exit 0; }
# exit 77: this machine cannot build it (the tests skip)
[[ $(id -u) -eq 0 ]] || { log "building the image needs root (debootstrap)"; exit 77; }
for t in debootstrap mkfs.ext4 dpkg-deb; do
    command -v $t >/dev/null || { log "$t missing (scripts/setup-deps.sh installs it)"; exit 77; }
done

start=$SECONDS
tmp=$(mktemp -d "$cache/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
out=$tmp/out root=$tmp/root
mkdir -p "$out/modules" "$tmp/debs"
src=$(mirror)
log "cold build of $img from $src"

# 1. the hypervisor: extracted only
xen_ver=$(sed -n 's/^xen-hypervisor-4.17-amd64=//p' <<<"$vers")
chown _apt "$tmp/debs" 2>/dev/null || true
(cd "$tmp/debs" && apt-get download -q "xen-hypervisor-4.17-amd64=$xen_ver" >"$tmp/download.log" 2>&1) ||
    { cat "$tmp/download.log" >&2; exit 1; }
dpkg-deb -x "$tmp"/debs/xen-hypervisor-4.17-amd64_*.deb "$tmp/xen"
zcat "$tmp"/xen/boot/xen-4.17-amd64.gz >"$out/xen.elf"

# 2. dom0 root (about 110 s)
debootstrap --variant=minbase --include="$dom0_pkgs" "$suite" "$root" "$src" >"$tmp/debootstrap.log" 2>&1 ||
    { tail -n 30 "$tmp/debootstrap.log" >&2; exit 1; }
kver=$(ls "$root/lib/modules")
cp "$root/boot/vmlinuz-$kver" "$out/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$out/initrd.img"
cp "$root/bin/busybox" "$out/busybox"

# 3. the domU kernel as an uncompressed ELF (xl would spend 13 s on xz inside dom0)
python3 - "$out/vmlinuz" "$out/vmlinux" <<'EOF'
import lzma, sys
data = open(sys.argv[1], 'rb').read()
at = data.find(b'\xfd7zXZ\x00')
open(sys.argv[2], 'wb').write(lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[at:]))
EOF
mkdir -p "$root/root/domU"
cp "$out/vmlinux" "$root/root/domU/vmlinux"

# 4. the domU's modules, dependencies first; modules.order lists them in load order
moddir=$root/lib/modules/$kver
for m in "${domu_modules[@]}"; do
    line=$(grep -E "/$m\.ko(\.xz)?:" "$moddir/modules.dep" || true)
    if [[ -z $line ]]; then
        grep -qE "/$m\.ko" "$moddir/modules.builtin" && { log "module $m is built in"; continue; }
        log "module $m not found"; exit 1
    fi
    read -r -a deps <<<"${line#*:}"
    for f in "${deps[@]}" "${line%%:*}"; do
        b=$(basename "$f"); b=${b%.xz}
        [[ -f $out/modules/$b ]] && continue
        case $f in *.xz) xz -dc "$moddir/$f" >"$out/modules/$b" ;; *) cp "$moddir/$f" "$out/modules/$b" ;; esac
        echo "$b" >>"$out/modules/modules.order"
    done
done

# 5. the dom0 init: mounts the per-run payload disk (/dev/vdb) and runs its dom0.sh
cat >"$root/xeninit.sh" <<'EOF'
#!/bin/sh
# xtpm dom0 init (tests/xen/build-image.sh): runs the payload disk's dom0.sh, then powers off.
export PATH=/usr/lib/xen-4.17/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /xtpm
if mount -o ro /dev/vdb /xtpm; then
    /bin/bash /xtpm/dom0.sh; echo "DOM0: dom0.sh exit rc=$?"
else
    echo "DOM0: no payload disk at /dev/vdb"
fi
echo "DOM0: ALL DONE uptime=$(cut -d' ' -f1 /proc/uptime)"
echo o >/proc/sysrq-trigger; sleep 30
EOF
chmod +x "$root/xeninit.sh"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/usr/share/doc "$root"/usr/share/man "$root"/usr/share/locale

# 6. the disk image (-snapshot at boot keeps it pristine)
mkfs.ext4 -q -F -L dom0root -d "$root" "$out/rootfs.img" 2G >&2
{
    echo "key=$key"; echo "kernel=$kver"; echo "mirror=$src"; echo "built=$(date -u +%FT%TZ) in $((SECONDS - start)) s"
    echo "$vers"
    echo "# dom0 packages"; chroot "$root" dpkg-query -W
} >"$out/manifest.txt"
mv "$out" "$img"
for old in "$cache"/img-*; do [[ $old == "$img" ]] || rm -rf "$old"; done
log "built $img in $((SECONDS - start)) s"
echo "$img"
