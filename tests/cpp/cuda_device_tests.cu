// The CUDA launchers against the CPU drivers, on a GPU: masks of every policy on every path
// (both block tiers, segmented sorts over one and two chunks, the sample_index path), patch
// maps, the loss and the tokens must give the CPU's results (bit for bit; the reduced loss to
// rounding), and bad data must raise the CPU's message through the device error slot without
// killing the context. Built with -DMWM_BUILD_CUDA=ON
// (cuda/CMakeLists.txt); without a CUDA device it says so and exits 77, which ctest reports as
// skipped.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <mwm/masking.hpp>

#include "mwm_cuda.hpp"

namespace {

int passed = 0;
int failed = 0;
// MWM_DEVICE_TESTS_QUICK=1 (compute-sanitizer runs, 10-100x slower): one grid per path, the
// two-chunk batch cut to one chunk, three policies.
const bool quick = std::getenv("MWM_DEVICE_TESTS_QUICK") != nullptr;

void check(bool ok, const std::string& what) {
  if (ok) {
    ++passed;
  } else {
    ++failed;
    std::printf("FAILED: %s\n", what.c_str());
  }
}

void cuda_ok(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    std::printf("CUDA error in %s: %s\n", what, cudaGetErrorString(status));
    std::exit(1);
  }
}

// A device copy of a host vector, freed with the object.
template <typename T>
struct device_vector {
  T* data = nullptr;
  std::size_t size = 0;
  explicit device_vector(std::size_t n) : size(n) {
    cuda_ok(cudaMalloc(&data, (n > 0 ? n : 1) * sizeof(T)), "cudaMalloc");
  }
  explicit device_vector(const std::vector<T>& host) : device_vector(host.size()) {
    cuda_ok(cudaMemcpy(data, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice),
            "cudaMemcpy to device");
  }
  ~device_vector() { cudaFree(data); }
  device_vector(const device_vector&) = delete;
  device_vector& operator=(const device_vector&) = delete;
  std::vector<T> host() const {
    std::vector<T> out(size);
    cuda_ok(cudaMemcpy(out.data(), data, size * sizeof(T), cudaMemcpyDeviceToHost),
            "cudaMemcpy to host");
    return out;
  }
};

