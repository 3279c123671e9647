// The fused masked reconstruction loss against a plain reference that patchifies explicitly,
// for 2D and 3D, both prediction layouts, strided views, every option; its gradient against
// central finite differences; the gradient the forward writes for grad_output 1 against the
// backward driver, bit for bit.
#include <mwm/masking.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "catch.hpp"
#include "core_test_support.hpp"
#include "loss_test_support.hpp"

namespace {

using mwm::loss_reduction;
using mwm::recon_error;
using mwm_test::mwm_error_message;

struct loss_case {
  mwm::patch_geometry geometry;
  std::int64_t batch;
};

// Image element (b, c, d, h, w) of a dense (B, C, D, H, W) buffer.
std::int64_t dense_index(const mwm::patch_geometry& g, std::int64_t b, std::int64_t c,
                         std::int64_t d, std::int64_t h, std::int64_t w) {
  return (((b * g.channels + c) * g.image_depth() + d) * g.image_height() + h) * g.image_width() +
         w;
}

// Patch vectors (B, N, P) in MAE's order, written out with explicit loops.
std::vector<double> patchify(const mwm::patch_geometry& g, std::int64_t batch,
                             const std::vector<double>& image) {
  const std::int64_t n = g.grid.num_patches();
  const std::int64_t p = g.patch_vector_size();
  std::vector<double> out(static_cast<std::size_t>(batch * n * p));
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t gd = 0; gd < g.grid.depth; ++gd)
      for (std::int64_t gh = 0; gh < g.grid.height; ++gh)
        for (std::int64_t gw = 0; gw < g.grid.width; ++gw) {
          const std::int64_t patch = g.grid.index(gd, gh, gw);
          std::int64_t e = 0;
          for (std::int64_t pd = 0; pd < g.patch_depth; ++pd)
            for (std::int64_t ph = 0; ph < g.patch_height; ++ph)
              for (std::int64_t pw = 0; pw < g.patch_width; ++pw)
                for (std::int64_t c = 0; c < g.channels; ++c, ++e)
                  out[static_cast<std::size_t>((b * n + patch) * p + e)] =
                      image[static_cast<std::size_t>(dense_index(g, b, c, gd * g.patch_depth + pd,
                                                                 gh * g.patch_height + ph,
                                                                 gw * g.patch_width + pw))];
        }
  return out;
}

// Per-patch c * err of the patchified data, computed the obvious way in double.
std::vector<double> reference_patch_losses(const mwm::patch_geometry& g, std::int64_t batch,
                                           const std::vector<double>& pred_vectors,
                                           const std::vector<double>& target_image,
                                           const std::vector<std::uint8_t>& mask,
                                           const std::vector<double>& weight,
                                           const mwm::loss_options& o) {
  const auto target = patchify(g, batch, target_image);
  const std::int64_t n = g.grid.num_patches();
  const std::int64_t p = g.patch_vector_size();
  std::vector<double> out(static_cast<std::size_t>(batch * n));
  for (std::int64_t i = 0; i < batch * n; ++i) {
    const double* t = &target[static_cast<std::size_t>(i * p)];
    const double* x = &pred_vectors[static_cast<std::size_t>(i * p)];
    double mean = 0, var = 0;
    if (o.norm_target) {
      for (std::int64_t e = 0; e < p; ++e) mean += t[e];
      mean /= static_cast<double>(p);
      for (std::int64_t e = 0; e < p; ++e) var += (t[e] - mean) * (t[e] - mean);
      var /= static_cast<double>(p - 1);
    }
    double err = 0;
    for (std::int64_t e = 0; e < p; ++e) {
      const double th = o.norm_target ? (t[e] - mean) / std::sqrt(var + 1e-6) : t[e];
      const double d = x[e] - th;
      err += o.error == recon_error::mse ? d * d : std::fabs(d);
    }
    err /= static_cast<double>(p);
    const double c = mask[static_cast<std::size_t>(i)] ? weight[static_cast<std::size_t>(i)] : 0;
    out[static_cast<std::size_t>(i)] = c * err;
  }
  return out;
}

double reference_reduced(const std::vector<double>& losses, const std::vector<std::uint8_t>& mask,
                         const std::vector<double>& weight, loss_reduction r) {
  double total = 0, coefficients = 0;
  for (std::size_t i = 0; i < losses.size(); ++i) {
    total += losses[i];
    coefficients += mask[i] ? weight[i] : 0;
  }
  if (r == loss_reduction::mean) return total / coefficients;
  if (r == loss_reduction::mean_eps) return total / (coefficients + 1e-8);
  return total;
}

