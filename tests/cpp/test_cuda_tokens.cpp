// The CUDA path's token ops on the CPU: the per-thread bodies of the token kernels
// (cuda/token_steps.cuh) must reproduce the core's token drivers bit for bit, gradients
// included, with the rows run in any order, and record the errors the CPU validators raise. The
// .cuh files are read here by the host compiler (no __CUDACC__); the same file is also built by
// nvcc as host code when MWM_BUILD_CUDA is on (cuda/CMakeLists.txt).
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

TEST_CASE("cuda token elements reproduce the token drivers, gradients bit for bit",
          "[cuda][tokens]") {
  rng_type rng(31);
  const std::int64_t batch = 3, num_tokens = 10, slots = 6, channels = 5;
  // Token rows with padding between them, to exercise the strides.
  const mwm::token_strides xs{num_tokens * (channels + 2), channels + 2, 1};
  const mwm::token_strides ks{slots * channels, channels, 1};
  const auto x = mixed_values(rng, batch * xs.batch);
  // Duplicates and padding in ids_keep: the gradient adds duplicates in slot order.
  const std::vector<std::int64_t> ids{3, 3, -1, 9, 0, 3, 1, 2, 4, 5, 6, 7, -1, -1, 8, 8, 8, 0};

  std::vector<float> expected(static_cast<std::size_t>(batch * ks.batch), 0.0f);
  mwm::gather_tokens(x.data(), xs, ids.data(), slots, channels, expected.data(), ks, 0, batch);
  for (int lanes : {1, 2, 32}) {
    std::vector<float> actual(expected.size(), 7.0f);
    for (std::int64_t row = 0; row < batch * slots; ++row)
      for (int lane = 0; lane < lanes; ++lane) {
        mwm::data_error bad;
        REQUIRE(mwm::gpu::gather_row_part<1>(x.data(), xs, ids.data(), slots, num_tokens, channels,
                                             actual.data(), ks, row, lane, lanes, &bad));
      }
    INFO(lanes << " lanes");
    REQUIRE(actual == expected);
  }

  const auto grad = mixed_values(rng, batch * ks.batch);
  std::vector<float> grad_expected(static_cast<std::size_t>(batch * xs.batch), 0.0f);
  std::vector<float> grad_actual(grad_expected.size(), 0.0f);
  mwm::gather_tokens_backward<float>(grad.data(), ks, ids.data(), slots, num_tokens, channels,
                                     grad_expected.data(), xs, 0, batch);
  const auto runs = runs_of(ids, batch, slots, num_tokens + 1);
  for (std::int64_t e = 0; e < batch * num_tokens * channels; ++e)
    mwm::gpu::sum_sources_element<float>(grad.data(), ks, runs.sources.data(), runs.starts.data(),
                                         slots, num_tokens, channels, grad_actual.data(), xs, e);
  REQUIRE(grad_actual == grad_expected);

  // Restore: a permutation per sample, visible counts below K for samples 1 and 2.
  std::vector<std::int64_t> ids_restore;
  for (std::int64_t b = 0; b < batch; ++b) {
    std::vector<std::int64_t> perm(static_cast<std::size_t>(num_tokens));
    std::iota(perm.begin(), perm.end(), std::int64_t(0));
    std::shuffle(perm.begin(), perm.end(), rng);
    ids_restore.insert(ids_restore.end(), perm.begin(), perm.end());
  }
  const std::vector<std::int64_t> visible{slots, 2, 0};
  const auto x_vis = mixed_values(rng, batch * ks.batch);
  const auto mask_token = mixed_values(rng, channels * 2);  // element stride 2
  const mwm::token_strides os{num_tokens * channels, channels, 1};
  for (const std::int64_t* counts : {static_cast<const std::int64_t*>(nullptr), visible.data()}) {
    std::vector<float> restored(static_cast<std::size_t>(batch * os.batch), 0.0f);
    std::vector<float> restored_actual(restored.size(), 9.0f);
    mwm::restore_tokens(x_vis.data(), ks, ids_restore.data(), counts, slots, num_tokens, channels,
                        mask_token.data(), 2, restored.data(), os, 0, batch);
    for (std::int64_t row = 0; row < batch * num_tokens; ++row)
      for (int lane = 0; lane < 3; ++lane) {
        mwm::data_error bad;
        REQUIRE(mwm::gpu::restore_row_part<1>(x_vis.data(), ks, ids_restore.data(), counts, slots,
                                              num_tokens, channels, mask_token.data(), 2,
                                              restored_actual.data(), os, row, lane, 3,
                                              &bad) == mwm::gpu::none_phase);
      }
    REQUIRE(restored_actual == restored);

    const auto grad_out = mixed_values(rng, batch * os.batch);
    std::vector<float> vis_expected(static_cast<std::size_t>(batch * ks.batch), 0.0f);
    std::vector<float> vis_actual(vis_expected.size(), 5.0f);
    std::vector<float> partials(static_cast<std::size_t>(batch * channels));
    std::vector<float> token_expected(static_cast<std::size_t>(channels));
    mwm::restore_tokens_backward<float>(grad_out.data(), os, ids_restore.data(), counts, slots,
                                        num_tokens, channels, vis_expected.data(), ks,
                                        partials.data(), 0, batch);
    mwm::steps::sum_mask_partials(partials.data(), batch, channels, token_expected.data());

    std::vector<std::int64_t> destinations(static_cast<std::size_t>(batch * num_tokens));
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t n = 0; n < num_tokens; ++n)
        destinations[b * num_tokens + n] =
            mwm::gpu::restore_destination(ids_restore.data(), counts, slots, num_tokens, b, n);
    const auto restore_runs = runs_of(destinations, batch, num_tokens, slots + 1);
    for (std::int64_t e = 0; e < batch * slots * channels; ++e)
      mwm::gpu::sum_sources_element<float>(grad_out.data(), os, restore_runs.sources.data(),
                                           restore_runs.starts.data(), num_tokens, slots, channels,
                                           vis_actual.data(), ks, e);
    std::vector<float> channel_major(static_cast<std::size_t>(batch * channels));
    for (std::int64_t e = 0; e < batch * channels; ++e)
      mwm::gpu::mask_partial_element(grad_out.data(), os, restore_runs.sources.data(),
                                     restore_runs.starts.data(), batch, slots, num_tokens, channels,
                                     channel_major.data(), e);
    std::vector<float> token_actual(static_cast<std::size_t>(channels), 3.0f);
    for (std::int64_t c = 0; c < channels; ++c)
      mwm::gpu::mask_gradient_element(channel_major.data(), batch, token_actual.data(), c);
    INFO("visible counts " << (counts ? "given" : "K"));
    REQUIRE(vis_actual == vis_expected);
    REQUIRE(token_actual == token_expected);
  }
}

