// The CUDA path's losses on the CPU: the per-thread bodies of the loss kernels
// (cuda/loss_steps.cuh) must reproduce the core's loss drivers per patch, word their faults
// as the CPU does, and load float4 vectors only where that is exact. The .cuh files are read here
// by the host compiler (no __CUDACC__); the same file is also built by nvcc as host code when
// MWM_BUILD_CUDA is on (cuda/CMakeLists.txt).
#include <mwm/masking.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "../../cuda/loss_steps.cuh"
#include "../../cuda/map_steps.cuh"
#include "../../cuda/selection_steps.cuh"
#include "../../cuda/selection_steps_host.hpp"
#include "../../cuda/token_steps.cuh"
#include "catch.hpp"
#include "core_test_support.hpp"
#include "cuda_test_support.hpp"
#include "loss_test_support.hpp"

using namespace mwm_cuda_test;

TEST_CASE("cuda loss elements reproduce the loss drivers per patch", "[cuda][loss]") {
  rng_type rng(17);
  struct loss_case {
    mwm::patch_geometry geometry;
    bool patch_layout;
  };
  const loss_case cases[] = {{mwm::make_geometry_2d(3, 32, 48, 16, 16), false},
                             {mwm::make_geometry_2d(3, 32, 48, 16, 16), true},
                             {mwm::make_geometry_3d(1, 8, 12, 12, 4, 4, 4), false},
                             {mwm::make_geometry_3d(2, 4, 8, 8, 2, 4, 4), true}};
  const mwm::loss_reduction reductions[] = {mwm::loss_reduction::mean,
                                            mwm::loss_reduction::mean_eps, mwm::loss_reduction::sum,
                                            mwm::loss_reduction::none};
  for (const auto& lc : cases) {
    const auto& g = lc.geometry;
    const std::int64_t batch = 2;
    const std::int64_t n = g.grid.num_patches();
    const std::int64_t p = g.patch_vector_size();
    const std::int64_t pixels = g.channels * g.image_depth() * g.image_height() * g.image_width();
    const auto target = mixed_values(rng, batch * pixels);
    const auto pred = mixed_values(rng, batch * (lc.patch_layout ? n * p : pixels));
    const std::int64_t h_stride = g.image_width();
    const std::int64_t d_stride = g.image_height() * h_stride;
    const std::int64_t c_stride = g.image_depth() * d_stride;
    const auto target_strides =
        mwm::image_patch_strides(g, g.channels * c_stride, c_stride, d_stride, h_stride, 1);
    const auto pred_strides =
        lc.patch_layout ? mwm::vector_patch_strides(g, n * p, p, 1) : target_strides;
    std::vector<std::uint8_t> mask(static_cast<std::size_t>(batch * n));
    for (auto& m : mask) m = static_cast<std::uint8_t>(draw_int(rng, 0, 1));
    std::vector<float> weight(static_cast<std::size_t>(batch * n));
    for (auto& w : weight) w = static_cast<float>(draw_unit(rng));
    for (auto reduction : reductions) {
      for (bool norm : {false, true}) {
        for (auto error : {mwm::recon_error::mse, mwm::recon_error::l1}) {
          mwm::loss_options options;
          options.error = error;
          options.norm_target = norm;
          options.reduction = reduction;
          const auto in = mwm_test::loss_inputs_over(g, batch, pred.data(), pred_strides,
                                                     target.data(), target_strides, mask.data(),
                                                     norm ? weight.data() : nullptr, options);
          const std::int64_t count = batch * n;
          std::vector<float> expected(static_cast<std::size_t>(count));
          std::vector<float> scratch(static_cast<std::size_t>(mwm::band_scratch_size(g)));
          const std::int64_t bands = mwm::band_count(g, batch);
          REQUIRE(mwm::band_losses(in, 0, bands, expected.data(), scratch.data()) == -1);
          std::vector<float> actual(static_cast<std::size_t>(count));
          std::vector<float> coefficients(static_cast<std::size_t>(count));
          mwm::gpu::host_warp warp;
          for (std::int64_t i = 0; i < count; ++i) {
            const auto r = mwm::gpu::warp_patch_loss(in, i, warp);
            REQUIRE(r.target_finite);
            actual[static_cast<std::size_t>(i)] = r.loss;
            coefficients[static_cast<std::size_t>(i)] = r.coefficient;
          }
          const float coefficient_sum = mwm::steps::ordered_total(coefficients.data(), count);
          INFO("patch layout " << lc.patch_layout << ", norm " << norm << ", reduction "
                               << static_cast<int>(reduction));
          REQUIRE(actual == expected);
          // The kernels' groups of 8 threads with 4 lanes each, vector paths where they apply.
          mwm::gpu::host_quad_warp group;
          group.loads.pred = mwm::gpu::quad_vector_loads(in.pred, in.pred_strides, g);
          group.loads.target = mwm::gpu::quad_vector_loads(in.target, in.target_strides, g);
          for (std::int64_t i = 0; i < count; ++i) {
            const auto r = mwm::gpu::warp_patch_loss(in, i, group);
            REQUIRE(r.target_finite);
            REQUIRE(r.loss == expected[static_cast<std::size_t>(i)]);
          }
          CHECK(coefficient_sum == mwm::coefficient_total(in.mask, in.weight, count));

          const bool per_patch = reduction == mwm::loss_reduction::none;
          const auto upstream = mixed_values(rng, per_patch ? count : 1);
          const float denominator = mwm::steps::loss_denominator(
              reduction, mwm::coefficient_total(in.mask, in.weight, count));
          std::vector<float> grad_expected(pred.size(), 0.0f);
          std::vector<float> grad_actual(pred.size(), 4.0f);
          mwm::band_gradients(in, upstream.data(), denominator, grad_expected.data(), pred_strides,
                              0, bands, scratch.data());
          for (std::int64_t i = count - 1; i >= 0; --i)
            mwm::gpu::warp_patch_gradient(in, upstream.data(), denominator, grad_actual.data(),
                                          pred_strides, i, warp);
          REQUIRE(grad_actual == grad_expected);
          std::vector<float> grad_group(pred.size(), 5.0f);
          group.loads.grad = mwm::gpu::quad_vector_loads(grad_group.data(), pred_strides, g);
          for (std::int64_t i = 0; i < count; ++i)
            mwm::gpu::warp_patch_gradient(in, upstream.data(), denominator, grad_group.data(),
                                          pred_strides, i, group);
          REQUIRE(grad_group == grad_expected);
        }
      }
    }
  }
}