template <typename Acc, typename P, typename T>
std::int64_t run_losses(const mwm::loss_inputs<Acc, P, T>& in, std::int64_t band_begin,
                        std::int64_t band_end, std::vector<Acc>& losses) {
  std::vector<Acc> scratch(static_cast<std::size_t>(mwm::band_scratch_size(in.geometry)));
  losses.assign(static_cast<std::size_t>(in.batch * in.geometry.grid.num_patches()), Acc(-1));
  return mwm::band_losses(in, band_begin, band_end, losses.data(), scratch.data());
}

template <typename Acc, typename P, typename T>
void run_gradients(const mwm::loss_inputs<Acc, P, T>& in, const Acc* upstream, Acc denominator,
                   P* grad, const mwm::patch_strides& gs) {
  std::vector<Acc> scratch(static_cast<std::size_t>(mwm::band_scratch_size(in.geometry)));
  mwm::band_gradients(in, upstream, denominator, grad, gs, 0,
                      mwm::band_count(in.geometry, in.batch), scratch.data());
}

template <typename Acc, typename P, typename T>
double run_forward(const mwm::loss_inputs<Acc, P, T>& in, std::vector<Acc>* per_patch = nullptr) {
  const std::int64_t count = in.batch * in.geometry.grid.num_patches();
  std::vector<Acc> losses;
  REQUIRE(run_losses(in, 0, mwm::band_count(in.geometry, in.batch), losses) == -1);
  if (per_patch) *per_patch = losses;
  const Acc total = mwm::coefficient_total(in.mask, in.weight, count);
  return static_cast<double>(
      mwm::reduce_patch_losses(losses.data(), count, in.options.reduction, total));
}

struct fixture {
  mwm::patch_geometry g;
  std::int64_t batch;
  std::vector<double> target;        // dense image (B, C, D, H, W)
  std::vector<double> pred_vectors;  // dense (B, N, P)
  std::vector<std::uint8_t> mask;
  std::vector<double> weight;

  fixture(const mwm::patch_geometry& geometry, std::int64_t b, std::uint64_t seed)
      : g(geometry), batch(b) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> uniform(-1.0, 1.0);
    const std::int64_t n = g.grid.num_patches();
    target.resize(static_cast<std::size_t>(batch * n * g.patch_vector_size()));
    // A large offset makes the variance a small difference of large numbers.
    for (auto& v : target) v = 40.0 + uniform(rng);
    pred_vectors.resize(target.size());
    for (auto& v : pred_vectors) v = uniform(rng);
    mask.resize(static_cast<std::size_t>(batch * n));
    weight.resize(mask.size());
    for (std::size_t i = 0; i < mask.size(); ++i) {
      mask[i] = (rng() % 4) != 0;
      weight[i] = 0.25 + (uniform(rng) + 1.0);
    }
    mask[0] = 1;
  }

  mwm::patch_strides target_strides() const {
    const std::int64_t w = 1, h = g.image_width(), d = h * g.image_height();
    const std::int64_t c = d * g.image_depth(), b = c * g.channels;
    return mwm::image_patch_strides(g, b, c, d, h, w);
  }

  mwm::patch_strides vector_strides() const {
    const std::int64_t p = g.patch_vector_size();
    return mwm::vector_patch_strides(g, g.grid.num_patches() * p, p, 1);
  }

  mwm::loss_inputs<double, double, double> inputs(const mwm::loss_options& o, bool weighted) const {
    return inputs_over(pred_vectors.data(), target.data(), weighted ? weight.data() : nullptr, o);
  }

  // The fixture's geometry, strides and mask over dense `pred` and `target` of any element type
  // (the float tests read float copies of the fixture's data).
  template <typename T>
  mwm::loss_inputs<T, T, T> inputs_over(const T* pred, const T* image, const T* weights,
                                        const mwm::loss_options& o) const {
    return mwm_test::loss_inputs_over(g, batch, pred, vector_strides(), image, target_strides(),
                                      mask.data(), weights, o);
  }
};

