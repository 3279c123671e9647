// Streaming (non-temporal) stores of the loss gradient on the CPU. The gradient is written once,
// is far larger than the last-level cache and is not read again by the op: a plain store first
// reads every line it writes (read for ownership), a streaming store does not, which takes a
// third of the gradient's memory traffic away. The values stored are the same; only the cache
// policy of the store differs, so the bits are those of a plain loop.
#pragma once

#include <cstdint>
#include <type_traits>

#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#define MWM_LOSS_STREAM_SSE2 1
#endif

namespace mwm {
namespace detail {

// Whether stream_values / stream_zeros use streaming stores for a gradient of P (float on
// x86-64, where SSE2 is part of the base instruction set: 16-byte streaming stores fill whole
// lines in the write-combining buffers, so wider ones would not move fewer bytes).
template <typename P>
constexpr bool streams_gradient() {
#if defined(MWM_LOSS_STREAM_SSE2)
  return std::is_same_v<P, float>;
#else
  return false;
#endif
}

// out[i] = static_cast<P>(in[i]) for i < count, by the plain loop the other paths run.
template <typename Acc, typename P>
void store_values_plain(P* out, const Acc* in, std::int64_t count) {
  for (std::int64_t i = 0; i < count; ++i) out[i] = static_cast<P>(in[i]);
}

// The same with streaming stores where streams_gradient<P>() (and `in` holds floats): a plain
// head up to the first 16-byte boundary of out, streaming stores of four floats, a plain tail.
// The caller issues stream_fence() before the values are read by anyone else.
template <typename Acc, typename P>
void stream_values(P* out, const Acc* in, std::int64_t count) {
#if defined(MWM_LOSS_STREAM_SSE2)
  if constexpr (streams_gradient<P>() && std::is_same_v<Acc, float>) {
    std::int64_t i = 0;
    while (i < count && (reinterpret_cast<std::uintptr_t>(out + i) & 15) != 0) {
      out[i] = in[i];
      ++i;
    }
    for (; i + 4 <= count; i += 4) _mm_stream_ps(out + i, _mm_loadu_ps(in + i));
    for (; i < count; ++i) out[i] = in[i];
  } else {
    store_values_plain(out, in, count);
  }
#else
  store_values_plain(out, in, count);
#endif
}

template <typename P>
void store_zeros_plain(P* out, std::int64_t count) {
  for (std::int64_t i = 0; i < count; ++i) out[i] = static_cast<P>(0.0f);
}

// count zeros into out, streamed as stream_values streams.
template <typename P>
void stream_zeros(P* out, std::int64_t count) {
#if defined(MWM_LOSS_STREAM_SSE2)
  if constexpr (streams_gradient<P>()) {
    std::int64_t i = 0;
    while (i < count && (reinterpret_cast<std::uintptr_t>(out + i) & 15) != 0) out[i++] = 0.0f;
    const __m128 zero = _mm_setzero_ps();
    for (; i + 4 <= count; i += 4) _mm_stream_ps(out + i, zero);
    for (; i < count; ++i) out[i] = 0.0f;
  } else {
    store_zeros_plain(out, count);
  }
#else
  store_zeros_plain(out, count);
#endif
}

// Orders this thread's streaming stores before its later stores (streaming stores are weakly
// ordered): run by each thread after its last stream_values / stream_zeros, before it reports
// its work done, so that a thread joining it sees the values.
inline void stream_fence() {
#if defined(MWM_LOSS_STREAM_SSE2)
  _mm_sfence();
#endif
}

}  // namespace detail
}  // namespace mwm
