#!/usr/bin/env bash
# Applies the project's layout in place: clang-format (.clang-format) to the C++/CUDA sources and
# ruff's automatic fixes (ruff.toml: import order, unused imports, ...) to the Python code.
# What ruff cannot fix by itself (long lines, ambiguous names) it lists at the end; fix those by
# hand. scripts/test.d/10-lint.sh checks the same rules without changing anything.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${MWM_VENV:-$PWD/.venv}"
[ -x "$VENV/bin/ruff" ] && export PATH="$VENV/bin:$PATH"
clang_format="$(command -v clang-format-14 || command -v clang-format)"
mapfile -t sources < <(scripts/lint_files.sh)
"$clang_format" -i "${sources[@]}"
echo "format: clang-format applied to ${#sources[@]} files"
ruff check --fix --exit-zero .
