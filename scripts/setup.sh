#!/usr/bin/env bash
# Prepares a fresh machine: Debian packages (when root), the venv .venv with the CPU build of
# torch, and mwm installed into it. Idempotent: a second run only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${MWM_VENV:-$PWD/.venv}"
TORCH_SPEC="${MWM_TORCH:-torch==2.13.0}"
APT_PACKAGES=(g++ cmake ninja-build python3-venv libeigen3-dev xtensor-dev catch2
              libbenchmark-dev clang libclang-rt-14-dev clang-format-14)

missing_packages() {
  local missing=()
  for package in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$package")
  done
  echo "${missing[@]:-}"
}

if command -v apt-get >/dev/null && command -v dpkg-query >/dev/null; then
  missing="$(missing_packages)"
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ]; then
      echo "mwm setup: installing Debian packages: $missing"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      # shellcheck disable=SC2086
      apt-get install -y -qq --no-install-recommends $missing >/dev/null
    else
      echo "mwm setup: missing Debian packages (install them as root): $missing" >&2
    fi
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "mwm setup: creating $VENV"
  python3 -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
# torch first and pinned: anything that lets pip choose torch pulls a multi-GB CUDA build.
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "mwm setup: installing $TORCH_SPEC"
  "${PIP[@]}" install "$TORCH_SPEC"
fi
# timm and open_clip depend on torchvision, whose newest release pins a newer torch: without this
# constraint pip would replace the CPU torch by a CUDA build. Pinning the installed torch makes
# pip pick the torchvision of the same release instead.
TORCH_INSTALLED="$("$VENV/bin/python" -c "import torch; print(torch.__version__.split('+')[0])")"
CONSTRAINTS="$VENV/mwm-torch-constraint.txt"
echo "torch==$TORCH_INSTALLED" > "$CONSTRAINTS"
"${PIP[@]}" install -r requirements-dev.txt -r requirements-docs.txt -c "$CONSTRAINTS"
echo "mwm setup: building and installing mwm (compiles the torch extension)"
"${PIP[@]}" install --no-build-isolation --no-deps .
"$VENV/bin/python" -c "import mwm, torch; print('mwm setup: mwm', mwm.__version__, 'on torch', torch.__version__)"
