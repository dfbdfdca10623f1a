#!/usr/bin/env bash
# Installs the Debian 12 packages xtpm builds, tests and demos with, if any
# is missing. Safe to run repeatedly: it does nothing when all are present.
set -euo pipefail

packages=(
  cmake ninja-build g++ pkg-config python3 xxd procps
  libtpms-dev libbotan-2-dev libxen-dev catch2
  swtpm swtpm-tools tpm2-tools libtss2-dev
  clang-19 libclang-rt-19-dev libfuzzer-19-dev
  qemu-system-x86 debootstrap busybox-static cpio e2fsprogs perl
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "xtpm: installing missing packages: ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq "${missing[@]}" >/dev/null
