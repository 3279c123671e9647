// The loss tests' one way of pointing mwm::loss_inputs at buffers they own.
#pragma once

#include <mwm/masking.hpp>

#include <cstdint>

namespace mwm_test {

// Loss inputs of `batch` samples over `pred` and `target` read through their strides; a null
// `weight` weighs every patch 1.
template <typename T>
mwm::loss_inputs<T, T, T> loss_inputs_over(const mwm::patch_geometry& g, std::int64_t batch,
                                           const T* pred, const mwm::patch_strides& pred_strides,
                                           const T* target,
                                           const mwm::patch_strides& target_strides,
                                           const std::uint8_t* mask, const T* weight,
                                           const mwm::loss_options& options) {
  mwm::loss_inputs<T, T, T> in;
  in.geometry = g;
  in.batch = batch;
  in.pred = pred;
  in.pred_strides = pred_strides;
  in.target = target;
  in.target_strides = target_strides;
  in.mask = mask;
  in.weight = weight;
  in.options = options;
  return in;
}

}  // namespace mwm_test
