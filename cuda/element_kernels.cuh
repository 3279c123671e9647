// What the one-thread-per-element kernels share (maps.cu, tokens.cu, pack_tokens.cu): the
// grid-stride loop over a flat count, and for the token kernels the dispatch of a float_type to
// its device type and the type that sums it.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "mwm/error.hpp"
#include "mwm_cuda.hpp"

// Every element index in [0, count) once, over however many blocks the launch has.
#define MWM_FOR_ELEMENTS(e, count)                                                        \
  for (std::int64_t e = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; \
       e < (count); e += static_cast<std::int64_t>(gridDim.x) * blockDim.x)

namespace mwm {
namespace gpu {

// Threads per block of the element kernels.
constexpr int element_threads = 256;

// float, double, and float for the half types, as at::opmath_type.
template <typename T>
struct accumulate_of {
  using type = float;
};
template <>
struct accumulate_of<double> {
  using type = double;
};

// body(T{}) with the device type T of `type`.
template <typename Body>
void with_float_type(float_type type, Body&& body) {
  switch (type) {
    case float_type::float32:
      body(float{});
      return;
    case float_type::float64:
      body(double{});
      return;
    case float_type::float16:
      body(__half{});
      return;
    case float_type::bfloat16:
      body(__nv_bfloat16{});
      return;
  }
  throw error("mwm: unknown float_type");
}

}  // namespace gpu
}  // namespace mwm