TEST_CASE("cuda token rows copy vectors where the rows are dense and aligned", "[cuda][tokens]") {
  rng_type rng(5);
  const std::int64_t batch = 2, num_tokens = 7, slots = 4, channels = 8;
  const mwm::token_strides xs{num_tokens * channels, channels, 1};
  const mwm::token_strides ks{slots * channels, channels, 1};
  const std::vector<std::int64_t> ids{6, 0, -1, 6, 3, 3, 2, 1};
  SECTION("float, 4 per vector") {
    const auto x = mixed_values(rng, batch * xs.batch);
    std::vector<float> expected(static_cast<std::size_t>(batch * ks.batch));
    mwm::gather_tokens(x.data(), xs, ids.data(), slots, channels, expected.data(), ks, 0, batch);
    std::vector<float> actual(expected.size(), 3.0f);
    for (std::int64_t row = 0; row < batch * slots; ++row)
      for (int lane = 0; lane < 32; ++lane) {
        mwm::data_error bad;
        mwm::gpu::gather_row_part<4>(x.data(), xs, ids.data(), slots, num_tokens, channels,
                                     actual.data(), ks, row, lane, 32, &bad);
      }
    REQUIRE(actual == expected);
  }
  SECTION("double, 2 per vector, restore with the mask token") {
    std::vector<double> x_vis(static_cast<std::size_t>(batch * ks.batch));
    for (auto& v : x_vis) v = draw_unit(rng);
    std::vector<double> mask_token(static_cast<std::size_t>(channels));
    for (auto& v : mask_token) v = -draw_unit(rng);
    const std::vector<std::int64_t> ids_restore{0, 6, 1, 5, 2, 4, 3, 3, 2, 1, 0, 6, 5, 4};
    const std::vector<std::int64_t> visible{3, 4};
    std::vector<double> expected(static_cast<std::size_t>(batch * xs.batch));
    mwm::restore_tokens(x_vis.data(), ks, ids_restore.data(), visible.data(), slots, num_tokens,
                        channels, mask_token.data(), 1, expected.data(), xs, 0, batch);
    std::vector<double> actual(expected.size(), 2.0);
    for (std::int64_t row = 0; row < batch * num_tokens; ++row)
      for (int lane = 0; lane < 3; ++lane) {
        mwm::data_error bad;
        mwm::gpu::restore_row_part<2>(x_vis.data(), ks, ids_restore.data(), visible.data(), slots,
                                      num_tokens, channels, mask_token.data(), 1, actual.data(), xs,
                                      row, lane, 3, &bad);
      }
    REQUIRE(actual == expected);
  }
}

