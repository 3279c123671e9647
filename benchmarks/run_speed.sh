#!/usr/bin/env bash
# The full speed benchmark: `mwm-bench speed` (masking, text-guided path, and the loss / CORAL
# rows when their modules exist), then every C++ Google Benchmark program already built.
#
#   benchmarks/run_speed.sh [mwm-bench speed options, e.g. --quick or --threads 1]
#   benchmarks/run_speed.sh --doc docs/speed.md     # also regenerate docs/speed.md's tables
#
# Environment: PYTHON (default: python), MWM_BENCH_OUT (results folder, default: mwm-out),
# MWM_CPP_BENCH_DIR (where to look for bench_* programs, default: build/*/benchmarks).
# On a shared machine set OMP_WAIT_POLICY=PASSIVE (or pass --threads 1): see docs/speed.md.
# Build the C++ benchmarks with:
#   cmake -S . -B build/bench -G Ninja -DMWM_BUILD_BENCHMARKS=ON && cmake --build build/bench -j 2
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${MWM_BENCH_OUT:-mwm-out}
python=${PYTHON:-python}
mkdir -p "$out"

echo "== mwm-bench speed $*"
"$python" -m mwm.bench speed --out "$out/speed.json" "$@"

echo "== C++ benchmarks"
if [[ -n "${MWM_CPP_BENCH_DIR:-}" ]]; then
  search=("$MWM_CPP_BENCH_DIR")
else
  search=("$root"/build/*/benchmarks)
fi
declare -A seen=()
found=0
while IFS= read -r program; do
  name=$(basename "$program")
  [[ -n "${seen[$name]:-}" ]] && continue  # the same program built in several build folders
  seen[$name]=1
  found=1
  mkdir -p "$out/cpp"
  echo "-- $program"
  "$program" --benchmark_out="$out/cpp/$name.json" --benchmark_out_format=json
done < <(for dir in "${search[@]}"; do
           [[ -d "$dir" ]] && find "$dir" -maxdepth 2 -type f -perm -u+x -name 'bench_*'
         done | sort)
if [[ $found -eq 0 ]]; then
  echo "no bench_* programs built (looked in: ${search[*]}); build them with" \
       "-DMWM_BUILD_BENCHMARKS=ON to include the C++ numbers"
fi
