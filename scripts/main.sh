#!/usr/bin/env bash
# The main job: the masking-ratio comparison on the built-in data (quick setting).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec "${MWM_VENV:-$PWD/.venv}/bin/mwm-bench" ratios --quick "$@"
