#!/usr/bin/env bash
# Prints the C++/CUDA sources that clang-format checks, one per line, relative to the repository
# root: the tracked files (or, outside a git checkout, the files on disk) under the folders below.
set -euo pipefail
cd "$(dirname "$0")/.."
folders=(include cuda bindings tests/cpp tests/fuzz benchmarks examples)
pattern='\.(hpp|h|cpp|cc|cu|cuh)$'
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git ls-files --cached --others --exclude-standard -- "${folders[@]}" | grep -E "$pattern" || true
else
  find "${folders[@]}" -type f | grep -E "$pattern" | sort || true
fi
