#!/usr/bin/env bash
# All the tests: lint, C++ (Catch2, install/consumer, sanitizers, fuzzing), CUDA compile check,
# the docs build, Python (pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
VENV="${MWM_VENV:-$PWD/.venv}"
export PATH="$VENV/bin:$PATH"
JOBS="${MWM_JOBS:-2}"
status=0
step() { echo; echo "=== $* ==="; }

step "C++ tests (Catch2, header check, install + find_package consumer)"
cmake -S . -B build/test-cpp -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/test-cpp -j "$JOBS"
ctest --test-dir build/test-cpp --output-on-failure || status=1

for extra in scripts/test.d/*.sh; do
  [ -e "$extra" ] || continue
  step "$(basename "$extra" .sh)"
  bash "$extra" || status=1
done

step "Python tests (pytest)"
python -m pytest tests/python -q -p no:cacheprovider || status=1
exit $status
