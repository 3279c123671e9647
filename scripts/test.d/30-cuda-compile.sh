#!/usr/bin/env bash
# Compiles the CUDA kernels with nvcc for sm_80 and sm_90, warnings as errors, with the device
# tests and the nvcc-compiled host tests of the code the kernels share with the CPU (launch
# plans, block tiers, the segmented chunk loop, the error slot's logic), and runs the host
# tests. The device tests run only where a GPU is present (exit 77: skipped); scripts/gpu_check.sh
# is the full GPU run.
set -euo pipefail
if ! command -v nvcc >/dev/null; then
  echo "cuda compile check: skipped, nvcc not found"
  exit 0
fi
cmake -S . -B build/cuda -G Ninja -DMWM_BUILD_CUDA=ON -DMWM_BUILD_TESTS=ON \
  -DMWM_BUILD_BENCHMARKS=OFF -DMWM_BUILD_EXAMPLES=OFF -DMWM_CUDA_ARCHITECTURES="${MWM_CUDA_ARCHITECTURES:-80;90}" >/dev/null
cmake --build build/cuda -j "${MWM_JOBS:-2}" --target mwm_cuda_kernels mwm_cuda_host_tests \
  mwm_cuda_device_tests
build/cuda/cuda/mwm_cuda_host_tests
status=0
build/cuda/cuda/mwm_cuda_device_tests || status=$?
if [ "$status" = 77 ]; then
  echo "cuda device tests: skipped (no CUDA device)"
elif [ "$status" != 0 ]; then
  exit "$status"
fi