TEST_CASE("data_error_message words the loss faults as throw_loss_fault does", "[cuda][errors]") {
  // The loss kernels adopt the error slot with these codes; their messages must stay the CPU's.
  const auto g = mwm::make_geometry_2d(1, 8, 8, 4, 4);
  const std::int64_t batch = 2, n = g.grid.num_patches();
  std::vector<float> weight(static_cast<std::size_t>(batch * n), 1.0f);
  weight[6] = std::numeric_limits<float>::quiet_NaN();
  for (bool wide : {false, true}) {
    auto cpu = [&](mwm::loss_fault fault) {
      return message_of([&] {
        if (wide) {
          std::vector<double> w(weight.begin(), weight.end());
          mwm::loss_inputs<double, double, double> in;
          in.geometry = g;
          in.batch = batch;
          in.weight = w.data();
          mwm::detail::throw_loss_fault(in, fault, 6);
        } else {
          mwm::loss_inputs<float, float, float> in;
          in.geometry = g;
          in.batch = batch;
          in.weight = weight.data();
          mwm::detail::throw_loss_fault(in, fault, 6);
        }
      });
    };
    auto slot_message = [&](mwm::data_error e) {
      return message_of([&] { mwm::raise_data_error(e); });
    };
    REQUIRE(slot_message(mwm::steps::integer_data_error(mwm::data_error_code::loss_target, 6, n, 0,
                                                        0)) == cpu(mwm::loss_fault::target));
    REQUIRE(slot_message(mwm::steps::real_data_error(
                mwm::data_error_code::loss_weight, mwm::data_argument::scores, 6, n, weight[6])) ==
            cpu(mwm::loss_fault::weight));
    REQUIRE(slot_message(mwm::steps::integer_data_error(mwm::data_error_code::loss_pred, 6, n, 0,
                                                        0)) == cpu(mwm::loss_fault::pred));
    REQUIRE(slot_message(mwm::steps::integer_data_error(mwm::data_error_code::loss_overflow, 6, n,
                                                        0, wide ? 64 : 32)) ==
            cpu(mwm::loss_fault::overflow));
  }
}