std::vector<loss_case> geometries() {
  return {{mwm::make_geometry_2d(3, 8, 12, 4, 4), 2},
          {mwm::make_geometry_2d(1, 6, 6, 3, 2), 3},
          {mwm::make_geometry_2d(2, 20, 20, 10, 10), 1},
          {mwm::make_geometry_3d(1, 8, 8, 8, 4, 4, 4), 2},
          {mwm::make_geometry_3d(2, 4, 6, 8, 2, 3, 4), 1}};
}

std::vector<mwm::loss_options> all_options() {
  std::vector<mwm::loss_options> out;
  for (auto e : {recon_error::mse, recon_error::l1})
    for (bool norm : {false, true})
      for (auto r : {loss_reduction::mean, loss_reduction::mean_eps, loss_reduction::sum,
                     loss_reduction::none})
        out.push_back(mwm::loss_options{e, norm, r});
  return out;
}

}  // namespace

TEST_CASE("patch strides address MAE's patch vector order in both layouts", "[loss]") {
  const auto g = mwm::make_geometry_3d(2, 4, 6, 8, 2, 3, 4);
  fixture f(g, 2, 1);
  const auto vectors = patchify(g, 2, f.target);
  const auto ts = f.target_strides();
  const auto vs = f.vector_strides();
  const std::int64_t p = g.patch_vector_size();
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t n = 0; n < g.grid.num_patches(); ++n) {
      const double* image_patch = f.target.data() + mwm::steps::patch_start(ts, g.grid, b, n);
      const double* vector_patch = vectors.data() + mwm::steps::patch_start(vs, g.grid, b, n);
      std::int64_t e = 0;
      for (std::int64_t pd = 0; pd < g.patch_depth; ++pd)
        for (std::int64_t ph = 0; ph < g.patch_height; ++ph)
          for (std::int64_t pw = 0; pw < g.patch_width; ++pw)
            for (std::int64_t c = 0; c < g.channels; ++c, ++e) {
              const double a =
                  image_patch[pd * ts.depth + ph * ts.height + pw * ts.width + c * ts.channel];
              const double v =
                  vector_patch[pd * vs.depth + ph * vs.height + pw * vs.width + c * vs.channel];
              const auto flat = (b * g.grid.num_patches() + n) * p + e;
              REQUIRE(v == vectors[static_cast<std::size_t>(flat)]);
              REQUIRE(a == v);
            }
    }
}

TEST_CASE("the fused loss equals the patchify reference for every option", "[loss]") {
  std::uint64_t seed = 10;
  for (const auto& lc : geometries()) {
    fixture f(lc.geometry, lc.batch, ++seed);
    for (const auto& o : all_options())
      for (bool weighted : {false, true}) {
        INFO("P = " << lc.geometry.patch_vector_size() << ", error " << int(o.error) << ", norm "
                    << o.norm_target << ", reduction " << int(o.reduction) << ", weighted "
                    << weighted);
        std::vector<double> ones(f.weight.size(), 1.0);
        const auto& w = weighted ? f.weight : ones;
        const auto expected_patches =
            reference_patch_losses(f.g, f.batch, f.pred_vectors, f.target, f.mask, w, o);
        std::vector<double> patches;
        const double got = run_forward(f.inputs(o, weighted), &patches);
        for (std::size_t i = 0; i < patches.size(); ++i)
          REQUIRE(patches[i] == Approx(expected_patches[i]).epsilon(1e-12).margin(1e-300));
        if (o.reduction != loss_reduction::none) {
          const double expected = reference_reduced(expected_patches, f.mask, w, o.reduction);
          REQUIRE(got == Approx(expected).epsilon(1e-12));
        }
      }
  }
}

