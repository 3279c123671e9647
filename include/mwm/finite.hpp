// What nan_policy::zero means everywhere a value is read: NaN and infinities count as zero.
#pragma once

#include "config.hpp"

namespace mwm {
namespace detail {

MWM_HOST_DEVICE MWM_INLINE bool is_finite_value(float v) {
  return v == v && v - v == 0.0f;  // NaN fails the first test, +-inf the second
}

MWM_HOST_DEVICE MWM_INLINE float finite_or_zero(float v) { return is_finite_value(v) ? v : 0.0f; }

}  // namespace detail
}  // namespace mwm
