#!/usr/bin/env bash
# Puts what scripts/gpu_check.sh needs beyond the GPU machine's own toolchain into the working
# tree: the GPU machine (python3 with torch, nvcc, cmake, ninja, pybind11, pytest) reaches no
# package registry, so the Eigen and Catch2 headers travel with the tree, unpacked from the
# Debian packages into third_party_local/gpu-deps (git-ignored, about 12 MB).
#
#   scripts/prepare_gpu_check.sh        # here, with apt-get able to download
#   then on the GPU machine: scripts/gpu_check.sh OUT_DIR
#
# The device tool copies tracked and untracked-but-not-ignored files only: its `carry` must name
# third_party_local/gpu-deps.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=$root/third_party_local/gpu-deps
mkdir -p "$dest/debs" "$dest/root"
cd "$dest/debs"
apt-get download libeigen3-dev catch2 >/dev/null
for deb in ./*.deb; do
  dpkg-deb -x "$deb" "$dest/root"
done
# Only the headers and the CMake package files are needed; the docs and pkg-config files stay.
rm -rf "$dest/root/usr/share/doc" "$dest/root/usr/share/pkgconfig" "$dest/debs"
for header in Eigen/Core catch2/catch.hpp; do
  [ -f "$dest/root/usr/include/${header}" ] || [ -f "$dest/root/usr/include/eigen3/${header}" ] ||
    { echo "prepare_gpu_check: $header missing after unpacking" >&2; exit 1; }
done
echo "prepare_gpu_check: $(du -sh "$dest" | cut -f1) in $dest"
echo "  CMake prefix for gpu_check.sh: $dest/root/usr"
