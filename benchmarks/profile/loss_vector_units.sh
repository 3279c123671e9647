#!/usr/bin/env bash
# The CPU loss step (benchmarks/profile/profile_loss.cpp: forward with the gradient, one thread,
# the benchmark's 2D and 3D shapes) on each vector unit this CPU has, capped by
# MWM_CPU_VECTOR_BITS: AVX-512, AVX2 and the portable code. The caps alternate over ROUNDS
# rounds and each keeps its fastest step, against the fastest copy of the same bytes seen in the
# run, so that a busy machine disturbs the comparison least. Prints one line per (unit, shape);
# a cap above what the CPU has runs the CPU's widest unit.
#
#   benchmarks/profile/loss_vector_units.sh [ROUNDS]      (default 5)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
rounds=${1:-5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
g++ -O3 -std=c++17 -ffp-contract=off -I"$root/include" "$root/benchmarks/profile/profile_loss.cpp" \
  -o "$work/profile_loss"
for ((r = 0; r < rounds; ++r)); do
  for bits in 512 256 128; do
    echo "$bits 2d $(MWM_CPU_VECTOR_BITS=$bits "$work/profile_loss" 2d 64 30 | tail -1)"
    echo "$bits 3d $(MWM_CPU_VECTOR_BITS=$bits "$work/profile_loss" 3d 8 15 | tail -1)"
  done
done > "$work/runs"
grep -m1 -o "model name.*" /proc/cpuinfo 2>/dev/null || true
echo "rounds $rounds, one thread, load average $(cut -d' ' -f1-3 /proc/loadavg)"
# Each line: BITS SHAPE ... F ms fastest, ... copy of the same bytes C ms ...
awk '{
  for (i = 1; i <= NF; ++i) {
    if ($i == "fastest,") fastest = $(i - 2)
    if ($i == "bytes") copy = $(i + 1)
  }
  key = $1 " " $2
  if (!(key in best) || fastest < best[key]) best[key] = fastest
  if (!($2 in copies) || copy < copies[$2]) copies[$2] = copy
} END {
  name[512] = "AVX-512"; name[256] = "AVX2"; name[128] = "portable"
  for (b = 512; b >= 128; b /= 2)
    for (s = 2; s <= 3; ++s) {
      key = b " " s "d"
      printf "%-8s %s: fastest step %6.2f ms, %3.0f%% of the fastest copy of its bytes\n",
             name[b], s "d", best[key], 100 * copies[s "d"] / best[key]
    }
}' "$work/runs"