TEST_CASE("the per-patch strided path (the CUDA kernels') equals the band drivers", "[loss]") {
  std::uint64_t seed = 50;
  for (const auto& lc : geometries()) {
    fixture f(lc.geometry, lc.batch, ++seed);
    const auto& g = f.g;
    const std::int64_t n = g.grid.num_patches();
    const std::int64_t count = f.batch * n;
    for (const auto& o : all_options()) {
      INFO("P = " << g.patch_vector_size() << ", error " << int(o.error) << ", norm "
                  << o.norm_target);
      const auto in = f.inputs(o, true);
      std::vector<double> banded;
      REQUIRE(run_losses(in, 0, mwm::band_count(g, f.batch), banded) == -1);
      std::vector<double> upstream(static_cast<std::size_t>(count));
      for (std::int64_t i = 0; i < count; ++i)
        upstream[static_cast<std::size_t>(i)] = 0.3 + 0.2 * static_cast<double>(i % 5);
      std::vector<double> banded_grad(f.pred_vectors.size());
      run_gradients(in, upstream.data(), 1.0, banded_grad.data(), f.vector_strides());
      std::vector<double> grad(f.pred_vectors.size(), 9.0);
      for (std::int64_t i = 0; i < count; ++i) {
        const std::int64_t b = i / n, patch = i % n;
        const double c = mwm::steps::patch_coefficient(in.mask, in.weight, i);
        const double* pred = in.pred + mwm::steps::patch_start(in.pred_strides, g.grid, b, patch);
        const double* target =
            in.target + mwm::steps::patch_start(in.target_strides, g.grid, b, patch);
        double loss = -1;
        REQUIRE(mwm::steps::weighted_patch_loss(c, pred, in.pred_strides, target, in.target_strides,
                                                g, o, &loss));
        REQUIRE(loss == Approx(banded[static_cast<std::size_t>(i)]).epsilon(1e-14).margin(1e-300));
        const bool per_patch = o.reduction == loss_reduction::none;
        const double factor = mwm::steps::gradient_factor(
            upstream[per_patch ? static_cast<std::size_t>(i) : 0], c, 1.0);
        mwm::steps::weighted_patch_gradient(
            factor, pred, in.pred_strides, target, in.target_strides, g, o,
            grad.data() + mwm::steps::patch_start(in.pred_strides, g.grid, b, patch),
            in.pred_strides);
      }
      for (std::size_t e = 0; e < grad.size(); ++e)
        REQUIRE(grad[e] == Approx(banded_grad[e]).epsilon(1e-14).margin(1e-300));
    }
  }
}

TEST_CASE("image-layout predictions and strided targets give the same loss", "[loss]") {
  const auto g = mwm::make_geometry_2d(3, 8, 12, 4, 4);
  fixture f(g, 2, 5);
  const mwm::loss_options o{recon_error::mse, true, loss_reduction::mean};
  const double reference = run_forward(f.inputs(o, true));

  // The prediction as an image: unpatchify the vectors into a dense (B, C, H, W) buffer.
  std::vector<double> pred_image(f.pred_vectors.size());
  const auto vectors_of_index = patchify(g, f.batch, [&] {
    std::vector<double> idx(pred_image.size());
    for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<double>(i);
    return idx;
  }());
  for (std::size_t e = 0; e < vectors_of_index.size(); ++e)
    pred_image[static_cast<std::size_t>(vectors_of_index[e])] = f.pred_vectors[e];
  auto in = f.inputs(o, true);
  in.pred = pred_image.data();
  in.pred_strides = f.target_strides();
  CHECK(run_forward(in) == Approx(reference).epsilon(1e-14));

  // The target stored channels-last (B, H, W, C), read through its strides.
  std::vector<double> channels_last(f.target.size());
  const std::int64_t H = g.image_height(), W = g.image_width(), C = g.channels;
  for (std::int64_t b = 0; b < f.batch; ++b)
    for (std::int64_t c = 0; c < C; ++c)
      for (std::int64_t h = 0; h < H; ++h)
        for (std::int64_t w = 0; w < W; ++w)
          channels_last[static_cast<std::size_t>(((b * H + h) * W + w) * C + c)] =
              f.target[static_cast<std::size_t>(dense_index(g, b, c, 0, h, w))];
  auto strided = f.inputs(o, true);
  strided.target = channels_last.data();
  strided.target_strides = mwm::image_patch_strides(g, H * W * C, 1, 0, W * C, C);
  CHECK(run_forward(strided) == Approx(reference).epsilon(1e-14));
}

TEST_CASE("float predictions accumulate in float and stay close to double", "[loss]") {
  const auto g = mwm::make_geometry_2d(3, 32, 32, 16, 16);
  fixture f(g, 2, 9);
  for (auto& v : f.target) v -= 40.0;  // float cannot hold the offset's variance precisely
  const mwm::loss_options o{recon_error::mse, true, loss_reduction::mean};
  const double reference = run_forward(f.inputs(o, false));
  std::vector<float> pred(f.pred_vectors.begin(), f.pred_vectors.end());
  std::vector<float> target(f.target.begin(), f.target.end());
  const auto in = f.inputs_over<float>(pred.data(), target.data(), nullptr, o);
  CHECK(run_forward(in) == Approx(reference).epsilon(1e-5));
}