void test_masks(std::mt19937_64& rng) {
  using mwm::policy_kind;
  const policy_kind kinds[] = {policy_kind::random,      policy_kind::per_region,
                               policy_kind::fixed_total, policy_kind::weighted,
                               policy_kind::block,       policy_kind::coarse,
                               policy_kind::loss_guided, policy_kind::attention_guided};
  // 196, 48 and 512 patches take the 128x4 block tier, 1024 and 2048 the 256x8 tier, 4096 the
  // segmented sorts (batch 300 at 4096 patches: two chunks of at most 256 samples).
  const mwm::grid_shape grids[] = {mwm::make_grid_2d(14, 14),    mwm::make_grid_2d(8, 6),
                                   mwm::make_grid_3d(8, 8, 8),   mwm::make_grid_2d(32, 32),
                                   mwm::make_grid_2d(32, 64),    mwm::make_grid_2d(64, 64),
                                   mwm::make_grid_3d(16, 16, 16)};
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  for (const auto& grid : grids) {
    const std::int64_t n = grid.num_patches();
    const bool two_chunks = n == 4096 && grid.ndim == 2;
    if (quick && (n == 48 || n == 512 || n == 2048 || grid.ndim == 3)) continue;
    const std::int64_t batch = two_chunks && !quick ? 300 : (n > 1000 ? 3 : 33);
    for (auto kind : kinds) {
      if (quick && kind != policy_kind::per_region && kind != policy_kind::weighted &&
          kind != policy_kind::block)
        continue;
      for (auto order : {mwm::visible_order::random, mwm::visible_order::sorted}) {
        mwm::mask_request request;
        request.grid = grid;
        request.batch = batch;
        request.policy.kind = kind;
        request.policy.order = order;
        request.policy.region_ratios = {0.4, 0.8, 0.6};
        request.policy.attention = order == mwm::visible_order::sorted ? mwm::attention_mode::hint
                                                                       : mwm::attention_mode::low;
        request.seed = rng();
        request.offset = rng() % 1000;
        // The sample_index path on every other request: arbitrary global indices per sample.
        std::vector<std::int64_t> sample_index(static_cast<std::size_t>(batch));
        for (auto& index : sample_index) index = static_cast<std::int64_t>(rng() % (1u << 30));
        const bool indexed = order == mwm::visible_order::sorted;
        if (indexed) request.sample_index = sample_index.data();
        std::vector<std::int32_t> regions(static_cast<std::size_t>(batch * n));
        std::vector<float> scores(regions.size());
        for (std::size_t i = 0; i < regions.size(); ++i) {
          regions[i] = static_cast<std::int32_t>(rng() % 3);
          scores[i] = std::floor(unit(rng) * 8.0f) / 8.0f;  // ties
        }
        request.regions = regions.data();
        request.scores = scores.data();
        const auto expected = mwm::generate_masks(request);

        device_vector<std::int32_t> d_regions(regions);
        device_vector<float> d_scores(scores);
        device_vector<std::int64_t> d_sample_index(sample_index);
        device_vector<std::uint8_t> mask(expected.mask.size());
        device_vector<std::int64_t> num_masked(expected.num_masked.size());
        device_vector<std::int64_t> shuffle(expected.ids_shuffle.size());
        device_vector<std::int64_t> restore(expected.ids_restore.size());
        device_vector<std::int64_t> keep(expected.ids_keep.size());
        device_vector<std::int64_t> masked(expected.ids_masked.size());
        device_vector<float> noise(expected.noise.size());
        mwm::mask_request on_device = request;
        on_device.regions = d_regions.data;
        on_device.scores = d_scores.data;
        if (indexed) on_device.sample_index = d_sample_index.data;
        mwm::batch_outputs out;
        out.mask = mask.data;
        out.num_masked = num_masked.data;
        out.ids_shuffle = shuffle.data;
        out.ids_restore = restore.data;
        out.ids_keep = keep.data;
        out.ids_masked = masked.data;
        out.noise = noise.data;
        const std::size_t bytes = mwm::gpu::mask_workspace_bytes(on_device);
        device_vector<char> workspace(bytes);
        mwm::gpu::generate_masks_async(on_device, out, workspace.data, bytes, nullptr);
        cuda_ok(cudaDeviceSynchronize(), "generate_masks_async");
        const std::string what =
            std::string(mwm::policy_name(kind)) + " on " + std::to_string(n) + " patches";
        check(mask.host() == expected.mask, "mask, " + what);
        check(num_masked.host() == expected.num_masked, "num_masked, " + what);
        check(shuffle.host() == expected.ids_shuffle, "ids_shuffle, " + what);
        check(restore.host() == expected.ids_restore, "ids_restore, " + what);
        check(keep.host() == expected.ids_keep, "ids_keep, " + what);
        check(masked.host() == expected.ids_masked, "ids_masked, " + what);
        check(noise.host() == expected.noise, "noise, " + what);
      }
    }
  }
}

