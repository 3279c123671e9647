#!/usr/bin/env bash
# Builds the LibTorch example trainer against the LibTorch inside the torch wheel and runs it:
# it exits non-zero unless the masked-reconstruction loss went down.
set -euo pipefail
prefix="$(python -c 'import torch; print(torch.utils.cmake_prefix_path)')"
cmake -S examples/libtorch_trainer -B build/libtorch-example -G Ninja \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build build/libtorch-example -j "${MWM_JOBS:-2}"
build/libtorch-example/mwm_libtorch_trainer