TEST_CASE("cuda token rows record the error the CPU validators raise, in any order",
          "[cuda][tokens][errors]") {
  rng_type rng(77);
  const std::int64_t batch = 3, num_tokens = 6, slots = 4, channels = 5;
  const mwm::token_strides xs{num_tokens * channels, channels, 1};
  const mwm::token_strides ks{slots * channels, channels, 1};
  const auto x = mixed_values(rng, batch * xs.batch);
  // Ids far outside x: a row that read through one would fault (or trip ASan).
  std::vector<std::int64_t> ids{0, 1, 2, 3, 5, std::int64_t(1) << 40, -2, 4, 9, 0, -1, 2};
  const std::string cpu =
      message_of([&] { mwm::validate_keep_ids(ids.data(), batch, slots, num_tokens); });
  REQUIRE(cpu.find("ids_keep = 1099511627776") != std::string::npos);
  for (int trial = 0; trial < 5; ++trial) {
    mwm::data_error_slot first;
    std::vector<float> out(static_cast<std::size_t>(batch * ks.batch), 8.0f);
    for (std::int64_t row : scrambled_rows(rng, batch * slots))
      for (int lane = 0; lane < 2; ++lane) {
        mwm::data_error bad;
        if (!mwm::gpu::gather_row_part<1>(x.data(), xs, ids.data(), slots, num_tokens, channels,
                                          out.data(), ks, row, lane, 2, &bad) &&
            lane == 0)
          mwm::record_data_error(first, mwm::steps::data_error_key(0, row), bad);
      }
    REQUIRE(mwm::steps::has_data_error(first));
    REQUIRE(message_of([&] { mwm::raise_if_data_error(first); }) == cpu);
    for (std::int64_t c = 0; c < channels; ++c) {  // row (1, 1) holds the bad id: zeros
      REQUIRE(out[ks.batch + ks.token + c] == 0.0f);
      REQUIRE(out[ks.batch + 2 * ks.token + c] == 0.0f);
    }
  }

  // ids_restore errors come before num_visible errors, as the CPU validator scans them.
  std::vector<std::int64_t> ids_restore(static_cast<std::size_t>(batch * num_tokens), 0);
  for (std::int64_t i = 0; i < batch * num_tokens; ++i) ids_restore[i] = i % num_tokens;
  std::vector<std::int64_t> visible{2, slots + 3, -1};
  const auto x_vis = mixed_values(rng, batch * ks.batch);
  const auto mask_token = mixed_values(rng, channels);
  auto restore_message = [&] {
    mwm::data_error_slot first;
    std::vector<float> out(static_cast<std::size_t>(batch * xs.batch), 8.0f);
    for (std::int64_t row : scrambled_rows(rng, batch * num_tokens)) {
      mwm::data_error bad;
      const int phase = mwm::gpu::restore_row_part<1>(
          x_vis.data(), ks, ids_restore.data(), visible.data(), slots, num_tokens, channels,
          mask_token.data(), 1, out.data(), xs, row, 0, 1, &bad);
      if (phase != mwm::gpu::none_phase)
        mwm::record_data_error(first, mwm::gpu::restore_error_key(phase, row, row / num_tokens),
                               bad);
    }
    return message_of([&] { mwm::raise_if_data_error(first); });
  };
  auto cpu_restore = [&] {
    return message_of([&] {
      mwm::validate_restore_ids(ids_restore.data(), visible.data(), batch, num_tokens, slots);
    });
  };
  REQUIRE(cpu_restore().find("num_visible = 7") != std::string::npos);
  REQUIRE(restore_message() == cpu_restore());
  ids_restore[2 * num_tokens + 4] = -(std::int64_t(1) << 50);
  ids_restore[2 * num_tokens + 1] = num_tokens;
  REQUIRE(cpu_restore().find("ids_restore = 6") != std::string::npos);
  REQUIRE(restore_message() == cpu_restore());
}
