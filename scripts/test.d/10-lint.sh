#!/usr/bin/env bash
# Lint: ruff check over the Python code (rules in ruff.toml) and clang-format over the C++/CUDA
# sources (style in .clang-format). Any violation fails this step; scripts/format.sh applies
# clang-format and ruff's automatic fixes (the rest, e.g. long lines, are fixed by hand).
set -euo pipefail
cd "$(dirname "$0")/../.."
status=0

if ! command -v ruff >/dev/null; then
  echo "FAILED: ruff not found (scripts/setup.sh installs it from requirements-dev.txt)"
  exit 1
fi
clang_format="$(command -v clang-format-14 || command -v clang-format || true)"
if [ -z "$clang_format" ]; then
  echo "FAILED: clang-format not found (scripts/setup.sh installs the Debian package clang-format-14)"
  exit 1
fi

echo "ruff $(ruff --version | cut -d' ' -f2): ruff check ."
ruff check . || status=1

mapfile -t sources < <(scripts/lint_files.sh)
echo "$("$clang_format" --version | head -1): ${#sources[@]} C++/CUDA files"
if ! "$clang_format" --dry-run --Werror "${sources[@]}"; then
  echo "clang-format: the files above differ from .clang-format's layout (scripts/format.sh fixes them)"
  status=1
fi
exit $status
