// The block the CPU loss keeps for its next gradient (docs/design.md, "The loss gradient's
// memory on the CPU"): the fused forward's gradient is as large as pred (38.5 MB for a 2D batch
// of 64 at 224 px), larger than glibc's mmap threshold, so a plain at::empty maps fresh pages
// every step and the kernel zeroes each of them before the op writes it. One freed gradient
// block is kept and handed to the next gradient that fits it instead.
#pragma once

#include <ATen/ATen.h>

#include <cstddef>

namespace mwm_bindings {

// A contiguous tensor shaped like `like` (its dtype and CPU device), uninitialized. Its storage
// is the cached block when one is held whose size is in [nbytes, 2 nbytes], else a fresh one
// (advised to huge pages before it is touched);
// when the tensor's storage is freed, its block becomes the cached one (a block held before
// it is released) unless caching is off.
at::Tensor cached_gradient_like(const at::Tensor& like);

// Bytes of the cached-path gradients alive now (outside torch's allocator).
std::size_t loss_gradient_live_bytes();

// Bytes of the block held now (0 when none).
std::size_t loss_gradient_cache_bytes();

// Releases the held block, if any.
void empty_loss_gradient_cache();

}  // namespace mwm_bindings