void test_maps(std::mt19937_64& rng) {
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  mwm::pooling_request request;
  request.grid = mwm::make_grid_2d(14, 14);
  request.batch = 4;
  request.prompts = 3;
  request.shape = {1, 100, 90};
  request.combine = mwm::prompt_combine::weighted_sum;
  request.prompt_weights = {0.5f, 0.25f, 1.5f};
  request.threads = 1;
  std::vector<float> heat(static_cast<std::size_t>(4 * 3 * 100 * 90));
  for (auto& v : heat) v = unit(rng);
  for (auto reduction : {mwm::pool_reduction::mean, mwm::pool_reduction::max,
                         mwm::pool_reduction::fraction, mwm::pool_reduction::nearest}) {
    request.options.reduction = reduction;
    std::vector<float> expected(static_cast<std::size_t>(4 * 196));
    mwm::heatmaps_to_scores(request, heat.data(), expected.data());
    device_vector<float> d_heat(heat), d_weights(request.prompt_weights), scores(expected.size());
    const std::size_t bytes = mwm::gpu::patch_scores_workspace_bytes(request);
    device_vector<char> workspace(bytes);
    mwm::gpu::prompt_weight_values weights;
    weights.device = d_weights.data;
    mwm::gpu::patch_scores_async(request, d_heat.data, weights, scores.data, workspace.data, bytes,
                                 nullptr);
    cuda_ok(cudaDeviceSynchronize(), "patch_scores_async");
    check(scores.host() == expected, "patch_scores");
  }
  // The 128x4 and 256x8 block tiers, then the segmented sort.
  for (std::int64_t n : {196, 1500, 5000}) {
    const std::int64_t batch = 3;
    std::vector<float> scores(static_cast<std::size_t>(batch * n));
    for (auto& v : scores) v = std::floor(unit(rng) * 16.0f) / 16.0f;
    const std::vector<double> shares{0.5, 0.2};
    std::vector<std::int32_t> expected(scores.size());
    mwm::regions_by_quantiles(scores.data(), batch, n, shares, expected.data());
    std::vector<std::int64_t> counts{mwm::steps::quantile_count(n, 0.5),
                                     mwm::steps::quantile_count(n, 0.2)};
    device_vector<float> d_scores(scores);
    mwm::gpu::host_values<std::int64_t> by_value;
    by_value.count = 2;
    std::copy(counts.begin(), counts.end(), by_value.values);
    device_vector<std::int32_t> regions(expected.size());
    const std::size_t bytes = mwm::gpu::quantile_workspace_bytes(batch, n);
    device_vector<char> workspace(bytes);
    mwm::gpu::regions_from_quantiles_async(d_scores.data, batch, n, by_value,
                                           mwm::nan_policy::error, regions.data, workspace.data,
                                           bytes, nullptr);
    cuda_ok(cudaDeviceSynchronize(), "regions_from_quantiles_async");
    check(regions.host() == expected, "regions_from_quantiles, n = " + std::to_string(n));
  }
  // Thresholds and upsampling.
  {
    const std::int64_t batch = 2, n = 196;
    std::vector<float> scores(static_cast<std::size_t>(batch * n));
    for (auto& v : scores) v = unit(rng);
    const std::vector<float> thresholds{0.25f, 0.5f, 0.9f};
    std::vector<std::int32_t> expected(scores.size());
    mwm::regions_by_thresholds(scores.data(), batch, n, thresholds, expected.data());
    device_vector<float> d_scores(scores);
    mwm::gpu::host_values<float> cuts;
    cuts.count = 3;
    std::copy(thresholds.begin(), thresholds.end(), cuts.values);
    device_vector<std::int32_t> regions(expected.size());
    mwm::gpu::regions_from_thresholds_async(d_scores.data, batch, n, cuts, mwm::nan_policy::error,
                                            regions.data, nullptr);
    cuda_ok(cudaDeviceSynchronize(), "regions_from_thresholds_async");
    check(regions.host() == expected, "regions_from_thresholds");
  }
}

