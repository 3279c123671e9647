// The one-block cache of the CPU loss's gradient (loss_gradient_cache.h) and its two ops,
// _loss_gradient_cache_bytes and _empty_loss_gradient_cache (mwm.empty_loss_cache()).
#include "ops/loss_gradient_cache.h"

#include <torch/library.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "ops/masked_recon_loss.h"

namespace mwm_bindings {
namespace {

// Blocks below this size come from glibc's heap, whose freed memory is reused without fresh
// pages: caching them would only hold memory.
constexpr std::size_t smallest_cached = std::size_t(4) << 20;
constexpr std::size_t block_alignment = std::size_t(2) << 20;

struct block {
  void* data;
  std::size_t bytes;
};

// MWM_LOSS_GRADIENT_CACHE=0 turns the cache off (read once, at the first gradient).
bool cache_enabled() {
  static const bool enabled = [] {
    const char* value = std::getenv("MWM_LOSS_GRADIENT_CACHE");
    return value == nullptr || std::strcmp(value, "0") != 0;
  }();
  return enabled;
}

// Never destroyed: a gradient freed while the process exits (after static destructors ran)
// still calls return_block.
std::mutex& cache_mutex() {
  static auto* m = new std::mutex;
  return *m;
}

// Bytes of the blocks handed out and not yet freed: the gradients alive now, which torch's
// profiler does not see (the benchmark's peak memory adds them).
std::atomic<std::size_t>& live_bytes() {
  static std::atomic<std::size_t> bytes{0};
  return bytes;
}

block& held() {
  static block b{nullptr, 0};
  return b;
}

void release(block* b) {
  std::free(b->data);
  delete b;
}

// The storage's deleter: the freed block becomes the held one, and a block held before it is
// released. The newest is kept because a training loop's next step has the shape of its last
// one: keeping the older block instead (say a 2D batch's) would make every step of a new shape
// (a 3D batch, twice the size) map and zero fresh pages.
void return_block(void* context) {
  auto* b = static_cast<block*>(context);
  live_bytes() -= b->bytes;
  if (!cache_enabled()) {
    release(b);
    return;
  }
  block older{nullptr, 0};
  {
    const std::lock_guard<std::mutex> lock(cache_mutex());
    older = held();
    held() = *b;
  }
  delete b;
  std::free(older.data);
}

block* take_block(std::size_t nbytes) {
  if (cache_enabled()) {
    const std::lock_guard<std::mutex> lock(cache_mutex());
    block& h = held();
    if (h.data != nullptr && h.bytes >= nbytes && h.bytes / 2 <= nbytes) {
      auto* b = new block(h);
      h = block{nullptr, 0};
      return b;
    }
  }
  void* data = nullptr;
  TORCH_CHECK(posix_memalign(&data, block_alignment, nbytes) == 0, "mwm: cannot allocate ", nbytes,
              " bytes for the loss gradient");
  advise_huge_pages(data, static_cast<int64_t>(nbytes));
  return new block{data, nbytes};
}

}  // namespace

at::Tensor cached_gradient_like(const at::Tensor& like) {
  const auto options = like.options().memory_format(at::MemoryFormat::Contiguous);
  const std::size_t nbytes = static_cast<std::size_t>(like.numel()) * like.element_size();
  if (!cache_enabled() || nbytes < smallest_cached || !like.device().is_cpu()) {
    auto fresh = at::empty(like.sizes(), options);
    advise_huge_pages(fresh.data_ptr(), static_cast<int64_t>(fresh.nbytes()));
    return fresh;
  }
  block* b = take_block(nbytes);
  live_bytes() += b->bytes;
  return at::from_blob(
      b->data, like.sizes(), [b](void*) { return_block(b); }, like.options());
}

std::size_t loss_gradient_live_bytes() { return live_bytes().load(); }

std::size_t loss_gradient_cache_bytes() {
  const std::lock_guard<std::mutex> lock(cache_mutex());
  return held().bytes;
}

void empty_loss_gradient_cache() {
  block b{nullptr, 0};
  {
    const std::lock_guard<std::mutex> lock(cache_mutex());
    b = held();
    held() = block{nullptr, 0};
  }
  std::free(b.data);
}

}  // namespace mwm_bindings

TORCH_LIBRARY_FRAGMENT(mwm, m) {
  m.def("_loss_gradient_cache_bytes() -> int",
        [] { return static_cast<int64_t>(mwm_bindings::loss_gradient_cache_bytes()); });
  m.def("_loss_gradient_live_bytes() -> int",
        [] { return static_cast<int64_t>(mwm_bindings::loss_gradient_live_bytes()); });
  m.def("_empty_loss_gradient_cache() -> ()", [] { mwm_bindings::empty_loss_gradient_cache(); });
}
