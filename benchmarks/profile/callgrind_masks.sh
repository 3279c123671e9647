#!/usr/bin/env bash
# Instruction counts (valgrind --tool=callgrind) of mask generation per patch, for the current
# tree and, when given a git revision, for that revision's include/ too, on the same driver
# (benchmarks/profile/profile_masks.cpp): instruction counts do not depend on the machine's
# load, so they decide between implementations on a shared machine. valgrind emulates no
# AVX-512: the counts are of the AVX2 / portable paths (keys_x86.hpp, the counting sort), not of
# the AVX-512 key loop and sorting network that such CPUs run (time those with profile_masks).
#
#   benchmarks/profile/callgrind_masks.sh [REVISION]      e.g. HEAD~3
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
trees=("current:$root/include")
if [[ $# -ge 1 ]]; then
  mkdir -p "$work/old"
  git -C "$root" archive "$1" include | tar -x -C "$work/old"
  trees+=("$1:$work/old/include")
fi
cases=("random 256 14 14" "per_region 256 14 14" "per_region 8 8 8 8")
for tree in "${trees[@]}"; do
  name=${tree%%:*}
  include=${tree#*:}
  g++ -O3 -std=c++17 -I"$include" "$root/benchmarks/profile/profile_masks.cpp" -o "$work/driver"
  for case in "${cases[@]}"; do
    read -r -a words <<< "$case"
    patches=$(( words[1] * words[2] * words[3] * ${words[4]:-1} ))
    count() {  # instructions of generate_masks_into over $1 calls
      valgrind --tool=callgrind --callgrind-out-file="$work/out" "$work/driver" "${words[@]}" "$1" \
        > /dev/null 2>&1
      callgrind_annotate --inclusive=yes "$work/out" 2>/dev/null |
        awk '/generate_masks_into/ { gsub(",", "", $1); print $1; exit }'
    }
    one=$(count 1)
    three=$(count 3)
    per_call=$(( (three - one) / 2 ))
    printf '%-10s %-22s %8.1f instructions per patch (%d per call)\n' "$name" "$case" \
      "$(echo "$per_call / $patches" | bc -l)" "$per_call"
  done
done