// Restore in the element path (strided mask token) and the vector path (fp16 rows of 64).
void test_restore(std::mt19937_64& rng) {
  const std::int64_t batch = 4, tokens = 16, slots = 6;
  for (std::int64_t channels : {7, 64}) {
    const mwm::token_strides vs{slots * channels, channels, 1};
    const mwm::token_strides os{tokens * channels, channels, 1};
    std::vector<float> x_vis(static_cast<std::size_t>(batch * slots * channels));
    for (auto& v : x_vis) v = static_cast<float>(rng() % 1000) / 8.0f;
    std::vector<float> mask_token(static_cast<std::size_t>(channels));
    for (auto& v : mask_token) v = -1.0f - static_cast<float>(rng() % 100);
    std::vector<std::int64_t> ids_restore(static_cast<std::size_t>(batch * tokens));
    for (std::int64_t b = 0; b < batch; ++b) {
      for (std::int64_t t = 0; t < tokens; ++t) ids_restore[b * tokens + t] = t;
      std::shuffle(ids_restore.begin() + b * tokens, ids_restore.begin() + (b + 1) * tokens, rng);
    }
    const std::vector<std::int64_t> visible{6, 0, 3, 6};
    std::vector<float> expected(static_cast<std::size_t>(batch * tokens * channels));
    mwm::restore_tokens(x_vis.data(), vs, ids_restore.data(), visible.data(), slots, tokens,
                        channels, mask_token.data(), 1, expected.data(), os, 0, batch);
    device_vector<float> d_vis(x_vis), d_token(mask_token), out(expected.size());
    device_vector<std::int64_t> d_ids(ids_restore), d_visible(visible);
    mwm::gpu::restore_tokens_async(mwm::gpu::float_type::float32, d_vis.data, vs, d_ids.data,
                                   d_visible.data, batch, slots, tokens, channels, d_token.data, 1,
                                   out.data, os, nullptr);
    cuda_ok(cudaDeviceSynchronize(), "restore_tokens_async");
    check(out.host() == expected, "restore_tokens, C = " + std::to_string(channels));
  }
}

// Bad data never kills the context: the launcher returns, check_device_errors raises the CPU
// path's message, and the next launch works.
template <typename Body>
std::string device_error_message(Body launch) {
  try {
    launch();
    mwm::gpu::check_device_errors(nullptr);
  } catch (const mwm::error& e) {
    return e.what();
  }
  return "no error";
}

template <typename Body>
std::string host_error_message(Body body) {
  try {
    body();
  } catch (const mwm::error& e) {
    return e.what();
  }
  return "no error";
}

