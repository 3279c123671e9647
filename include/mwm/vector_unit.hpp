// Which x86 vector unit the CPU kernels run on (keys_x86.hpp, sort_x86.hpp, outputs_x86.hpp,
// pool_rows.hpp, loss_x86.hpp): the widest this CPU has, capped by the environment variable
// MWM_CPU_VECTOR_BITS (512, 256 or 128 = the portable code), which is read once per process.
// Every variant has the portable code's bits, so the cap changes speed only: it lets tests
// and benchmarks run the AVX2 and portable paths on an AVX-512 machine.
#pragma once

#include "config.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(MWM_DEVICE_COMPILE)
#define MWM_X86_DISPATCH 1
#include <immintrin.h>

#include <cstdlib>
#include <stdexcept>
#include <string>
#endif

// GCC 12 warns inside its own AVX-512 intrinsics (their _mm512_undefined_* placeholders) when
// they are inlined into a function that enables AVX-512 by attribute: the x86 kernels' files
// wrap their code in these.
#if defined(__GNUC__) && !defined(__clang__)
#define MWM_X86_INTRINSIC_WARNINGS_OFF                                                 \
  _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wuninitialized\"") \
      _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")
#define MWM_X86_INTRINSIC_WARNINGS_ON _Pragma("GCC diagnostic pop")
#else
#define MWM_X86_INTRINSIC_WARNINGS_OFF
#define MWM_X86_INTRINSIC_WARNINGS_ON
#endif

namespace mwm {
namespace detail {

#if defined(MWM_X86_DISPATCH)

// 512 (AVX-512 F, VL, DQ, BW with BMI2 and POPCNT), 256 (AVX2) or 128 (SSE2, the portable
// code): what this CPU can run, whatever the cap.
inline int supported_x86_vector_bits() {
  static const int bits = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                                  __builtin_cpu_supports("avx512dq") &&
                                  __builtin_cpu_supports("avx512bw") &&
                                  __builtin_cpu_supports("bmi2") && __builtin_cpu_supports("popcnt")
                              ? 512
                          : __builtin_cpu_supports("avx2") ? 256
                                                           : 128;
  return bits;
}

// The cap a value of MWM_CPU_VECTOR_BITS sets; null or empty: none (512).
inline int vector_bits_cap(const char* value) {
  if (value == nullptr || *value == '\0') return 512;
  const std::string text(value);
  if (text == "512" || text == "256" || text == "128") return std::stoi(text);
  throw std::invalid_argument("MWM_CPU_VECTOR_BITS='" + text +
                              "' must be 512, 256 or 128 (the widest vector unit mwm's CPU "
                              "kernels may use)");
}

// The vector unit the kernels run on: the CPU's, capped by MWM_CPU_VECTOR_BITS.
inline int x86_vector_bits() {
  static const int bits = [] {
    const int cap = vector_bits_cap(std::getenv("MWM_CPU_VECTOR_BITS"));
    const int supported = supported_x86_vector_bits();
    return cap < supported ? cap : supported;
  }();
  return bits;
}

#endif  // MWM_X86_DISPATCH

}  // namespace detail
}  // namespace mwm
