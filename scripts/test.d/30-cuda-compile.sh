#!/usr/bin/env bash
# Compiles the CUDA kernels with nvcc for sm_80 and sm_90, warnings as errors, and runs the
# nvcc-compiled host tests of the code the kernels share with the CPU. Nothing runs on a GPU.
set -euo pipefail
if ! command -v nvcc >/dev/null; then
  echo "cuda compile check: skipped, nvcc not found"
  exit 0
fi
cmake -S . -B build/cuda -G Ninja -DMWM_BUILD_CUDA=ON -DMWM_BUILD_TESTS=ON \
  -DMWM_BUILD_BENCHMARKS=OFF -DMWM_BUILD_EXAMPLES=OFF -DMWM_CUDA_ARCHITECTURES="80;90" >/dev/null
cmake --build build/cuda -j "${MWM_JOBS:-2}" --target mwm_cuda_kernels mwm_cuda_host_tests
build/cuda/cuda/mwm_cuda_host_tests