void test_data_errors(std::mt19937_64& rng) {
  const std::int64_t batch = 3, tokens = 9, slots = 4, channels = 8;
  const mwm::token_strides xs{tokens * channels, channels, 1}, ks{slots * channels, channels, 1};
  std::vector<float> x(static_cast<std::size_t>(batch * tokens * channels), 1.0f);
  std::vector<std::int64_t> ids{0, 1, 2, 3, 4, std::int64_t(1) << 40, 7, -5, 8, 8, 8, 99};
  device_vector<float> d_x(x), d_out(static_cast<std::size_t>(batch * slots * channels));
  device_vector<std::int64_t> d_ids(ids);
  const std::string cpu_keep =
      host_error_message([&] { mwm::validate_keep_ids(ids.data(), batch, slots, tokens); });
  check(device_error_message([&] {
          mwm::gpu::gather_tokens_async(mwm::gpu::float_type::float32, d_x.data, xs, d_ids.data,
                                        batch, slots, tokens, channels, d_out.data, ks, nullptr);
        }) == cpu_keep,
        "gather_tokens with bad ids raises " + cpu_keep);
  const std::size_t bytes = mwm::gpu::gather_tokens_backward_workspace_bytes(batch, slots, tokens);
  device_vector<char> workspace(bytes);
  device_vector<float> d_grad_x(x.size());
  check(device_error_message([&] {
          mwm::gpu::gather_tokens_backward_async(mwm::gpu::float_type::float32, d_out.data, ks,
                                                 d_ids.data, batch, slots, tokens, channels,
                                                 d_grad_x.data, xs, workspace.data, bytes, nullptr);
        }) == cpu_keep,
        "gather_tokens_backward with bad ids");

  // Restore: a bad visible count, then a bad id, which the CPU names first.
  std::vector<std::int64_t> ids_restore(static_cast<std::size_t>(batch * tokens));
  for (std::size_t i = 0; i < ids_restore.size(); ++i) ids_restore[i] = i % tokens;
  std::vector<std::int64_t> visible{4, 9, 2};
  device_vector<float> d_vis(std::vector<float>(static_cast<std::size_t>(batch * ks.batch), 2.0f));
  device_vector<float> d_token(std::vector<float>(static_cast<std::size_t>(channels), 3.0f));
  device_vector<float> d_restored(x.size());
  for (int round = 0; round < 2; ++round) {
    if (round == 1) ids_restore[tokens + 3] = -(std::int64_t(1) << 45);
    device_vector<std::int64_t> d_restore(ids_restore), d_visible(visible);
    const std::string cpu = host_error_message([&] {
      mwm::validate_restore_ids(ids_restore.data(), visible.data(), batch, tokens, slots);
    });
    check(device_error_message([&] {
            mwm::gpu::restore_tokens_async(mwm::gpu::float_type::float32, d_vis.data, ks,
                                           d_restore.data, d_visible.data, batch, slots, tokens,
                                           channels, d_token.data, 1, d_restored.data, xs, nullptr);
          }) == cpu,
          "restore_tokens raises " + cpu);
  }

  // NaN heatmaps and scores, a bad region: each raises the CPU message.
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  mwm::pooling_request pooling;
  pooling.grid = mwm::make_grid_2d(4, 4);
  pooling.batch = 2;
  pooling.shape = {1, 8, 8};
  std::vector<float> heat(static_cast<std::size_t>(2 * 64));
  for (auto& v : heat) v = unit(rng);
  heat[100] = -std::numeric_limits<float>::infinity();
  heat[77] = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> pooled(32);
  const std::string cpu_heat =
      host_error_message([&] { mwm::heatmaps_to_scores(pooling, heat.data(), pooled.data()); });
  device_vector<float> d_heat(heat), d_pooled(pooled.size());
  check(device_error_message([&] {
          mwm::gpu::patch_scores_async(pooling, d_heat.data, mwm::gpu::prompt_weight_values{},
                                       d_pooled.data, nullptr, 0, nullptr);
        }) == cpu_heat,
        "patch_scores raises " + cpu_heat);

  for (std::int64_t n : {196, 1500, 5000}) {
    std::vector<float> scores(static_cast<std::size_t>(2 * n));
    for (auto& v : scores) v = unit(rng);
    scores[n + 17] = std::numeric_limits<float>::quiet_NaN();
    scores[n + 3] = std::numeric_limits<float>::infinity();
    std::vector<std::int32_t> regions(scores.size());
    const std::string cpu = host_error_message(
        [&] { mwm::regions_by_quantiles(scores.data(), 2, n, {0.5}, regions.data()); });
    const std::vector<std::int64_t> counts{mwm::steps::quantile_count(n, 0.5)};
    device_vector<float> d_scores(scores);
    mwm::gpu::host_values<std::int64_t> by_value;
    by_value.count = 1;
    by_value.values[0] = counts[0];
    device_vector<std::int32_t> d_regions(regions.size());
    const std::size_t qbytes = mwm::gpu::quantile_workspace_bytes(2, n);
    device_vector<char> qworkspace(qbytes);
    check(device_error_message([&] {
            mwm::gpu::regions_from_quantiles_async(d_scores.data, 2, n, by_value,
                                                   mwm::nan_policy::error, d_regions.data,
                                                   qworkspace.data, qbytes, nullptr);
          }) == cpu,
          "regions_from_quantiles raises " + cpu + ", n = " + std::to_string(n));
  }

  for (const auto& grid :
       {mwm::make_grid_2d(14, 14), mwm::make_grid_2d(32, 32), mwm::make_grid_2d(64, 64)}) {
    const std::int64_t n = grid.num_patches();
    mwm::mask_request request;
    request.grid = grid;
    request.batch = 2;
    request.policy.kind = mwm::policy_kind::per_region;
    request.policy.region_ratios = {0.5, 0.75};
    std::vector<std::int32_t> regions(static_cast<std::size_t>(2 * n), 1);
    regions[n + 5] = 7;
    request.regions = regions.data();
    const std::string cpu = host_error_message([&] { mwm::generate_masks(request); });
    device_vector<std::int32_t> d_regions(regions);
    device_vector<std::uint8_t> mask(static_cast<std::size_t>(2 * n));
    mwm::mask_request on_device = request;
    on_device.regions = d_regions.data;
    mwm::batch_outputs out;
    out.mask = mask.data;
    const std::size_t mbytes = mwm::gpu::mask_workspace_bytes(on_device);
    device_vector<char> mworkspace(mbytes);
    check(device_error_message([&] {
            mwm::gpu::generate_masks_async(on_device, out, mworkspace.data, mbytes, nullptr);
          }) == cpu,
          "generate_masks raises " + cpu + ", n = " + std::to_string(n));
  }

  // Deferred: a later launch raises once the failing call's copy has reached the host.
  mwm::gpu::gather_tokens_async(mwm::gpu::float_type::float32, d_x.data, xs, d_ids.data, batch,
                                slots, tokens, channels, d_out.data, ks, nullptr);
  cuda_ok(cudaDeviceSynchronize(), "gather_tokens_async (bad ids)");
  check(host_error_message([&] {
          mwm::gpu::gather_tokens_async(mwm::gpu::float_type::float32, d_x.data, xs, d_ids.data,
                                        batch, slots, tokens, channels, d_out.data, ks, nullptr);
        }) == cpu_keep,
        "the next launch raises the recorded error");
  check(host_error_message([] { mwm::gpu::check_device_errors(nullptr); }) == "no error",
        "raising cleared the slot");
  // Sync errors: the failing launcher itself raises.
  mwm::gpu::set_sync_errors(true);
  check(host_error_message([&] {
          mwm::gpu::gather_tokens_async(mwm::gpu::float_type::float32, d_x.data, xs, d_ids.data,
                                        batch, slots, tokens, channels, d_out.data, ks, nullptr);
        }) == cpu_keep,
        "set_sync_errors(true) raises in the failing launcher");
  mwm::gpu::set_sync_errors(false);
  // The context is alive: a good launch gives the CPU's result.
  std::vector<std::int64_t> good{0, 1, 2, 3, 4, 5, 6, -1, 8, 8, 8, 0};
  device_vector<std::int64_t> d_good(good);
  std::vector<float> expected(static_cast<std::size_t>(batch * slots * channels));
  mwm::gather_tokens(x.data(), xs, good.data(), slots, channels, expected.data(), ks, 0, batch);
  mwm::gpu::gather_tokens_async(mwm::gpu::float_type::float32, d_x.data, xs, d_good.data, batch,
                                slots, tokens, channels, d_out.data, ks, nullptr);
  cuda_ok(cudaDeviceSynchronize(), "gather_tokens_async after the errors");
  check(d_out.host() == expected, "gather_tokens after the errors");
}

