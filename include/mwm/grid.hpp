// Patch grids over 2D images (C, H, W) and 3D volumes (C, D, H, W).
#pragma once

#include <cstdint>
#include <string>

#include "config.hpp"
#include "error.hpp"

namespace mwm {

// Largest patch count per sample; indices fit in 31 bits so selection keys can carry them.
constexpr std::int64_t max_patches_per_sample = std::int64_t(1) << 31;

// Number of patches along each axis; a 2D grid has depth 1 and ndim 2.
struct grid_shape {
  int ndim = 2;
  std::int64_t depth = 1;
  std::int64_t height = 1;
  std::int64_t width = 1;

  MWM_HOST_DEVICE std::int64_t num_patches() const { return depth * height * width; }

  // Row-major patch index n = (d * gh + h) * gw + w.
  MWM_HOST_DEVICE std::int64_t index(std::int64_t d, std::int64_t h, std::int64_t w) const {
    return (d * height + h) * width + w;
  }
};

// Axis coordinates of a patch: the inverse of grid_shape::index.
struct patch_coordinates {
  std::int64_t d;
  std::int64_t h;
  std::int64_t w;
};

namespace steps {

MWM_HOST_DEVICE MWM_INLINE patch_coordinates coordinates_of(const grid_shape& grid,
                                                            std::int64_t patch) {
  return patch_coordinates{patch / (grid.height * grid.width), (patch / grid.width) % grid.height,
                           patch % grid.width};
}

}  // namespace steps

inline grid_shape make_grid_2d(std::int64_t height, std::int64_t width) {
  detail::require(height > 0, "grid height", height, "must be positive");
  detail::require(width > 0, "grid width", width, "must be positive");
  detail::require(height * width < max_patches_per_sample, "grid height*width", height * width,
                  "must be below 2^31");
  return grid_shape{2, 1, height, width};
}

inline grid_shape make_grid_3d(std::int64_t depth, std::int64_t height, std::int64_t width) {
  detail::require(depth > 0, "grid depth", depth, "must be positive");
  detail::require(height > 0, "grid height", height, "must be positive");
  detail::require(width > 0, "grid width", width, "must be positive");
  detail::require(
      depth * height < max_patches_per_sample && depth * height * width < max_patches_per_sample,
      "grid depth*height*width", depth * height * width, "must be below 2^31");
  return grid_shape{3, depth, height, width};
}

// An image (or volume) cut into patches: sizes per axis, depth 1 in 2D.
struct patch_geometry {
  grid_shape grid;
  std::int64_t channels = 1;
  std::int64_t patch_depth = 1;
  std::int64_t patch_height = 1;
  std::int64_t patch_width = 1;

  MWM_HOST_DEVICE std::int64_t image_depth() const { return grid.depth * patch_depth; }
  MWM_HOST_DEVICE std::int64_t image_height() const { return grid.height * patch_height; }
  MWM_HOST_DEVICE std::int64_t image_width() const { return grid.width * patch_width; }
  MWM_HOST_DEVICE std::int64_t pixels_per_patch() const {
    return patch_depth * patch_height * patch_width;
  }
  // Length of a patch vector, ordered (pd, ph, pw, c) with the channel fastest (MAE patchify).
  MWM_HOST_DEVICE std::int64_t patch_vector_size() const { return pixels_per_patch() * channels; }
};

namespace detail {

inline std::int64_t patches_along(const char* image_arg, std::int64_t image_size,
                                  const char* patch_arg, std::int64_t patch_size) {
  require(image_size > 0, image_arg, image_size, "must be positive");
  require(patch_size > 0, patch_arg, patch_size, "must be positive");
  require(image_size % patch_size == 0, image_arg, image_size,
          "must be divisible by " + std::string(patch_arg) + " = " + to_text(patch_size));
  return image_size / patch_size;
}

}  // namespace detail

inline patch_geometry make_geometry_2d(std::int64_t channels, std::int64_t height,
                                       std::int64_t width, std::int64_t patch_height,
                                       std::int64_t patch_width) {
  detail::require(channels > 0, "channels", channels, "must be positive");
  const auto gh = detail::patches_along("image height", height, "patch height", patch_height);
  const auto gw = detail::patches_along("image width", width, "patch width", patch_width);
  return patch_geometry{make_grid_2d(gh, gw), channels, 1, patch_height, patch_width};
}

inline patch_geometry make_geometry_3d(std::int64_t channels, std::int64_t depth,
                                       std::int64_t height, std::int64_t width,
                                       std::int64_t patch_depth, std::int64_t patch_height,
                                       std::int64_t patch_width) {
  detail::require(channels > 0, "channels", channels, "must be positive");
  const auto gd = detail::patches_along("image depth", depth, "patch depth", patch_depth);
  const auto gh = detail::patches_along("image height", height, "patch height", patch_height);
  const auto gw = detail::patches_along("image width", width, "patch width", patch_width);
  return patch_geometry{make_grid_3d(gd, gh, gw), channels, patch_depth, patch_height, patch_width};
}

}  // namespace mwm
