// Validation of tensors at the op boundary; messages name the argument and the value.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <string>
#include <vector>

namespace mwm_bindings {

inline std::string shape_text(const at::Tensor& t) {
  std::string out = "(";
  for (int64_t i = 0; i < t.dim(); ++i) {
    out += (i ? ", " : "") + std::to_string(t.size(i));
  }
  return out + ")";
}

inline void check_dtype(const at::Tensor& t, const char* name, at::ScalarType dtype) {
  TORCH_CHECK_TYPE(t.scalar_type() == dtype, "mwm: ", name, " must be ", c10::toString(dtype),
                   ", got ", c10::toString(t.scalar_type()));
}

inline void check_dim(const at::Tensor& t, const char* name, int64_t dim) {
  TORCH_CHECK_VALUE(t.dim() == dim, "mwm: ", name, " must have ", dim, " dimensions, got shape ",
                    shape_text(t));
}

inline void check_same_device(const at::Tensor& t, const char* name, const at::Tensor& ref,
                              const char* ref_name) {
  TORCH_CHECK(t.device() == ref.device(), "mwm: ", name, " is on ", t.device(), " but ", ref_name,
              " is on ", ref.device());
}

inline void check_size(const at::Tensor& t, const char* name, int64_t dim, int64_t expected,
                       const char* what) {
  TORCH_CHECK_VALUE(t.size(dim) == expected, "mwm: ", name, " has shape ", shape_text(t),
                    ", its dimension ", dim, " must equal ", what, " = ", expected);
}

// Grid sizes from an int[] argument: 2 (gh, gw) or 3 (gd, gh, gw) positive entries.
inline std::vector<int64_t> check_grid(at::IntArrayRef grid) {
  TORCH_CHECK_VALUE(grid.size() == 2 || grid.size() == 3, "mwm: grid must have 2 or 3 sizes, got ",
                    grid);
  for (auto g : grid) TORCH_CHECK_VALUE(g > 0, "mwm: grid sizes must be positive, got ", grid);
  return grid.vec();
}

// Runs `body`, turning mwm::error into the ValueError that PyTorch users expect.
template <typename Body>
auto translate_errors(Body body) -> decltype(body()) {
  try {
    return body();
  } catch (const std::invalid_argument& e) {
    TORCH_CHECK_VALUE(false, e.what());
  }
}

}  // namespace mwm_bindings
