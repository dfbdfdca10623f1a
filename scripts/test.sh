#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this):
#   1. clang-19 libFuzzer build: every fuzz target replays its corpus, then fuzzes briefly;
#   2. clang-19 ASan+UBSan build (-Werror): the full ctest suite;
#   3. g++-12 build (-Werror): the full ctest suite, including the consumer and bench smoke tests;
#   4. real Xen under QEMU (label xen, tests/xen): Linux's xen-tpmfront and xtpm-front against
#      xtpm-vtpmd --hv xen; skipped, with the reason printed, where QEMU/TCG cannot run.
# Steps 2 and 3 leave out label xen. XTPM_XEN=off skips step 4.
# Usage: scripts/test.sh [--quick]   (--quick: only steps 3 and 4)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-deps.sh

jobs=$(nproc)
fuzz_seconds=${XTPM_FUZZ_SECONDS:-10}

if [ "${1:-}" != "--quick" ]; then
  echo "== fuzz: clang-19 libFuzzer targets =="
  cmake --preset fuzz >/dev/null
  cmake --build --preset fuzz -j "$jobs"
  for bin in build/fuzz/fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin")
    corpus=fuzz/corpus/$name
    work=$(mktemp -d)
    cp -r "$corpus"/. "$work"/ 2>/dev/null || true
    echo "-- $name: replay $(ls "$corpus" | wc -l) seeds, then fuzz ${fuzz_seconds}s"
    "$bin" -runs=0 "$corpus" 2>&1 | tail -n 1
    "$bin" -max_total_time="$fuzz_seconds" -rss_limit_mb=2048 "$work" 2>&1 | tail -n 1
    rm -rf "$work"
  done

  echo "== sanitize: clang-19 ASan+UBSan =="
  cmake --preset sanitize >/dev/null
  cmake --build --preset sanitize -j "$jobs"
  ctest --preset sanitize -j "$jobs" -LE xen
fi

echo "== default: g++-12 =="
cmake --preset default >/dev/null
cmake --build --preset default -j "$jobs"
ctest --preset default -j "$jobs" -LE xen

echo "== xen: real Xen under QEMU =="
if [ "${XTPM_XEN:-on}" = off ]; then
  echo "xen: skipped (XTPM_XEN=off)"
else
  # Two boots (PV ~2.5 min, PVH ~1.5 min), one QEMU at a time; a cold image build (~3 min) first.
  start=$SECONDS xen_rc=0
  ctest --preset default -L xen -j 1 --output-on-failure || xen_rc=$?
  for f in build/default/tests/xen/*/skipped; do
    if [ -f "$f" ]; then echo "xen: skipped $(basename "$(dirname "$f")"): $(cat "$f")"; fi
  done
  cat build/default/tests/xen/*/results.txt 2>/dev/null || true
  echo "xen: stage took $((SECONDS - start)) s"
  exit "$xen_rc"
fi
