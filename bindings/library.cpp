// The mwm operator namespace, claimed once for the whole extension (a second TORCH_LIBRARY(mwm)
// anywhere fails at load time). Each op defines its schema next to its CPU kernel with
// TORCH_LIBRARY_FRAGMENT (ops/<op>.cpp, schema text in ops/<op>.h) and registers each backend's
// kernel there in its own TORCH_LIBRARY_IMPL block; fake kernels and autograd sit next to the
// op's public function in python/mwm.
#include <torch/library.h>

TORCH_LIBRARY(mwm, m) {}
