// The AVX-512 and AVX2 patch steps of the CPU loss (loss_x86_passes.hpp, loss_x86.hpp) against
// the portable steps they replace (vector_normalization, vector_error, vector_gradient of
// loss_patch.hpp): the same bits for every length (full groups of 32 lanes, a tail in any
// register, patches shorter than a group), both errors, with and without the normalization,
// gradients streamed, stored plainly or not written, factors that underflow, and values that are
// signed zeros, infinities or NaN; and band_losses on their gathers. Each variant runs where the
// CPU has it (MWM_CPU_VECTOR_BITS does not cap these direct calls).
#include <mwm/loss.hpp>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "catch.hpp"

#if defined(MWM_X86_DISPATCH)

namespace {

using mwm::loss_options;
using mwm::recon_error;
using mwm::target_normalization;

// Reproducible values around `offset` (a CT-like offset makes the variance's cancellation show).
std::vector<float> values(std::int64_t count, std::uint64_t seed, float offset) {
  std::vector<float> v(static_cast<std::size_t>(count));
  for (auto& x : v) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    x = offset + static_cast<float>(static_cast<std::int64_t>(seed >> 41) - (1 << 22)) / (1 << 20);
  }
  return v;
}

// The same bits, or both NaN: which NaN an operation on two NaN operands returns (its sign and
// payload) depends on the operand order, and compilers commute floating-point additions and
// products differently at each optimization level (the Debug sanitizer build differs from
// RelWithDebInfo there), so only NaN-ness is part of the contract.
bool same_bits(float a, float b) {
  if (std::isnan(a) && std::isnan(b)) return true;
  return std::memcmp(&a, &b, sizeof(float)) == 0;
}

// The vector variants this CPU runs: 512 (AVX-512) and 256 (AVX2), the widest first.
std::vector<int> loss_variants_here() {
  std::vector<int> bits;
  if (mwm::detail::supported_x86_vector_bits() == 512) bits.push_back(512);
  if (mwm::detail::supported_x86_vector_bits() >= 256) bits.push_back(256);
  return bits;
}

float patch_loss_variant(int bits, const float* p, const float* t, std::int64_t count,
                         const loss_options& o, target_normalization<float>* norm, float weight,
                         float* grad, bool stream) {
  return bits == 512 ? mwm::detail::avx512::patch_loss(p, t, count, o, norm, weight, grad, stream)
                     : mwm::detail::avx2::patch_loss(p, t, count, o, norm, weight, grad, stream);
}

// 64-byte aligned storage for `count` floats starting `shift` floats past the boundary.
struct aligned_floats {
  aligned_floats(std::int64_t count, std::int64_t shift)
      : base(static_cast<float*>(
            std::aligned_alloc(64, static_cast<std::size_t>((count + shift + 16 + 15) / 16 * 64)))),
        data(base + shift) {
    for (std::int64_t i = 0; i < count + shift + 16; ++i) base[i] = 777.0f;
  }
  ~aligned_floats() { std::free(base); }
  aligned_floats(const aligned_floats&) = delete;
  aligned_floats& operator=(const aligned_floats&) = delete;
  float* base;
  float* data;
};

// One patch through both paths; every output compared bit for bit, and nothing written past
// the patch.
void require_same_patch(const std::vector<float>& p, const std::vector<float>& t,
                        const loss_options& o, float weight, std::int64_t shift, int bits) {
  const std::int64_t count = static_cast<std::int64_t>(t.size());
  target_normalization<float> expected_norm{0.0f, 1.0f};
  if (o.norm_target) expected_norm = mwm::steps::vector_normalization(t.data(), count);
  const float expected =
      mwm::steps::vector_error(p.data(), t.data(), count, o.error, expected_norm);
  std::vector<float> expected_grad(static_cast<std::size_t>(count));
  mwm::steps::vector_gradient(weight, p.data(), t.data(), count, o.error, expected_norm,
                              expected_grad.data());
  for (int mode = 0; mode < 3; ++mode) {  // no gradient, plain stores, streaming stores
    aligned_floats grad(count, shift);
    const bool stream = mode == 2 && shift == 0;
    target_normalization<float> norm{};
    const float err = patch_loss_variant(bits, p.data(), t.data(), count, o, &norm, weight,
                                         mode == 0 ? nullptr : grad.data, stream);
    mwm::detail::stream_fence();
    INFO("bits " << bits << ", count " << count << ", error " << int(o.error) << ", norm "
                 << o.norm_target << ", weight " << weight << ", mode " << mode << ", shift "
                 << shift);
    REQUIRE(same_bits(err, expected));
    if (o.norm_target) {
      REQUIRE(same_bits(norm.mean, expected_norm.mean));
      REQUIRE(same_bits(norm.inv_std, expected_norm.inv_std));
    }
    for (std::int64_t i = 0; i < count; ++i) {
      INFO("element " << i);
      REQUIRE(same_bits(grad.data[i], mode == 0 ? 777.0f : expected_grad[i]));
    }
    for (std::int64_t i = count; i < count + 16; ++i) REQUIRE(grad.data[i] == 777.0f);
  }
}