TEST_CASE("quad_vector_loads: float4 only where every step's four elements are one aligned vector",
          "[cuda][loss]") {
  alignas(16) static float data[64];
  const auto g2 = mwm::make_geometry_2d(3, 32, 48, 16, 16);  // P = 768
  const std::int64_t n2 = g2.grid.num_patches(), p2 = g2.patch_vector_size();
  const auto dense = mwm::vector_patch_strides(g2, n2 * p2, p2, 1);
  REQUIRE(mwm::gpu::quad_vector_loads(data, dense, g2));
  REQUIRE_FALSE(mwm::gpu::quad_vector_loads(data + 1, dense, g2));  // not 16-byte aligned
  const double wide[4] = {0, 0, 0, 0};
  REQUIRE_FALSE(mwm::gpu::quad_vector_loads(wide, dense, g2));  // float only
  // An RGB image: four consecutive elements of a patch vector span the channel planes.
  const auto rgb = mwm::image_patch_strides(g2, 3 * 32 * 48, 32 * 48, 0, 48, 1);
  REQUIRE_FALSE(mwm::gpu::quad_vector_loads(data, rgb, g2));
  // One channel, rows of 4 pixels: contiguous fours; rows of 6 (W = 30): not.
  const auto g3 = mwm::make_geometry_3d(1, 8, 8, 8, 4, 4, 4);
  const auto volume = mwm::image_patch_strides(g3, 512, 512, 64, 8, 1);
  REQUIRE(mwm::gpu::quad_vector_loads(data, volume, g3));
  const auto g_odd = mwm::make_geometry_2d(1, 6, 30, 6, 6);
  REQUIRE_FALSE(mwm::gpu::quad_vector_loads(
      data, mwm::image_patch_strides(g_odd, 180, 180, 0, 30, 1), g_odd));
  // A row stride that is not a multiple of 4 (a padded or sliced image).
  REQUIRE_FALSE(
      mwm::gpu::quad_vector_loads(data, mwm::image_patch_strides(g3, 648, 648, 81, 9, 1), g3));
}

TEST_CASE("the reduced loss's overflow: one test and one message for finish_loss and the slot",
          "[cuda][errors][loss]") {
  // The finish kernel records reduced_loss_overflow_error where reduced_loss_overflows says so;
  // finish_loss raises the same error. Every patch loss finite, their sum not.
  const auto g = mwm::make_geometry_2d(1, 8, 8, 4, 4);
  const std::int64_t batch = 1, n = g.grid.num_patches();
  const std::vector<std::uint8_t> mask(static_cast<std::size_t>(n), 1);
  const std::vector<float> losses(static_cast<std::size_t>(n), 3e38f);
  mwm::loss_inputs<float, float, float> in;
  in.geometry = g;
  in.batch = batch;
  in.mask = mask.data();
  in.options.reduction = mwm::loss_reduction::sum;
  const std::string cpu = message_of([&] { (void)mwm::finish_loss(in, losses.data(), -1); });
  REQUIRE(cpu.rfind("mwm: the reduced loss overflows float32 (every patch's loss is finite", 0) ==
          0);
  mwm::data_error_slot slot;
  mwm::record_data_error(slot, mwm::steps::data_error_key(2, 0),
                         mwm::reduced_loss_overflow_error<float>());
  REQUIRE(message_of([&] { mwm::raise_if_data_error(slot); }) == cpu);
  REQUIRE(message_of([&] {
            mwm::raise_data_error(mwm::reduced_loss_overflow_error<double>());
          }).find("overflows float64") != std::string::npos);
  const float inf = std::numeric_limits<float>::infinity();
  REQUIRE(mwm::reduced_loss_overflows(mwm::loss_reduction::sum, 1.0f, inf));
  REQUIRE(mwm::reduced_loss_overflows(mwm::loss_reduction::mean, 2.0f, inf / inf));
  REQUIRE_FALSE(mwm::reduced_loss_overflows(mwm::loss_reduction::mean, 0.0f, inf / inf));
  REQUIRE_FALSE(mwm::reduced_loss_overflows(mwm::loss_reduction::mean_eps, 1.0f, 2.0f));
  // Under propagate the value comes back.
  in.options.nonfinite = mwm::nonfinite_policy::propagate;
  REQUIRE(mwm::finish_loss(in, losses.data(), -1) == inf);
}
