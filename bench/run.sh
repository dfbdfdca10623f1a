#!/bin/sh
# Build xtpm-bench and, when the tree has it, xtpm-vtpmd (only those targets) in
# the optimised `default` preset tree, then run the bench with the given arguments.
#   bench/run.sh                 full run (31 rounds x 400 calls, about 1 s)
#   bench/run.sh --quick         smoke run
#   XTPM_BENCH_BUILD=/path bench/run.sh ...   use another (optimised) build tree
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=${XTPM_BENCH_BUILD:-$src/build/default}
if [ ! -f "$build/build.ninja" ]; then
    if [ -n "${XTPM_BENCH_BUILD:-}" ]; then
        cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
    else
        (cd "$src" && cmake --preset default >/dev/null)
    fi
fi
targets=xtpm-bench
if ninja -C "$build" -t targets all 2>/dev/null | grep -q '^xtpm-vtpmd:'; then
    targets="$targets xtpm-vtpmd"
fi
ninja -C "$build" $targets >/dev/null
exec "$build/bench/xtpm-bench" "$@"
