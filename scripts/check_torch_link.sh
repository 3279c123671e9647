#!/usr/bin/env bash
# Compiles the CUDA extension against another torch release's wheel and links it with
# -Wl,--no-undefined, so every symbol the extension uses must resolve in that release's
# libtorch*/libc10* (and libpython). Nothing is installed or loaded: this is how the lower end
# of pyproject.toml's torch range (the GPU machine's torch 2.11) is checked on a machine without
# a GPU and without that torch installed (docs/cuda.md, "Torch versions").
#
#   pip download torch==2.11.0 --no-deps -d /tmp/t211
#   pip download 'nvidia-cuda-nvrtc>=13.0,<13.1' --no-deps -d /tmp/t211
#   scripts/check_torch_link.sh /tmp/t211/torch-2.11.0-*.whl /tmp/t211/nvidia_cuda_nvrtc-*.whl
#
# MWM_TORCH_LINK_DIR (default /tmp/mwm-torch-link) holds the unpacked wheels and the build.
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 TORCH_WHEEL NVRTC_WHEEL" >&2; exit 2; }
torch_wheel=$(readlink -f "$1")
nvrtc_wheel=$(readlink -f "$2")
for wheel in "$torch_wheel" "$nvrtc_wheel"; do
  [ -f "$wheel" ] || { echo "check_torch_link: no wheel at '$wheel'" >&2; exit 2; }
done
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=${MWM_TORCH_LINK_DIR:-/tmp/mwm-torch-link}
python=${PYTHON:-$(command -v python3)}
start=$(date +%s)
command -v nvcc >/dev/null || { echo "check_torch_link: nvcc not found on PATH" >&2; exit 1; }
toolkit=${CUDA_HOME:-$(nvcc --dryrun -x cu -c /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p' | head -1)}
toolkit=$(cd "$toolkit" && pwd -P)

mkdir -p "$work/wheel" "$work/nvrtc"
# Headers, libraries and CMake files are all the build needs; the Python part stays packed.
unzip -q -o "$torch_wheel" 'torch/include/*' 'torch/lib/*' 'torch/share/*' 'torch/version.py' \
  -d "$work/wheel"
unzip -q -o "$nvrtc_wheel" -d "$work/nvrtc"
nvrtc=$(find "$work/nvrtc" -name 'libnvrtc.so*' | sort | head -1)
version=$(sed -n "s/^__version__ = '\(.*\)'/\1/p" "$work/wheel/torch/version.py")
echo "== torch $version from $torch_wheel; CUDA toolkit $toolkit; NVRTC $nvrtc"

build=$work/build
TORCH_CUDA_ARCH_LIST=9.0 cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DMWM_BUILD_PYTHON=ON -DMWM_BUILD_TESTS=OFF -DMWM_BUILD_BENCHMARKS=OFF \
  -DMWM_BUILD_EXAMPLES=OFF -DMWM_INSTALL=OFF -DMWM_BUILD_CUDA=ON \
  -DMWM_CUDA_ARCHITECTURES=90 -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DCMAKE_PREFIX_PATH="$work/wheel/torch/share/cmake" -DPython_EXECUTABLE="$python" \
  -DCMAKE_CUDA_COMPILER="$toolkit/bin/nvcc" -DCUDA_TOOLKIT_ROOT_DIR="$toolkit" \
  -DCUDAToolkit_ROOT="$toolkit" -DCUDA_nvrtc_LIBRARY="$nvrtc" > "$work/configure.log" 2>&1 ||
  { tail -40 "$work/configure.log"; exit 1; }
grep -m1 "PyTorch: CUDA detected" "$work/configure.log" ||
  { echo "check_torch_link: the build did not configure for CUDA" >&2; exit 1; }
echo "== building the extension (2 jobs)"
cmake --build "$build" -j 2

# The module target links without --no-undefined (Python extension modules leave libpython's
# symbols to the interpreter); relink the same objects with it, libpython last.
library=$(ls "$build"/bindings/_C.cpython-*.so)
link=$(ninja -C "$build" -t commands "bindings/$(basename "$library")" | tail -1 |
       sed 's/^: && //; s/ && cd .*$//')
libpython=$("$python" -c 'import os, sysconfig
print(os.path.join(sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY")))')
checked=$work/_C_no_undefined.so
link=${link/ -o bindings\/$(basename "$library")/ -Wl,--no-undefined -o $checked}
(cd "$build" && eval "$link $libpython")
echo "== linked with -Wl,--no-undefined against torch $version: $checked"
readelf -d "$checked" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/  needs \1/p'
echo "check_torch_link: OK in $(( $(date +%s) - start )) s"