std::vector<loss_options> error_and_norm_options() {
  std::vector<loss_options> out;
  for (recon_error e : {recon_error::mse, recon_error::l1})
    for (bool norm : {false, true}) {
      loss_options o;
      o.error = e;
      o.norm_target = norm;
      out.push_back(o);
    }
  return out;
}

}  // namespace

TEST_CASE("the vector patch steps have the portable steps' bits for every length", "[loss][x86]") {
  const auto variants = loss_variants_here();
  if (variants.empty()) WARN("this CPU has neither AVX-512 nor AVX2: nothing to compare");
  for (int bits : variants) {
    std::uint64_t seed = 1;
    for (std::int64_t count : {2,  3,  7,  8,  9,  15, 16, 17, 23,  24,  25,   31,       32,
                               33, 39, 41, 47, 48, 63, 64, 65, 100, 768, 4096, 4096 + 23}) {
      for (const auto& o : error_and_norm_options()) {
        for (float offset : {0.0f, 1000.0f}) {
          const auto p = values(count, ++seed, 0.0f);
          const auto t = values(count, ++seed, offset);
          for (float weight : {1.0f / 3.0f, 2.5e-7f, 1e-44f})
            for (std::int64_t shift : {0, 1, 5}) require_same_patch(p, t, o, weight, shift, bits);
        }
      }
    }
  }
}

TEST_CASE("the vector patch steps keep signed zeros, infinities and NaN as the portable steps",
          "[loss][x86]") {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int bits : loss_variants_here()) {
    for (std::int64_t count : {5, 12, 40, 768}) {
      for (const auto& o : error_and_norm_options()) {
        // Residuals of exactly 0 (p == t, no normalization): l1's gradient is 0 there.
        auto t = values(count, 3, 0.0f);
        auto p = t;
        p[1] = -0.0f;
        t[1] = 0.0f;
        require_same_patch(p, t, o, 1.0f, 0, bits);
        // Non-finite predictions and targets.
        p[2] = inf;
        p[3] = nan;
        t[4] = -inf;
        require_same_patch(p, t, o, 0.5f, 0, bits);
      }
    }
  }
}