void test_loss_and_tokens(std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const auto g = mwm::make_geometry_2d(3, 64, 48, 16, 16);
  const std::int64_t batch = 5, n = g.grid.num_patches(), p = g.patch_vector_size();
  std::vector<float> target(static_cast<std::size_t>(batch * 3 * 64 * 48));
  std::vector<float> pred(static_cast<std::size_t>(batch * n * p));
  for (auto& v : target) v = normal(rng);
  for (auto& v : pred) v = normal(rng);
  std::vector<std::uint8_t> mask(static_cast<std::size_t>(batch * n));
  for (auto& m : mask) m = static_cast<std::uint8_t>(rng() % 4 != 0);
  mwm::loss_inputs<float, float, float> in;
  in.geometry = g;
  in.batch = batch;
  in.pred = pred.data();
  in.pred_strides = mwm::vector_patch_strides(g, n * p, p, 1);
  in.target = target.data();
  in.target_strides = mwm::image_patch_strides(g, 3 * 64 * 48, 64 * 48, 0, 48, 1);
  in.mask = mask.data();
  in.options.norm_target = true;
  std::vector<float> losses(static_cast<std::size_t>(batch * n));
  std::vector<float> scratch(static_cast<std::size_t>(mwm::band_scratch_size(g)));
  const std::int64_t bands = mwm::band_count(g, batch);
  mwm::band_losses(in, 0, bands, losses.data(), scratch.data());
  const float total = mwm::coefficient_total(in.mask, in.weight, batch * n);
  const float expected =
      mwm::reduce_patch_losses(losses.data(), batch * n, in.options.reduction, total);
  device_vector<float> d_pred(pred), d_target(target), loss(1);
  device_vector<std::uint8_t> d_mask(mask);
  mwm::gpu::loss_call_view view;
  view.geometry = g;
  view.batch = batch;
  view.pred = d_pred.data;
  view.pred_strides = in.pred_strides;
  view.target = d_target.data;
  view.target_strides = in.target_strides;
  view.mask = d_mask.data;
  view.options = in.options;
  const std::size_t bytes = mwm::gpu::loss_workspace_bytes(view);
  device_vector<char> workspace(bytes);
  mwm::gpu::masked_recon_loss_async(view, loss.data, workspace.data, bytes, nullptr);
  cuda_ok(cudaDeviceSynchronize(), "masked_recon_loss_async");
  const float actual = loss.host()[0];
  // Bit for bit: both sides add in the order of mwm/loss_order.hpp.
  check(actual == expected, "loss value");

  const std::vector<float> upstream{0.75f};
  std::vector<float> grad_expected(pred.size());
  mwm::band_gradients(in, upstream.data(), total, grad_expected.data(), in.pred_strides, 0, bands,
                      scratch.data());
  device_vector<float> d_upstream(upstream), grad(pred.size());
  mwm::gpu::masked_recon_loss_backward_async(view, d_upstream.data, grad.data, in.pred_strides,
                                             workspace.data, bytes, nullptr);
  cuda_ok(cudaDeviceSynchronize(), "masked_recon_loss_backward_async");
  check(grad.host() == grad_expected, "loss gradient");

  // Tokens: duplicates and padding in ids_keep.
  const std::int64_t tokens = 12, slots = 5, channels = 7;
  const mwm::token_strides xs{tokens * channels, channels, 1}, ks{slots * channels, channels, 1};
  std::vector<float> x(static_cast<std::size_t>(batch * tokens * channels));
  for (auto& v : x) v = normal(rng);
  std::vector<std::int64_t> ids(static_cast<std::size_t>(batch * slots));
  for (auto& id : ids) id = static_cast<std::int64_t>(rng() % (tokens + 1)) - 1;
  std::vector<float> gathered(static_cast<std::size_t>(batch * slots * channels));
  mwm::gather_tokens(x.data(), xs, ids.data(), slots, channels, gathered.data(), ks, 0, batch);
  device_vector<float> d_x(x), d_out(gathered.size());
  device_vector<std::int64_t> d_ids(ids);
  mwm::gpu::gather_tokens_async(mwm::gpu::float_type::float32, d_x.data, xs, d_ids.data, batch,
                                slots, tokens, channels, d_out.data, ks, nullptr);
  cuda_ok(cudaDeviceSynchronize(), "gather_tokens_async");
  check(d_out.host() == gathered, "gather_tokens");
  std::vector<float> grad_x(x.size());
  mwm::gather_tokens_backward<float>(gathered.data(), ks, ids.data(), slots, tokens, channels,
                                     grad_x.data(), xs, 0, batch);
  const std::size_t token_bytes =
      mwm::gpu::gather_tokens_backward_workspace_bytes(batch, slots, tokens);
  device_vector<char> token_workspace(token_bytes);
  device_vector<float> d_grad_x(x.size());
  mwm::gpu::gather_tokens_backward_async(mwm::gpu::float_type::float32, d_out.data, ks, d_ids.data,
                                         batch, slots, tokens, channels, d_grad_x.data, xs,
                                         token_workspace.data, token_bytes, nullptr);
  cuda_ok(cudaDeviceSynchronize(), "gather_tokens_backward_async");
  check(d_grad_x.host() == grad_x, "gather_tokens_backward");
}

}  // namespace

int main() {
  int devices = 0;
  const cudaError_t status = cudaGetDeviceCount(&devices);
  if (status != cudaSuccess || devices == 0) {
    std::printf("mwm_cuda_device_tests: skipped, no CUDA device (%s)\n",
                status != cudaSuccess ? cudaGetErrorString(status) : "0 devices");
    return 77;
  }
  std::mt19937_64 rng(20261124);
  test_masks(rng);
  test_maps(rng);
  test_loss_and_tokens(rng);
  test_restore(rng);
  test_data_errors(rng);
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
