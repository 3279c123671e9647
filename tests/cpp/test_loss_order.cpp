// The loss's reduction order (mwm/loss_order.hpp) as a contract: the CPU op against a plain
// float64 reference within tolerance; the host stand-in of the CUDA kernels (the warp bodies of
// cuda/loss_steps.cuh run lane after lane, the shuffle tree, the chunk blocks and the one-block
// levels, with the kernels' block / warp / grid-stride decomposition) bit-identical to the CPU
// op; and the CPU's bits independent of how the bands are split between threads. Also built by
// nvcc as host code (cuda/CMakeLists.txt), so both compilers' code is checked.
#include <mwm/loss.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "../../cuda/loss_steps.cuh"
#include "catch.hpp"
#include "loss_test_support.hpp"

namespace {

using order_rng = std::mt19937_64;

template <typename Acc>
std::vector<Acc> spread_values(order_rng& rng, std::int64_t count) {
  // Magnitudes over several decades and both signs: additions in another order round
  // differently, so a wrong order shows in the bits.
  std::uniform_real_distribution<double> unit(-1.0, 1.0);
  std::uniform_int_distribution<int> decade(-3, 3);
  std::vector<Acc> v(static_cast<std::size_t>(count));
  for (auto& x : v) x = static_cast<Acc>(unit(rng) * std::pow(10.0, decade(rng)));
  return v;
}

template <typename Acc>
bool same_bits(Acc a, Acc b) {
  return std::memcmp(&a, &b, sizeof(Acc)) == 0;
}

// The chunk kernel's blocks and the finish kernel's levels, on the host.
template <typename Acc>
Acc device_order_total(const std::vector<Acc>& values) {
  const std::int64_t count = static_cast<std::int64_t>(values.size());
  std::vector<Acc> chunks(static_cast<std::size_t>(mwm::gpu::chunk_count(count)) + 1);
  for (std::int64_t k = 0; k < mwm::gpu::chunk_count(count); ++k) {
    Acc a[mwm::loss_chunk];
    for (int t = 0; t < mwm::loss_chunk; ++t) {
      const std::int64_t i = mwm::gpu::chunk_member(k, t);
      a[t] = i < count ? values[static_cast<std::size_t>(i)] : Acc(0);
    }
    // The block's steps: every thread t < stride adds a[t + stride], stride halving.
    for (int stride = mwm::loss_chunk / 2; stride > 0; stride /= 2)
      for (int t = 0; t < stride; ++t) mwm::steps::halving_step(a, stride, t);
    chunks[static_cast<std::size_t>(k)] = a[0];
  }
  return mwm::gpu::host_finish_levels(chunks.data(), mwm::gpu::chunk_count(count));
}

TEST_CASE("the shuffle tree of a warp is the core's lane_total, bit for bit", "[loss][order]") {
  order_rng rng(11);
  for (int round = 0; round < 200; ++round) {
    auto f = spread_values<float>(rng, mwm::loss_lanes);
    auto d = spread_values<double>(rng, mwm::loss_lanes);
    const float shuffled_f = mwm::gpu::host_shuffle_tree(f.data());
    const double shuffled_d = mwm::gpu::host_shuffle_tree(d.data());
    REQUIRE(same_bits(shuffled_f, mwm::steps::lane_total(f.data())));
    REQUIRE(same_bits(shuffled_d, mwm::steps::lane_total(d.data())));
  }
}

TEST_CASE("the tree of a group of 8 threads with 4 lanes each is lane_total, bit for bit",
          "[loss][order]") {
  order_rng rng(12);
  for (int round = 0; round < 200; ++round) {
    auto f = spread_values<float>(rng, mwm::loss_lanes);
    auto d = spread_values<double>(rng, mwm::loss_lanes);
    // lane_total adds in place: the group's tree reads the values first.
    const float grouped_f = mwm::gpu::host_group_tree(f.data());
    const double grouped_d = mwm::gpu::host_group_tree(d.data());
    REQUIRE(same_bits(grouped_f, mwm::steps::lane_total(f.data())));
    REQUIRE(same_bits(grouped_d, mwm::steps::lane_total(d.data())));
  }
}

TEST_CASE(
    "ordered_total: float64 reference within tolerance, the kernels' chunks and levels "
    "bit for bit",
    "[loss][order]") {
  order_rng rng(12);
  for (std::int64_t count : {0, 1, 2, 31, 255, 256, 257, 1000, 12544, 65536, 65537, 70001}) {
    INFO("count " << count);
    const auto values = spread_values<float>(rng, count);
    double reference = 0.0, magnitude = 0.0;
    for (float v : values) {
      reference += static_cast<double>(v);
      magnitude += std::fabs(static_cast<double>(v));
    }
    const float total = mwm::steps::ordered_total(values.data(), count);
    // A tree of depth log2(count) + 8: its error bound is a few ulps of the magnitude.
    CHECK(std::fabs(static_cast<double>(total) - reference) <= 1e-6 * (magnitude + 1.0));
    REQUIRE(same_bits(total, device_order_total(values)));
    // A different order gives different bits for these values (the test can fail).
    if (count >= 1000) {
      float sequential = 0.0f;
      for (float v : values) sequential += v;
      CHECK(!same_bits(sequential, total));
    }
  }
}

struct order_case {
  mwm::patch_geometry geometry;
  bool patch_layout;  // pred as (B, N, P) patch vectors, else the image layout
  bool strided;       // the target a view with padded rows
};

// One batch of inputs, owned.
struct order_inputs {
  mwm::patch_geometry g;
  std::int64_t batch;
  std::vector<float> pred, target, weight;
  std::vector<std::uint8_t> mask;
  mwm::patch_strides pred_strides, target_strides, grad_strides;
  std::int64_t pred_size;