TEST_CASE("the gradient matches central differences of the loss", "[loss]") {
  std::uint64_t seed = 100;
  for (const auto& lc : {loss_case{mwm::make_geometry_2d(2, 4, 6, 2, 3), 2},
                         loss_case{mwm::make_geometry_3d(1, 4, 4, 4, 2, 2, 2), 1}}) {
    fixture f(lc.geometry, lc.batch, ++seed);
    const std::int64_t count = f.batch * f.g.grid.num_patches();
    for (const auto& o : all_options()) {
      INFO("error " << int(o.error) << ", norm " << o.norm_target << ", reduction "
                    << int(o.reduction));
      auto in = f.inputs(o, true);
      // An upstream gradient per patch for "none" (the loss is then sum(u * c * err)).
      std::vector<double> upstream(static_cast<std::size_t>(count));
      for (std::int64_t i = 0; i < count; ++i)
        upstream[static_cast<std::size_t>(i)] = 0.5 + 0.1 * static_cast<double>(i % 7);
      const bool none = o.reduction == loss_reduction::none;
      const double one = 1.0;
      const double denominator = mwm::steps::loss_denominator(
          o.reduction, mwm::coefficient_total(in.mask, in.weight, count));
      std::vector<double> grad(f.pred_vectors.size(), 123.0);
      run_gradients(in, none ? upstream.data() : &one, denominator, grad.data(),
                    f.vector_strides());
      auto objective = [&] {
        std::vector<double> patches;
        const double reduced = run_forward(in, &patches);
        if (!none) return reduced;
        double s = 0;
        for (std::size_t i = 0; i < patches.size(); ++i) s += upstream[i] * patches[i];
        return s;
      };
      auto& values = f.pred_vectors;
      for (std::size_t e = 0; e < values.size(); ++e) {
        const double keep = values[e];
        const double h = 1e-6;
        values[e] = keep + h;
        const double up = objective();
        values[e] = keep - h;
        const double down = objective();
        values[e] = keep;
        REQUIRE(grad[e] == Approx((up - down) / (2 * h)).epsilon(1e-5).margin(1e-8));
      }
    }
  }
}

TEST_CASE("unmasked patches get a zero gradient and are never read", "[loss]") {
  const auto g = mwm::make_geometry_2d(1, 4, 4, 2, 2);
  fixture f(g, 1, 3);
  f.mask = {1, 0, 0, 1};
  const double nan = std::numeric_limits<double>::quiet_NaN();
  // NaN in the target and prediction of patch 1 (unmasked): outside the loss, never read.
  f.target[static_cast<std::size_t>(dense_index(g, 0, 0, 0, 0, 2))] = nan;
  f.pred_vectors[4] = nan;
  const mwm::loss_options o{recon_error::mse, true, loss_reduction::mean};
  auto in = f.inputs(o, false);
  const double loss = run_forward(in);
  CHECK(std::isfinite(loss));
  std::vector<double> grad(f.pred_vectors.size(), 7.0);
  const double one = 1.0;
  run_gradients(in, &one, 2.0, grad.data(), f.vector_strides());
  for (std::size_t e = 4; e < 12; ++e) CHECK(grad[e] == 0.0);
  for (std::size_t e = 0; e < 4; ++e) CHECK(grad[e] != 0.0);
}

