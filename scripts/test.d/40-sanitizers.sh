#!/usr/bin/env bash
# Builds the Catch2 suite with AddressSanitizer + UndefinedBehaviorSanitizer (Debug, so that
# bounds checks and overflow traps are not optimised away) and runs it. Any sanitizer report
# aborts the run (-fno-sanitize-recover=all), so a finding fails this step.
# LeakSanitizer is on: it works in this container (ptrace is permitted), so leaks fail too.
set -euo pipefail
cmake -S . -B build/asan -G Ninja -DMWM_SANITIZE=ON -DMWM_BUILD_BENCHMARKS=OFF \
  -DMWM_BUILD_EXAMPLES=OFF -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build/asan -j "${MWM_JOBS:-2}" --target mwm_tests
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1:check_initialization_order=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
build/asan/tests/cpp/mwm_tests
# Again on the portable kernels, which an AVX-512 machine otherwise runs only where a test
# calls them directly.
MWM_CPU_VECTOR_BITS=128 build/asan/tests/cpp/mwm_tests