namespace {

// band_losses with the gradient for grad_output = 1 over float data whose rows the vector
// gathers take (unit stride, C = 1 or 3, patch_width a multiple of 8 or 16), against the
// portable steps run patch by patch on a target patchified by a plain loop.
void require_band_losses_match_portable(const mwm::patch_geometry& g, std::int64_t batch,
                                        const loss_options& o, std::uint64_t seed) {
  const std::int64_t n = g.grid.num_patches(), p = g.patch_vector_size();
  const auto target = values(batch * n * p, seed, 40.0f);
  const auto pred = values(batch * n * p, seed + 1, 0.0f);
  std::vector<std::uint8_t> mask(static_cast<std::size_t>(batch * n));
  std::vector<float> weight(mask.size());
  for (std::size_t i = 0; i < mask.size(); ++i) {
    mask[i] = (i * 2654435761u >> 5) % 4 != 0;
    weight[i] = 0.5f + static_cast<float>(i % 7) * 0.25f;
  }
  mask[0] = 1;
  const std::int64_t hw = g.image_height() * g.image_width();
  mwm::loss_inputs<float, float, float> in;
  in.geometry = g;
  in.batch = batch;
  in.pred = pred.data();
  in.pred_strides = mwm::vector_patch_strides(g, n * p, p, 1);
  in.target = target.data();
  in.target_strides = mwm::image_patch_strides(g, g.channels * g.image_depth() * hw,
                                               g.image_depth() * hw, hw, g.image_width(), 1);
  in.mask = mask.data();
  in.weight = weight.data();
  in.options = o;
  const float denominator = mwm::steps::loss_denominator(
      o.reduction, mwm::coefficient_total(in.mask, in.weight, batch * n));
  aligned_floats grad(batch * n * p, 0);
  const mwm::unit_gradient<float, float> unit{denominator, grad.data, in.pred_strides};
  std::vector<float> losses(mask.size(), -1.0f);
  std::vector<float> scratch(static_cast<std::size_t>(mwm::band_scratch_size(g)));
  const std::int64_t bands = mwm::band_count(g, batch);
  REQUIRE(mwm::band_losses(in, 0, bands / 2, losses.data(), scratch.data(), &unit) == -1);
  REQUIRE(mwm::band_losses(in, bands / 2, bands, losses.data(), scratch.data(), &unit) == -1);

  std::vector<float> t(static_cast<std::size_t>(p)), expected_grad(t.size());
  for (std::int64_t i = 0; i < batch * n; ++i) {
    const float c = mwm::steps::patch_coefficient(in.mask, in.weight, i);
    const float* pv = pred.data() + i * p;
    const float* gv = grad.data + i * p;
    INFO("patch " << i << ", P = " << p << ", error " << int(o.error) << ", norm "
                  << o.norm_target);
    if (c == 0.0f) {
      REQUIRE(same_bits(losses[i], 0.0f));
      for (std::int64_t e = 0; e < p; ++e) REQUIRE(same_bits(gv[e], 0.0f));
      continue;
    }
    const float* start =
        target.data() + mwm::steps::patch_start(in.target_strides, g.grid, i / n, i % n);
    std::int64_t e = 0;
    for (std::int64_t pd = 0; pd < g.patch_depth; ++pd)
      for (std::int64_t ph = 0; ph < g.patch_height; ++ph)
        for (std::int64_t pw = 0; pw < g.patch_width; ++pw)
          for (std::int64_t ch = 0; ch < g.channels; ++ch)
            t[static_cast<std::size_t>(e++)] =
                start[pd * in.target_strides.depth + ph * in.target_strides.height + pw +
                      ch * in.target_strides.channel];
    target_normalization<float> norm{0.0f, 1.0f};
    if (o.norm_target) norm = mwm::steps::vector_normalization(t.data(), p);
    const float err = mwm::steps::vector_error(pv, t.data(), p, o.error, norm);
    REQUIRE(same_bits(losses[i], c * err));
    mwm::steps::vector_gradient(mwm::steps::gradient_factor(1.0f, c, denominator), pv, t.data(), p,
                                o.error, norm, expected_grad.data());
    for (e = 0; e < p; ++e) {
      INFO("element " << e);
      REQUIRE(same_bits(gv[e], expected_grad[static_cast<std::size_t>(e)]));
    }
  }
}

}  // namespace

TEST_CASE("band_losses on the vector gathers has the portable steps' bits", "[loss][x86]") {
  // Under MWM_CPU_VECTOR_BITS=256 the AVX2 gather and patch step run, under 128 the portable
  // ones (ctest runs the suite under both): the same bits each time.
  const mwm::patch_geometry geometries[] = {
      mwm::make_geometry_2d(3, 32, 48, 16, 16),          // MAE 2D, P = 768
      mwm::make_geometry_2d(3, 4, 64, 2, 32),            // two vectors per channel row
      mwm::make_geometry_2d(1, 6, 48, 1, 16),            // P = 16: half a lane group
      mwm::make_geometry_2d(3, 16, 40, 8, 8),            // patch 8: the AVX2 gather only
      mwm::make_geometry_2d(1, 6, 24, 3, 8),             // P = 24: three quarters
      mwm::make_geometry_3d(1, 32, 32, 32, 16, 16, 16),  // 3D, P = 4096
      mwm::make_geometry_3d(1, 4, 6, 32, 2, 3, 16)};     // P = 96: three vectors
  std::uint64_t seed = 100;
  for (const auto& g : geometries) {
    const auto strides =
        mwm::image_patch_strides(g, 0, g.image_depth() * g.image_height() * g.image_width(),
                                 g.image_height() * g.image_width(), g.image_width(), 1);
    REQUIRE((mwm::detail::avx512::gathers_rows(strides, g) ||
             mwm::detail::avx2::gathers_rows(strides, g)) ==
            (mwm::detail::x86_vector_bits() >= 256));
    for (const auto& o : error_and_norm_options()) {
      require_band_losses_match_portable(g, 2, o, ++seed);
      loss_options sum = o;
      sum.reduction = mwm::loss_reduction::sum;
      require_band_losses_match_portable(g, 1, sum, ++seed);
    }
  }
}

#endif  // MWM_X86_DISPATCH
