#!/usr/bin/env bash
# The one command that proves the CUDA path on a GPU machine (one H200, 16 cores, x86_64, its
# python3 with a CUDA torch, nvcc, cmake, ninja, pytest; no package registry):
#
#   scripts/prepare_gpu_check.sh     # first, on a machine with apt-get (headers into the tree)
#   scripts/gpu_check.sh OUT_DIR     # on the GPU machine; at most about 8 minutes
#
# Steps, each with its own time limit, log and exit status in OUT_DIR/summary.json:
#   configure  CMake against the machine's torch (sm_90 only), Catch2 and Eigen from the tree
#   build      the extension, the device tests (tests/cpp/cuda_device_tests.cu) and the nvcc
#              host tests, all cores
#   host       mwm_cuda_host_tests (the kernels' shared logic compiled by nvcc, on the CPU)
#   device     mwm_cuda_device_tests (the launchers against the CPU drivers, and every data
#              error raised with the CPU's message, on the GPU)
#   pytest     pytest -m cuda (the cuda variants of the device-parametrized tests)
#   sanitizer  compute-sanitizer memcheck, racecheck, synccheck and initcheck over the device
#              tests in their quick mode (MWM_DEVICE_TESTS_QUICK=1), the four tools at once
#   bench      benchmarks/bench_cuda.py --json OUT_DIR/bench_cuda.json
# Without a GPU (a dry run) the build runs and the GPU steps report their skip;
# MWM_GPU_CHECK_CONFIGURE_ONLY=1 also skips the build (for a machine that cannot afford it).
# MWM_PYTHON (default python3), MWM_JOBS (default all cores), MWM_GPU_BUILD_DIR and
# MWM_EXTENSION (a prebuilt _C.so) override the defaults.
set -uo pipefail

out=${1:?usage: scripts/gpu_check.sh OUT_DIR}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$root"
python=${MWM_PYTHON:-python3}
jobs=${MWM_JOBS:-$(nproc)}
build=${MWM_GPU_BUILD_DIR:-$root/build/gpu-check}
deps=$root/third_party_local/gpu-deps/root/usr
start=$(date +%s)
export out root python jobs build deps
summary=()

# run NAME LIMIT_SECONDS COMMAND...: the command's output in OUT_DIR/NAME.log.
run() {
  local name=$1 limit=$2
  shift 2
  local begin=$(date +%s)
  echo "== $name (limit ${limit} s)"
  # A fresh bash with this script's functions runs the step, so that timeout can stop it.
  timeout --kill-after=10 "$limit" bash -c "$(declare -f); \"\$@\"" step "$@" \
    > "$out/$name.log" 2>&1
  local rc=$?
  local took=$(( $(date +%s) - begin ))
  echo "   rc $rc in ${took} s; last lines:"
  tail -4 "$out/$name.log" | sed 's/^/   | /'
  summary+=("{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $took}")
  return $rc
}

write_summary() {
  local IFS=,
  printf '{"total_seconds": %d, "steps": [%s]}\n' "$(( $(date +%s) - start ))" "${summary[*]}" \
    > "$out/summary.json"
  cat "$out/summary.json"
}
trap write_summary EXIT

{
  date -u
  uname -m
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.memory --format=csv 2>&1 ||
    echo "nvidia-smi: not available"
  nvcc --version 2>&1 | tail -2
  "$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
"available", torch.cuda.is_available())' 2>&1
  git -C "$root" log --oneline -1 2>/dev/null
} > "$out/environment.txt"
cat "$out/environment.txt"

gpu=0
"$python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null && gpu=1

prefix=$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)')
toolkit=${CUDA_HOME:-$(dirname "$(dirname "$(command -v nvcc)")")}
export prefix toolkit
[ -d "$deps" ] || echo "gpu_check: $deps missing (run scripts/prepare_gpu_check.sh first)"
# torch's CMake asks the GPU for its architecture when this is unset.
export TORCH_CUDA_ARCH_LIST=9.0
configure() {
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DMWM_BUILD_PYTHON=ON -DMWM_BUILD_TESTS=ON -DMWM_BUILD_BENCHMARKS=OFF \
    -DMWM_BUILD_EXAMPLES=OFF -DMWM_INSTALL=OFF \
    -DCMAKE_PREFIX_PATH="$prefix;$deps" -DPython_EXECUTABLE="$(command -v "$python")" \
    -DMWM_CUDA_ARCHITECTURES=90 -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DCMAKE_CUDA_COMPILER="$(command -v nvcc)" -DCUDAToolkit_ROOT="$toolkit" ${MWM_CMAKE_ARGS:-}
}
compile() {
  cmake --build "$build" -j "$jobs" --target _C mwm_cuda_device_tests mwm_cuda_host_tests
}
run configure 90 configure || { echo "gpu_check: configure failed, see $out/configure.log"; exit 1; }
# MWM_GPU_CHECK_CONFIGURE_ONLY=1: a dry run of the script on a machine that cannot afford the
# build (the later steps then use whatever is already built, or report that nothing is).
if [ "${MWM_GPU_CHECK_CONFIGURE_ONLY:-0}" = 1 ]; then
  run build 5 echo "skipped: MWM_GPU_CHECK_CONFIGURE_ONLY=1"
else
  run build 300 compile || { echo "gpu_check: the build failed, see $out/build.log"; exit 1; }
fi

device_tests=$(find "$build" -name mwm_cuda_device_tests -type f 2>/dev/null | head -1)
host_tests=$(find "$build" -name mwm_cuda_host_tests -type f 2>/dev/null | head -1)
extension=${MWM_EXTENSION:-$build/bindings/_C.so}
not_built() { echo "skipped: $1 was not built"; }

if [ -n "$host_tests" ]; then run host 60 "$host_tests"; else run host 5 not_built mwm_cuda_host_tests; fi

skip_77() {
  "$@"
  local rc=$?
  [ "$rc" = 77 ] && { echo "skipped: no CUDA device (exit 77)"; return 0; }
  return $rc
}
if [ -n "$device_tests" ]; then
  run device 60 skip_77 "$device_tests"
else
  run device 5 not_built mwm_cuda_device_tests
fi

MWM_EXTENSION=$extension PYTHONPATH=$root/python \
  run pytest 200 "$python" -m pytest -m cuda -q -p no:cacheprovider -rs \
  --junitxml="$out/pytest_cuda.xml" tests/python

if [ "$gpu" = 1 ] && [ -n "$device_tests" ] && command -v compute-sanitizer >/dev/null; then
  sanitize() {
    local tool pids=() rc=0
    for tool in memcheck racecheck synccheck initcheck; do
      MWM_DEVICE_TESTS_QUICK=1 compute-sanitizer --tool "$tool" --error-exitcode 3 \
        "$device_tests" > "$out/sanitizer_$tool.log" 2>&1 &
      pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
    for tool in memcheck racecheck synccheck initcheck; do
      echo "$tool: $(grep -E 'ERROR SUMMARY|passed,' "$out/sanitizer_$tool.log" | tr '\n' ' ')"
    done
    return $rc
  }
  run sanitizer 150 sanitize
else
  run sanitizer 5 echo "skipped: no CUDA device or no compute-sanitizer"
fi

MWM_EXTENSION=$extension PYTHONPATH=$root/python \
  run bench 100 "$python" "$root/benchmarks/bench_cuda.py" --repeats 10 \
  --json "$out/bench_cuda.json"
