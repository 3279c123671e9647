#!/usr/bin/env bash
# Builds the CUDA-enabled torch extension (compile and link only: no GPU is needed and nothing
# runs on one), then loads it into the CUDA build of torch and checks that every op that
# bindings/cuda/*.cpp registers (m.impl in their TORCH_LIBRARY_IMPL(mwm, CUDA, m) blocks) has a
# CUDA kernel (bindings/ops/*.cpp hold their CUDA blocks under MWM_WITH_CUDA); it lists the ops
# the extension defines without one.
#
#   scripts/check_cuda_extension.sh            # venv /work/venv-cuda, build/ext-cuda, sm_80 + sm_90
#   MWM_CUDA_VENV=... MWM_CUDA_BUILD_DIR=... MWM_CUDA_ARCHITECTURES="80" scripts/check_cuda_extension.sh
#
# The venv holds the CUDA build of torch 2.14.1 (about 5.5 GB; pip takes it from the local disk
# cache when it lies there). It is created on first use and reused afterwards.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${MWM_CUDA_VENV:-/work/venv-cuda}
build=${MWM_CUDA_BUILD_DIR:-$root/build/ext-cuda}
archs=${MWM_CUDA_ARCHITECTURES:-80;90}
python=$venv/bin/python
start=$(date +%s)

command -v nvcc >/dev/null || { echo "check_cuda_extension: nvcc not found on PATH" >&2; exit 1; }

if ! "$python" -c 'import torch, sys; sys.exit(0 if torch.version.cuda else 1)' 2>/dev/null; then
  echo "== creating $venv with the CUDA build of torch 2.14.1"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet torch==2.14.1 numpy cmake ninja
fi
"$python" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)'

# The toolkit's root (torch's CMake runs the legacy FindCUDA, which needs it; nvcc on PATH may be
# a wrapper script outside the toolkit).
toolkit=${CUDA_HOME:-$(nvcc --dryrun -x cu -c /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p' | head -1)}
toolkit=$(cd "$toolkit" && pwd -P)
[ -f "$toolkit/include/cuda_runtime.h" ] || { echo "check_cuda_extension: no CUDA toolkit at '$toolkit' (set CUDA_HOME)" >&2; exit 1; }
echo "CUDA toolkit $toolkit"

prefix=$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)')
# torch's CMake links NVRTC; a minimal toolkit may lack it, the pip wheels torch runs on have it.
nvrtc=$(ls "$toolkit"/lib64/libnvrtc.so 2>/dev/null ||
        "$python" -c 'import glob, os, nvidia
print(sorted(glob.glob(os.path.join(os.path.dirname(nvidia.__path__[0]), "nvidia", "cu*", "lib", "libnvrtc.so.*")))[0])')
echo "NVRTC $nvrtc"
# torch's CMake asks for the GPU's architecture when this is unset; there is no GPU to ask.
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-8.0;9.0}
echo "== configuring $build (CUDA architectures $archs)"
mkdir -p "$(dirname "$build")"
cmake -S "$root" -B "$build" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release \
  -DMWM_BUILD_PYTHON=ON -DMWM_BUILD_TESTS=OFF -DMWM_BUILD_BENCHMARKS=OFF \
  -DMWM_BUILD_EXAMPLES=OFF -DMWM_INSTALL=OFF \
  -DCMAKE_PREFIX_PATH="$prefix" -DPython_EXECUTABLE="$python" \
  -DMWM_CUDA_ARCHITECTURES="$archs" -DCMAKE_CUDA_ARCHITECTURES="$archs" \
  -DCMAKE_CUDA_COMPILER="$toolkit/bin/nvcc" \
  -DCUDA_TOOLKIT_ROOT_DIR="$toolkit" -DCUDAToolkit_ROOT="$toolkit" \
  -DCUDA_nvrtc_LIBRARY="$nvrtc" > "$build.configure.log" 2>&1 ||
  { tail -40 "$build.configure.log"; exit 1; }

echo "== building (2 jobs)"
cmake --build "$build" -j 2

library=$build/bindings/_C.so
echo "== loading $library into torch (no GPU needed to register kernels)"
"$python" - "$library" "$root"/bindings/cuda/*.cpp "$root"/bindings/ops/*.cpp <<'PY'
import re
import sys

import torch

library, sources = sys.argv[1], sys.argv[2:]
torch.ops.load_library(library)
cuda_blocks = [block for source in sources for block in
               re.findall(r"TORCH_LIBRARY_IMPL\(mwm, CUDA, m\) \{(.*?)\n\}", open(source).read(),
                          re.S)]
ops = sorted({op for block in cuda_blocks
              for op in re.findall(r'm\.impl\(\s*"([A-Za-z0-9_]+)"', block)})
missing = [op for op in ops
           if not torch._C._dispatch_has_kernel_for_dispatch_key(f"mwm::{op}", "CUDA")]
if not ops or missing:
    sys.exit(f"check_cuda_extension: no CUDA kernel for {missing or 'any op'}")
defined = sorted(name.split("::", 1)[1] for name in torch._C._dispatch_get_all_op_names()
                 if name.startswith("mwm::"))
print(f"CUDA kernels registered for {len(ops)} ops: {', '.join(ops)}")
without = sorted(set(defined) - set(ops))
if without:
    print(f"ops defined without a CUDA kernel (CPU only): {', '.join(without)}")
PY
echo "check_cuda_extension: OK in $(( $(date +%s) - start )) s"