  mwm::loss_inputs<float, float, float> view(const mwm::loss_options& o, bool weighted) const {
    return mwm_test::loss_inputs_over(g, batch, pred.data(), pred_strides, target.data(),
                                      target_strides, mask.data(),
                                      weighted ? weight.data() : nullptr, o);
  }
};

order_inputs make_inputs(order_rng& rng, const order_case& oc, std::int64_t batch) {
  order_inputs x;
  x.g = oc.geometry;
  x.batch = batch;
  const auto& g = x.g;
  const std::int64_t n = g.grid.num_patches();
  const std::int64_t p = g.patch_vector_size();
  const std::int64_t w_stride = 1;
  const std::int64_t h_stride = g.image_width() + (oc.strided ? 3 : 0);
  const std::int64_t d_stride = g.image_height() * h_stride;
  const std::int64_t c_stride = g.image_depth() * d_stride;
  const std::int64_t b_stride = g.channels * c_stride;
  x.target = spread_values<float>(rng, batch * b_stride);
  // An offset and a small spread in some samples, as CT: the two-pass variance matters.
  for (std::size_t i = 0; i < x.target.size(); i += 2) x.target[i] += 100.0f;
  x.target_strides = mwm::image_patch_strides(g, b_stride, c_stride, d_stride, h_stride, w_stride);
  if (oc.patch_layout) {
    x.pred_size = batch * n * p;
    x.pred_strides = mwm::vector_patch_strides(g, n * p, p, 1);
  } else {
    const std::int64_t dense_c = g.image_depth() * g.image_height() * g.image_width();
    x.pred_size = batch * g.channels * dense_c;
    x.pred_strides = mwm::image_patch_strides(
        g, g.channels * dense_c, dense_c, g.image_height() * g.image_width(), g.image_width(), 1);
  }
  x.pred = spread_values<float>(rng, x.pred_size);
  x.grad_strides = x.pred_strides;
  x.mask.resize(static_cast<std::size_t>(batch * n));
  x.weight.resize(static_cast<std::size_t>(batch * n));
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  for (auto& m : x.mask) m = unit(rng) < 0.75 ? 1 : 0;
  for (auto& w : x.weight) w = static_cast<float>(unit(rng) * 3.0);
  return x;
}

// The CPU op: band_losses over the bands split at `cuts`, as threads would run them.
std::vector<float> cpu_patch_losses(const mwm::loss_inputs<float, float, float>& in,
                                    const std::vector<std::int64_t>& cuts) {
  const std::int64_t bands = mwm::band_count(in.geometry, in.batch);
  std::vector<float> losses(static_cast<std::size_t>(in.batch * in.geometry.grid.num_patches()));
  std::vector<float> scratch(static_cast<std::size_t>(mwm::band_scratch_size(in.geometry)));
  std::int64_t begin = 0;
  for (std::int64_t cut : cuts) {
    const std::int64_t end = cut < bands ? cut : bands;
    REQUIRE(mwm::band_losses(in, begin, end, losses.data(), scratch.data()) == -1);
    begin = end;
  }
  REQUIRE(mwm::band_losses(in, begin, bands, losses.data(), scratch.data()) == -1);
  return losses;
}

// The forward kernel's decomposition: `blocks` blocks of 8 warps, warp w of block b starting at
// patch b * 8 + w and striding by blocks * 8 (fewer blocks than patches / 8 exercise the
// grid-stride loop); per-patch losses, then the chunk blocks and the levels.
struct device_forward {
  std::vector<float> per_patch;
  float losses_total;
  float coefficients_total;
};

device_forward device_emulation(const mwm::loss_inputs<float, float, float>& in,
                                std::int64_t blocks) {
  const std::int64_t count = in.batch * in.geometry.grid.num_patches();
  device_forward out;
  out.per_patch.assign(static_cast<std::size_t>(count), -1.0f);
  std::vector<float> coefficients(static_cast<std::size_t>(count), -1.0f);
  mwm::gpu::host_quad_warp warp;
  warp.loads.pred = mwm::gpu::quad_vector_loads(in.pred, in.pred_strides, in.geometry);
  warp.loads.target = mwm::gpu::quad_vector_loads(in.target, in.target_strides, in.geometry);
  const std::int64_t step = blocks * mwm::gpu::loss_patches_per_block;
  for (std::int64_t b = 0; b < blocks; ++b)
    for (int w = 0; w < mwm::gpu::loss_patches_per_block; ++w)
      for (std::int64_t i = mwm::gpu::first_patch_of_group(b, w); i < count; i += step) {
        REQUIRE(out.per_patch[static_cast<std::size_t>(i)] == -1.0f);  // each patch once
        const auto r = mwm::gpu::warp_patch_loss(in, i, warp);
        REQUIRE(r.target_finite);
        out.per_patch[static_cast<std::size_t>(i)] = r.loss;
        coefficients[static_cast<std::size_t>(i)] = r.coefficient;
      }
  out.losses_total = device_order_total(out.per_patch);
  out.coefficients_total = device_order_total(coefficients);
  return out;
}

std::vector<order_case> order_cases() {
  return {
      {mwm::make_geometry_2d(3, 32, 48, 16, 16), true, false},      // MAE 2D, P = 768
      {mwm::make_geometry_2d(3, 32, 48, 16, 16), false, true},      // image layout, padded rows
      {mwm::make_geometry_3d(1, 16, 16, 32, 8, 8, 8), true, true},  // 3D, P = 512
      {mwm::make_geometry_2d(1, 15, 21, 3, 3), true, false},        // P = 9 < 32 lanes
      {mwm::make_geometry_3d(3, 4, 6, 6, 2, 3, 3), true, true},     // P = 54: a partial lane row
      {mwm::make_geometry_2d(5, 14, 14, 7, 7), false, false},       // P = 245, C = 5 > 1
  };
}

TEST_CASE(
    "loss: the kernels' host stand-in gives the CPU op's bits; thread splits do not "
    "change them",
    "[loss][order][cuda]") {
  order_rng rng(13);
  for (const auto& oc : order_cases()) {
    const auto x = make_inputs(rng, oc, 3);
    const std::int64_t count = x.batch * x.g.grid.num_patches();
    const std::int64_t bands = mwm::band_count(x.g, x.batch);
    for (bool norm : {false, true}) {
      if (norm && x.g.patch_vector_size() < 2) continue;
      for (auto error : {mwm::recon_error::mse, mwm::recon_error::l1}) {
        for (bool weighted : {false, true}) {
          mwm::loss_options o;
          o.norm_target = norm;
          o.error = error;
          o.reduction = mwm::loss_reduction::mean;
          const auto in = x.view(o, weighted);
          INFO("P " << x.g.patch_vector_size() << ", patch layout " << oc.patch_layout << ", norm "
                    << norm << ", l1 " << (error == mwm::recon_error::l1) << ", weighted "
                    << weighted);
          const auto cpu = cpu_patch_losses(in, {});
          const float cpu_loss = mwm::finish_loss(in, cpu.data(), -1);
          // Threads: any split of the bands, same bits.
          const auto split = cpu_patch_losses(in, {1, bands / 2, bands - 1});
          REQUIRE(split == cpu);
          REQUIRE(same_bits(mwm::finish_loss(in, split.data(), -1), cpu_loss));
          // The device decomposition, with a full grid and with a grid-stride loop.
          for (std::int64_t blocks : {(count + 7) / 8, std::int64_t(2)}) {
            const auto dev = device_emulation(in, blocks);
            REQUIRE(dev.per_patch == cpu);
            REQUIRE(same_bits(dev.coefficients_total,
                              mwm::coefficient_total(in.mask, in.weight, count)));
            REQUIRE(same_bits(dev.losses_total / dev.coefficients_total, cpu_loss));
          }
          // The gradient: the warp bodies against band_gradients.
          const float denominator = mwm::steps::loss_denominator(
              o.reduction, mwm::coefficient_total(in.mask, in.weight, count));
          const float upstream = 0.75f;
          std::vector<float> grad_cpu(static_cast<std::size_t>(x.pred_size), 5.0f);
          std::vector<float> grad_dev(static_cast<std::size_t>(x.pred_size), 6.0f);
          std::vector<float> scratch(static_cast<std::size_t>(mwm::band_scratch_size(x.g)));
          mwm::band_gradients(in, &upstream, denominator, grad_cpu.data(), x.grad_strides, 0, bands,
                              scratch.data());
          mwm::gpu::host_warp warp;
          for (std::int64_t i = 0; i < count; ++i)
            mwm::gpu::warp_patch_gradient(in, &upstream, denominator, grad_dev.data(),
                                          x.grad_strides, i, warp);
          REQUIRE(grad_dev == grad_cpu);
          // The kernels' groups (four lanes a thread, vector paths where they apply).
          mwm::gpu::host_quad_warp group;
          group.loads.pred = mwm::gpu::quad_vector_loads(in.pred, in.pred_strides, x.g);
          group.loads.target = mwm::gpu::quad_vector_loads(in.target, in.target_strides, x.g);
          std::vector<float> grad_group(static_cast<std::size_t>(x.pred_size), 7.0f);
          group.loads.grad = mwm::gpu::quad_vector_loads(grad_group.data(), x.grad_strides, x.g);
          for (std::int64_t i = count - 1; i >= 0; --i)
            mwm::gpu::warp_patch_gradient(in, &upstream, denominator, grad_group.data(),
                                          x.grad_strides, i, group);
          REQUIRE(grad_group == grad_cpu);
        }
      }
    }
  }
}

TEST_CASE("loss: the CPU op against a plain float64 reference, over many patches",
          "[loss][order]") {
  // 2 * 60 * 60 = 7200 patches of 4 x 4 x 3: more than one chunk of 256 at the first level.
  order_rng rng(14);
  const order_case oc{mwm::make_geometry_2d(3, 240, 240, 4, 4), true, false};
  const auto x = make_inputs(rng, oc, 2);
  mwm::loss_options o;
  o.norm_target = true;
  const auto in = x.view(o, true);
  const auto cpu = cpu_patch_losses(in, {7, 50});
  const float loss = mwm::finish_loss(in, cpu.data(), -1);
  const auto& g = x.g;
  const std::int64_t n = g.grid.num_patches();
  const std::int64_t p = g.patch_vector_size();
  double total = 0.0, coefficients = 0.0;
  for (std::int64_t i = 0; i < x.batch * n; ++i) {
    const float* t =
        x.target.data() + mwm::steps::patch_start(x.target_strides, g.grid, i / n, i % n);
    const float* q = x.pred.data() + mwm::steps::patch_start(x.pred_strides, g.grid, i / n, i % n);
    std::vector<double> tv, pv;
    for (std::int64_t ph = 0; ph < g.patch_height; ++ph)
      for (std::int64_t pw = 0; pw < g.patch_width; ++pw)
        for (std::int64_t c = 0; c < g.channels; ++c) {
          tv.push_back(t[ph * x.target_strides.height + pw * x.target_strides.width +
                         c * x.target_strides.channel]);
          pv.push_back(q[ph * x.pred_strides.height + pw * x.pred_strides.width +
                         c * x.pred_strides.channel]);
        }
    double mean = 0.0, var = 0.0, err = 0.0;
    for (double v : tv) mean += v;
    mean /= static_cast<double>(p);
    for (double v : tv) var += (v - mean) * (v - mean);
    var /= static_cast<double>(p - 1);
    for (std::size_t e = 0; e < tv.size(); ++e) {
      const double d = pv[e] - (tv[e] - mean) / std::sqrt(var + 1e-6);
      err += d * d;
    }
    const double c =
        x.mask[static_cast<std::size_t>(i)] ? x.weight[static_cast<std::size_t>(i)] : 0.0;
    total += c * err / static_cast<double>(p);
    coefficients += c;
  }
  const double reference = total / coefficients;
  CHECK(std::fabs(static_cast<double>(loss) - reference) <= 1e-4 * std::fabs(reference));
}

// The message finish_loss throws, or "" when it returns.
std::string cpu_message(const mwm::loss_inputs<float, float, float>& in) {
  const std::int64_t count = in.batch * in.geometry.grid.num_patches();
  std::vector<float> losses(static_cast<std::size_t>(count));
  std::vector<float> scratch(static_cast<std::size_t>(mwm::band_scratch_size(in.geometry)));
  const std::int64_t bad = mwm::band_losses(in, 0, mwm::band_count(in.geometry, in.batch),
                                            losses.data(), scratch.data());
  try {
    mwm::finish_loss(in, losses.data(), bad);
  } catch (const mwm::error& e) {
    return e.what();
  }
  return "";
}

// The message the device's error slot raises: the patch kernel's record of the smallest key
// (target faults first, then flat order), through the gpu layer's data_error_message.
std::string device_message(const mwm::loss_inputs<float, float, float>& in) {
  const std::int64_t count = in.batch * in.geometry.grid.num_patches();
  mwm::data_error_slot slot;
  mwm::gpu::host_warp warp;
  for (std::int64_t i = count - 1; i >= 0; --i) {  // any order: the key decides
    const auto r = mwm::gpu::warp_patch_loss(in, i, warp);
    mwm::loss_fault fault = r.target_finite ? mwm::loss_fault::none : mwm::loss_fault::target;
    if (fault == mwm::loss_fault::none && in.options.nonfinite == mwm::nonfinite_policy::error)
      fault = mwm::steps::patch_loss_fault(in, i, r.loss);
    if (fault == mwm::loss_fault::none) continue;
    const auto bad = mwm::gpu::patch_data_error(in, fault, i);
    mwm::record_data_error(slot, bad.key, bad.error);
  }
  return mwm::steps::has_data_error(slot) ? mwm::data_error_message(slot.error) : "";
}

TEST_CASE("loss: the device's error records raise finish_loss's messages", "[loss][order][cuda]") {
  order_rng rng(16);
  const order_case oc{mwm::make_geometry_2d(3, 32, 48, 16, 16), true, false};
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (int kind = 0; kind < 6; ++kind) {
    auto x = make_inputs(rng, oc, 2);
    std::fill(x.mask.begin(), x.mask.end(), std::uint8_t(1));
    const std::int64_t p = x.g.patch_vector_size();
    mwm::loss_options o;
    o.norm_target = false;
    if (kind == 0) x.pred[static_cast<std::size_t>(7 * p + 3)] = nan;  // pred, patch 7
    if (kind == 1) x.weight[5] = inf;                                  // weight, patch 5
    if (kind == 2) x.target[100] = nan;                                // target, patch 0
    if (kind == 3) x.pred[static_cast<std::size_t>(9 * p)] = 1e30f;    // overflow
    if (kind == 4) {  // a target fault after a pred fault: the target is reported
      x.pred[static_cast<std::size_t>(1 * p)] = nan;
      x.target[static_cast<std::size_t>(x.target.size() - 1)] = inf;
    }
    if (kind == 5) o.nonfinite = mwm::nonfinite_policy::propagate;  // nothing to report
    if (kind == 5) x.pred[0] = nan;
    const auto in = x.view(o, true);
    INFO("kind " << kind);
    const std::string cpu = cpu_message(in);
    CHECK((kind == 5) == cpu.empty());
    REQUIRE(device_message(in) == cpu);
  }
}

}  // namespace
