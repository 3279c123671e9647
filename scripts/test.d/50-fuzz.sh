#!/usr/bin/env bash
# Builds the libFuzzer targets in tests/fuzz with clang and runs each one for a bounded time
# from its seed corpus (tests/fuzz/corpus/<target>). New inputs go to a scratch copy, so the
# committed seeds stay small. A crash, sanitizer report or failed invariant fails this step and
# leaves the reproducer in build/fuzz/artifacts/.
# MWM_FUZZ_SECONDS sets the time per target (default 30).
set -euo pipefail
seconds="${MWM_FUZZ_SECONDS:-30}"
clang="$(command -v clang++-14 || command -v clang++ || true)"
if [ -z "$clang" ]; then
  echo "SKIPPED: no clang++ found; libFuzzer needs clang (apt-get install clang-14)"
  exit 0
fi
probe="$(mktemp -d)"
trap 'rm -rf "$probe"' EXIT
printf '#include <cstdint>\n#include <cstddef>\nextern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n' \
  > "$probe/probe.cpp"
if ! "$clang" -fsanitize=fuzzer,address,undefined "$probe/probe.cpp" -o "$probe/probe" 2>/dev/null; then
  echo "SKIPPED: $clang cannot link -fsanitize=fuzzer (libclang_rt.fuzzer missing)"
  exit 0
fi

cmake -S . -B build/fuzz -G Ninja -DCMAKE_CXX_COMPILER="$clang" -DMWM_BUILD_FUZZERS=ON \
  -DMWM_BUILD_TESTS=OFF -DMWM_BUILD_BENCHMARKS=OFF -DMWM_BUILD_EXAMPLES=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/fuzz -j "${MWM_JOBS:-2}"

mkdir -p build/fuzz/artifacts
status=0
for seeds in tests/fuzz/corpus/*/; do
  target="$(basename "$seeds")"
  binary="build/fuzz/tests/fuzz/$target"
  [ -x "$binary" ] || { echo "no fuzz target built for corpus $seeds"; status=1; continue; }
  scratch="build/fuzz/corpus/$target"
  rm -rf "$scratch" && mkdir -p "$scratch"
  echo "--- $target: ${seconds}s"
  # -seed fixed so that a CI failure reproduces; -rss_limit_mb keeps 2-core runners healthy.
  if ! "$binary" "$scratch" "$seeds" -max_total_time="$seconds" -seed=1 -rss_limit_mb=2048 \
      -timeout=10 -print_final_stats=1 -artifact_prefix="build/fuzz/artifacts/$target-" \
      2>&1 | tail -n 25; then
    status=1
  fi
done
exit $status
