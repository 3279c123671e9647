// The mwm operator namespace, claimed once for the whole extension (a second TORCH_LIBRARY(mwm)
// anywhere fails at load time). Each op defines its schema next to its CPU kernel with
// TORCH_LIBRARY_FRAGMENT (cpu/<op>.cpp, schema text in ops/<op>.h) and registers its kernels in
// its own per-backend files with TORCH_LIBRARY_IMPL; fake kernels and autograd are in
// python/mwm/_ops.
#include <torch/library.h>

TORCH_LIBRARY(mwm, m) {}