TEST_CASE("a non-finite target in a patch of the loss is reported by its index", "[loss]") {
  const auto g = mwm::make_geometry_2d(1, 4, 4, 2, 2);
  for (bool norm : {false, true})
    for (double bad :
         {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
      fixture f(g, 2, 4);
      f.mask.assign(8, 1);
      f.target[static_cast<std::size_t>(dense_index(g, 1, 0, 0, 3, 1))] = bad;  // b 1, patch 2
      auto in = f.inputs(mwm::loss_options{recon_error::l1, norm, loss_reduction::mean}, false);
      std::vector<double> losses;
      // 2 bands of 2 patches per sample: patch 6 is the first of band 3.
      CHECK(run_losses(in, 0, 4, losses) == 6);
      CHECK(run_losses(in, 0, 3, losses) == -1);
    }
  // A non-finite prediction is not a target error: it propagates into the loss.
  fixture f(g, 1, 4);
  f.mask.assign(4, 1);
  f.pred_vectors[0] = std::numeric_limits<double>::infinity();
  auto in = f.inputs(mwm::loss_options{}, false);
  std::vector<double> losses;
  CHECK(run_losses(in, 0, 2, losses) == -1);
  CHECK(std::isinf(losses[0]));
}

TEST_CASE("reductions: no masked patch gives NaN for mean and 0 for mean_eps", "[loss]") {
  const auto g = mwm::make_geometry_2d(1, 4, 4, 2, 2);
  fixture f(g, 1, 6);
  f.mask.assign(4, 0);
  CHECK(std::isnan(run_forward(
      f.inputs(mwm::loss_options{recon_error::mse, false, loss_reduction::mean}, false))));
  CHECK(run_forward(f.inputs(mwm::loss_options{recon_error::mse, false, loss_reduction::mean_eps},
                             false)) == 0.0);
}

TEST_CASE("loss arguments are validated with the argument named", "[loss]") {
  const auto single = mwm::make_geometry_2d(1, 4, 4, 1, 1);
  const mwm::loss_options normalized{recon_error::mse, true, loss_reduction::mean};
  CHECK_THAT(mwm_error_message([&] { mwm::validate_loss_geometry(single, normalized); }),
             Catch::Matchers::StartsWith("mwm: patch vector size = 1: norm_target needs"));
  CHECK(
      mwm_error_message([&] { mwm::validate_loss_geometry(single, mwm::loss_options{}); }).empty());
  CHECK_THAT(mwm_error_message([] { mwm::make_geometry_2d(3, 224, 220, 16, 16); }),
             Catch::Matchers::StartsWith("mwm: image width = 220: must be divisible by"));
  CHECK_THAT(mwm_error_message([] { mwm::make_geometry_3d(1, 100, 128, 128, 16, 16, 16); }),
             Catch::Matchers::StartsWith("mwm: image depth = 100: must be divisible by"));
}

// finish_loss on a forward over every band: the reduced value, or the mwm::error it throws.
template <typename Acc, typename P, typename T>
std::string finish_message(const mwm::loss_inputs<Acc, P, T>& in, double* value = nullptr) {
  std::vector<Acc> losses;
  const std::int64_t bad = run_losses(in, 0, mwm::band_count(in.geometry, in.batch), losses);
  return mwm_error_message([&] {
    const Acc loss = mwm::finish_loss(in, losses.data(), bad);
    if (value) *value = static_cast<double>(loss);
  });
}

TEST_CASE("finish_loss names a non-finite prediction, weight or overflow and its patch", "[loss]") {
  const auto g = mwm::make_geometry_2d(3, 8, 12, 4, 4);  // 6 patches of 48 values
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  for (auto reduction : {loss_reduction::mean, loss_reduction::mean_eps, loss_reduction::sum,
                         loss_reduction::none}) {
    mwm::loss_options error_mode{recon_error::mse, true, reduction};
    mwm::loss_options propagate = error_mode;
    propagate.nonfinite = mwm::nonfinite_policy::propagate;
    CHECK(error_mode.nonfinite == mwm::nonfinite_policy::error);  // the default

    // A NaN prediction in patch 2 of sample 1 (flat 8), masked.
    fixture f(g, 2, 21);
    f.mask.assign(12, 1);
    f.mask[7] = 0;
    f.pred_vectors[static_cast<std::size_t>(8 * 48 + 5)] = nan;
    f.pred_vectors[static_cast<std::size_t>(10 * 48)] = inf;  // a later one is not named
    f.pred_vectors[static_cast<std::size_t>(7 * 48)] = nan;   // unmasked: never read
    CHECK_THAT(finish_message(f.inputs(error_mode, true)),
               Catch::Matchers::StartsWith("mwm: pred has a non-finite value (NaN or Inf) in "
                                           "sample 1, patch 2, which the loss reads") &&
                   Catch::Matchers::Contains("nonfinite = \"propagate\""));
    double value = 0.0;
    CHECK(finish_message(f.inputs(propagate, true), &value).empty());
    if (reduction != loss_reduction::none) CHECK(std::isnan(value));
    CHECK(mwm::steps::patch_loss_fault(f.inputs(error_mode, true), 8, nan) ==
          mwm::loss_fault::pred);

    // A NaN weight in a masked patch, an infinite one in an unmasked patch (not read).
    fixture w(g, 2, 22);
    w.mask.assign(12, 1);
    w.mask[1] = 0;
    w.weight[1] = inf;
    w.weight[4] = nan;
    CHECK_THAT(finish_message(w.inputs(error_mode, true)),
               Catch::Matchers::StartsWith("mwm: weight of sample 0, patch 4 = nan: must be "
                                           "finite where mask is True"));
    CHECK(finish_message(w.inputs(propagate, true)).empty());
    CHECK(finish_message(w.inputs(error_mode, false)).empty());  // no weights: all finite

    // Finite inputs whose squared error overflows double: the loss of that patch overflows.
    fixture o(g, 1, 23);
    o.mask.assign(6, 1);
    for (std::size_t e = 3 * 48; e < 4 * 48; ++e) o.pred_vectors[e] = 1e200;
    mwm::loss_options raw = error_mode;
    raw.norm_target = false;
    CHECK_THAT(finish_message(o.inputs(raw, false)),
               Catch::Matchers::StartsWith("mwm: the loss of sample 0, patch 3 overflows "
                                           "float64 (pred, target and weight are finite"));
    mwm::loss_options raw_propagate = raw;
    raw_propagate.nonfinite = mwm::nonfinite_policy::propagate;
    CHECK(finish_message(o.inputs(raw_propagate, false)).empty());

    // A non-finite target is reported under either policy.
    fixture t(g, 1, 24);
    t.mask.assign(6, 1);
    t.target[static_cast<std::size_t>(dense_index(g, 0, 2, 0, 5, 9))] = nan;  // patch 5
    for (const auto& o2 : {error_mode, propagate})
      CHECK_THAT(finish_message(t.inputs(o2, false)),
                 Catch::Matchers::StartsWith("mwm: target has a non-finite value (NaN or Inf) "
                                             "in sample 0, patch 5"));
  }
}

TEST_CASE("finish_loss: an overflowing sum of finite patch losses, and mean's documented 0/0",
          "[loss]") {
  const auto g = mwm::make_geometry_2d(3, 8, 12, 4, 4);
  fixture f(g, 2, 25);
  f.mask.assign(12, 1);
  // Each patch: err = (1.5e153 - t)^2 ~ 2.25e306, times weight 20: finite; 12 of them: not.
  for (auto& v : f.pred_vectors) v = 1.5e153;
  for (auto& w : f.weight) w = 20.0;
  const mwm::loss_options sum{recon_error::mse, false, loss_reduction::sum};
  CHECK_THAT(finish_message(f.inputs(sum, true)),
             Catch::Matchers::StartsWith("mwm: the reduced loss overflows float64 (every "
                                         "patch's loss is finite, their sum is not)"));
  // reduction none returns the finite per-patch losses: nothing to report.
  const mwm::loss_options none{recon_error::mse, false, loss_reduction::none};
  CHECK(finish_message(f.inputs(none, true)).empty());

  // Nothing masked: mean is 0/0 = NaN (MAE's semantics), returned even under "error".
  f.mask.assign(12, 0);
  double value = 0.0;
  CHECK(finish_message(f.inputs(mwm::loss_options{}, true), &value).empty());
  CHECK(std::isnan(value));
  const mwm::loss_options eps{recon_error::mse, false, loss_reduction::mean_eps};
  CHECK(finish_message(f.inputs(eps, true), &value).empty());
  CHECK(value == 0.0);
}

TEST_CASE("three image rows interleave into patch-vector order, vector body and tail", "[loss]") {
  // The float rows take SSE2 shuffles four pixels at a time, the tail and other types a loop:
  // every count from 0 to 13 covers both, and both must be the plain permutation.
  for (std::int64_t count = 0; count <= 13; ++count) {
    std::vector<float> rows(static_cast<std::size_t>(3 * count));
    for (std::size_t k = 0; k < rows.size(); ++k) rows[k] = 0.5f + static_cast<float>(k) * 1.25f;
    const float* r0 = rows.data();
    const float* r1 = r0 + count;
    const float* r2 = r1 + count;
    std::vector<float> out(static_cast<std::size_t>(3 * count) + 1, -7.0f);
    mwm::detail::interleave_three_rows(r0, r1, r2, count, out.data());
    std::vector<double> wide(out.size(), -7.0);
    mwm::detail::interleave_three_rows(r0, r1, r2, count, wide.data());
    for (std::int64_t k = 0; k < count; ++k)
      for (int c = 0; c < 3; ++c) {
        const float expected = (c == 0 ? r0 : c == 1 ? r1 : r2)[k];
        REQUIRE(out[static_cast<std::size_t>(3 * k + c)] == expected);
        REQUIRE(wide[static_cast<std::size_t>(3 * k + c)] == static_cast<double>(expected));
      }
    REQUIRE(out.back() == -7.0f);  // nothing written past the end
  }
}

namespace {

// The gradient the forward writes for grad_output = 1 (band_losses with a unit_gradient, bands
// split at `cut` as two threads would run them) next to band_gradients with upstream 1.
template <typename Acc, typename P, typename T>
void require_unit_gradient_bits(const mwm::loss_inputs<Acc, P, T>& in, const mwm::patch_strides& gs,
                                std::size_t elements, std::int64_t cut) {
  const std::int64_t count = in.batch * in.geometry.grid.num_patches();
  const std::int64_t bands = mwm::band_count(in.geometry, in.batch);
  const Acc denominator = mwm::steps::loss_denominator(
      in.options.reduction, mwm::coefficient_total(in.mask, in.weight, count));
  REQUIRE(mwm::fused_gradient_exact(denominator));
  const Acc one = Acc(1);
  std::vector<P> expected(elements, P(7));
  run_gradients(in, &one, denominator, expected.data(), gs);

  std::vector<P> fused(elements, P(7));
  const mwm::unit_gradient<Acc, P> gradient{denominator, fused.data(), gs};
  std::vector<Acc> scratch(static_cast<std::size_t>(mwm::band_scratch_size(in.geometry)));
  std::vector<Acc> losses(static_cast<std::size_t>(count), Acc(-1));
  REQUIRE(mwm::band_losses(in, 0, cut, losses.data(), scratch.data(), &gradient) == -1);
  REQUIRE(mwm::band_losses(in, cut, bands, losses.data(), scratch.data(), &gradient) == -1);
  std::vector<Acc> plain;
  REQUIRE(run_losses(in, 0, bands, plain) == -1);
  REQUIRE(std::memcmp(losses.data(), plain.data(), losses.size() * sizeof(Acc)) == 0);
  REQUIRE(std::memcmp(fused.data(), expected.data(), elements * sizeof(P)) == 0);
}

}  // namespace

TEST_CASE("the forward's gradient for grad_output 1 has band_gradients' bits", "[loss]") {
  std::uint64_t seed = 70;
  for (const auto& lc : geometries()) {
    fixture f(lc.geometry, lc.batch, ++seed);
    const auto& g = f.g;
    const std::int64_t cut = mwm::band_count(g, f.batch) / 2;
    for (const auto& o : all_options()) {
      if (o.reduction == loss_reduction::none) continue;
      for (bool weighted : {false, true}) {
        INFO("P = " << g.patch_vector_size() << ", error " << int(o.error) << ", norm "
                    << o.norm_target << ", reduction " << int(o.reduction) << ", weighted "
                    << weighted);
        // Patch-vector predictions and gradient: read and written in place.
        const auto in = f.inputs(o, weighted);
        require_unit_gradient_bits(in, f.vector_strides(), f.pred_vectors.size(), cut);
        // Image-layout predictions and gradient: gathered and scattered.
        auto image = in;
        image.pred_strides = f.target_strides();
        require_unit_gradient_bits(image, f.target_strides(), f.pred_vectors.size(), cut);
      }
    }
  }
}

TEST_CASE("the forward's gradient in float, with factors that underflow to zero", "[loss]") {
  const auto g = mwm::make_geometry_2d(3, 8, 12, 4, 4);
  fixture f(g, 2, 90);
  std::vector<float> pred(f.pred_vectors.begin(), f.pred_vectors.end());
  std::vector<float> target(f.target.begin(), f.target.end());
  std::vector<float> weight(f.weight.begin(), f.weight.end());
  // c / sum(c) underflows to 0 for the tiny weights: the backward writes zeros for them without
  // reading, and so must the forward.
  for (std::size_t i = 0; i < weight.size(); i += 3) weight[i] = 1e-30f;
  weight[1] = 1e30f;
  f.mask[1] = 1;
  for (const auto& o : all_options()) {
    if (o.reduction == loss_reduction::none) continue;
    const auto in = f.inputs_over<float>(pred.data(), target.data(), weight.data(), o);
    require_unit_gradient_bits(in, f.vector_strides(), pred.size(), 1);
  }
}
