// Fuzzes the masked reconstruction loss of include/mwm/loss.hpp (forward and backward) over 2D
// and 3D geometries, patch and image layouts (dense, transposed, channels-last, padded), target
// normalization, mse/l1, optional weights, every reduction, both non-finite policies and three
// (accumulation, pred, target) type combinations, with values that are sometimes NaN, infinite
// or large enough to overflow. Invalid geometries must throw mwm::error; valid requests must
// agree with a plain double-precision reference written here, keep their reductions consistent,
// give the same bits for any split into bands and on the per-patch (CUDA) path, never write
// outside the layout, give zero gradients to patches outside the loss, and report non-finite
// results the way finish_loss documents.
#include <fuzzer/FuzzedDataProvider.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "mwm/masking.hpp"

namespace {

enum class image_layout { dense, channels_last, padded };
enum class patch_layout { dense, transposed, padded };

struct request {
  bool volume = false;
  std::int64_t batch = 0;
  std::int64_t channels = 1;
  std::int64_t image[3] = {1, 1, 1};  // d, h, w
  std::int64_t patch[3] = {1, 1, 1};
  bool pred_in_patches = true;
  patch_layout pred_patches = patch_layout::dense;
  image_layout pred_image = image_layout::dense;
  image_layout target_image = image_layout::dense;
  bool weighted = false;
  bool clean = true;  // no NaN, infinity or overflowing value anywhere
  int types = 0;      // 0: float/float/float, 1: double/double/double, 2: double/float/double
  mwm::loss_options options;
};

// Element offsets of a (B, C, D, H, W) image in one of the layouts.
struct image_offsets {
  std::int64_t b, c, d, h, w, size;
};

image_offsets image_strides(image_layout layout, std::int64_t B, std::int64_t C, std::int64_t D,
                            std::int64_t H, std::int64_t W) {
  const std::int64_t total = B * C * D * H * W;
  if (layout == image_layout::channels_last) return {D * H * W * C, 1, H * W * C, W * C, C, total};
  const std::int64_t f = layout == image_layout::padded ? 2 : 1;
  return {f * C * D * H * W, f * D * H * W, f * H * W, f * W, f, f * total};
}

struct patch_offsets {
  std::int64_t b, n, e, size;
};

patch_offsets patch_strides_of(patch_layout layout, std::int64_t B, std::int64_t N,
                               std::int64_t P) {
  if (layout == patch_layout::transposed) return {N * P, 1, N, B * N * P};
  const std::int64_t f = layout == patch_layout::padded ? 2 : 1;
  return {f * N * P, f * P, f, f * B * N * P};
}

template <typename Acc>
double huge_value() {
  return sizeof(Acc) == sizeof(float) ? 1e20 : 1e200;
}

// Small multiples of 1/4 (exact in float), or now and then a special value.
template <typename Acc>
double fuzzed_value(FuzzedDataProvider& data, bool clean) {
  const std::uint8_t byte = data.ConsumeIntegral<std::uint8_t>();
  if (!clean) {
    switch (byte) {
      case 250:
        return std::numeric_limits<double>::quiet_NaN();
      case 251:
        return std::numeric_limits<double>::infinity();
      case 252:
        return -std::numeric_limits<double>::infinity();
      case 253:
        return huge_value<Acc>();
      case 254:
        return -huge_value<Acc>();
      default:
        break;
    }
  }
  return static_cast<double>(static_cast<int>(byte % 61) - 30) * 0.25;
}

template <typename Acc>
double fuzzed_weight(FuzzedDataProvider& data, bool clean) {
  const std::uint8_t byte = data.ConsumeIntegral<std::uint8_t>();
  if (!clean && byte == 255) return std::numeric_limits<double>::quiet_NaN();
  if (!clean && byte == 254) return std::numeric_limits<double>::infinity();
  return static_cast<double>(byte % 17) * 0.25;  // [0, 4], zero included
}

bool same_value(double a, double b) { return a == b || (std::isnan(a) && std::isnan(b)); }

// The loss's order over patches, level by level: each zero-padded chunk of 256 values is
// added pairwise at distance 128, 64, ..., 1; the chunk totals are the next level; at least one
// level; nothing gives 0.
template <typename Acc>
Acc chunk_tree_sum(std::vector<Acc> level) {
  if (level.empty()) return Acc(0);
  do {
    std::vector<Acc> next;
    for (std::size_t start = 0; start < level.size(); start += 256) {
      Acc chunk[256];
      for (std::size_t t = 0; t < 256; ++t)
        chunk[t] = start + t < level.size() ? level[start + t] : Acc(0);
      for (std::size_t half = 128; half > 0; half /= 2)
        for (std::size_t t = 0; t < half; ++t) chunk[t] = chunk[t] + chunk[t + half];
      next.push_back(chunk[0]);
    }
    level = next;
  } while (level.size() > 1);
  return level[0];
}

bool has_text(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Everything one valid request needs, with the reference computed in double.
template <typename Acc, typename P, typename T>
struct loss_case {
  const request& r;
  mwm::patch_geometry g;
  std::int64_t n = 0, p = 0, count = 0;
  image_offsets ts{};
  image_offsets pis{};  // pred in image layout
  patch_offsets pps{};  // pred in patch layout
  std::vector<T> target;
  std::vector<P> pred;
  std::vector<std::uint8_t> mask;
  std::vector<Acc> weight;
  mwm::loss_inputs<Acc, P, T> in;

  loss_case(const request& req, const mwm::patch_geometry& geometry) : r(req), g(geometry) {}

  // Offsets of element e of patch vector (b, patch) in the target and in the prediction,
  // computed the plain way: patch coordinates, then (pd, ph, pw, c) with the channel fastest.
  void image_coordinates(std::int64_t patch, std::int64_t e, std::int64_t* c, std::int64_t* d,
                         std::int64_t* h, std::int64_t* w) const {
    const std::int64_t gw = patch % g.grid.width;
    const std::int64_t gh = (patch / g.grid.width) % g.grid.height;
    const std::int64_t gd = patch / (g.grid.width * g.grid.height);
    *c = e % g.channels;
    const std::int64_t pixel = e / g.channels;
    const std::int64_t pw = pixel % g.patch_width;
    const std::int64_t ph = (pixel / g.patch_width) % g.patch_height;
    const std::int64_t pd = pixel / (g.patch_width * g.patch_height);
    *d = gd * g.patch_depth + pd;
    *h = gh * g.patch_height + ph;
    *w = gw * g.patch_width + pw;
  }
  std::int64_t target_offset(std::int64_t b, std::int64_t patch, std::int64_t e) const {
    std::int64_t c, d, h, w;
    image_coordinates(patch, e, &c, &d, &h, &w);
    return b * ts.b + c * ts.c + d * ts.d + h * ts.h + w * ts.w;
  }
  std::int64_t pred_offset(std::int64_t b, std::int64_t patch, std::int64_t e) const {
    if (r.pred_in_patches) return b * pps.b + patch * pps.n + e * pps.e;
    std::int64_t c, d, h, w;
    image_coordinates(patch, e, &c, &d, &h, &w);
    return b * pis.b + c * pis.c + d * pis.d + h * pis.h + w * pis.w;
  }
  double target_at(std::int64_t i, std::int64_t e) const {
    return static_cast<double>(target[static_cast<std::size_t>(target_offset(i / n, i % n, e))]);
  }
  double pred_at(std::int64_t i, std::int64_t e) const {
    return static_cast<double>(pred[static_cast<std::size_t>(pred_offset(i / n, i % n, e))]);
  }
  double coefficient(std::int64_t i) const {
    if (!mask[static_cast<std::size_t>(i)]) return 0.0;
    return r.weighted ? static_cast<double>(weight[static_cast<std::size_t>(i)]) : 1.0;
  }

  void fill(FuzzedDataProvider& data) {
    n = g.grid.num_patches();
    p = g.patch_vector_size();
    count = r.batch * n;
    const std::int64_t D = g.image_depth(), H = g.image_height(), W = g.image_width();
    ts = image_strides(r.target_image, r.batch, g.channels, D, H, W);
    pis = image_strides(r.pred_image, r.batch, g.channels, D, H, W);
    pps = patch_strides_of(r.pred_patches, r.batch, n, p);
    // Padding holds NaN: a read outside the layout would show in the result.
    const double nan = std::numeric_limits<double>::quiet_NaN();
    target.assign(static_cast<std::size_t>(ts.size), static_cast<T>(nan));
    pred.assign(static_cast<std::size_t>(r.pred_in_patches ? pps.size : pis.size),
                static_cast<P>(nan));
    for (std::int64_t i = 0; i < count; ++i)
      for (std::int64_t e = 0; e < p; ++e) {
        target[static_cast<std::size_t>(target_offset(i / n, i % n, e))] =
            static_cast<T>(fuzzed_value<Acc>(data, r.clean));
        pred[static_cast<std::size_t>(pred_offset(i / n, i % n, e))] =
            static_cast<P>(fuzzed_value<Acc>(data, r.clean));
      }
    mask.resize(static_cast<std::size_t>(count));
    for (auto& m : mask) m = data.ConsumeBool() ? 1 : 0;
    if (r.weighted) {
      weight.resize(static_cast<std::size_t>(count));
      for (auto& w : weight) w = static_cast<Acc>(fuzzed_weight<Acc>(data, r.clean));
    }
    in.geometry = g;
    in.batch = r.batch;
    in.pred = pred.data();
    in.pred_strides = r.pred_in_patches
                          ? mwm::vector_patch_strides(g, pps.b, pps.n, pps.e)
                          : mwm::image_patch_strides(g, pis.b, pis.c, pis.d, pis.h, pis.w);
    in.target = target.data();
    in.target_strides = mwm::image_patch_strides(g, ts.b, ts.c, ts.d, ts.h, ts.w);
    in.mask = mask.data();
    in.weight = r.weighted ? weight.data() : nullptr;
    in.options = r.options;
  }

  bool finite_patch(std::int64_t i, bool of_target) const {
    for (std::int64_t e = 0; e < p; ++e)
      if (!std::isfinite(of_target ? target_at(i, e) : pred_at(i, e))) return false;
    return true;
  }
  // Largest magnitude the loss reads in patch i (inputs beyond ~1e15 may overflow float sums).
  double largest_input(std::int64_t i) const {
    double m = std::fabs(coefficient(i));
    for (std::int64_t e = 0; e < p; ++e)
      m = std::fmax(m, std::fmax(std::fabs(target_at(i, e)), std::fabs(pred_at(i, e))));
    return m;
  }
  bool safe_patch(std::int64_t i) const {
    const double bound = sizeof(Acc) == sizeof(float) ? 1e15 : 1e150;
    return finite_patch(i, true) && finite_patch(i, false) && std::isfinite(coefficient(i)) &&
           largest_input(i) < bound;
  }

  // The normalized target element e of patch i (or the target itself), in double.
  void reference_target(std::int64_t i, std::vector<double>& t_hat) const {
    t_hat.resize(static_cast<std::size_t>(p));
    double mean = 0.0, var = 0.0;
    if (r.options.norm_target) {
      for (std::int64_t e = 0; e < p; ++e) mean += target_at(i, e);
      mean /= static_cast<double>(p);
      for (std::int64_t e = 0; e < p; ++e)
        var += (target_at(i, e) - mean) * (target_at(i, e) - mean);
      var /= static_cast<double>(p - 1);
    }
    for (std::int64_t e = 0; e < p; ++e)
      t_hat[static_cast<std::size_t>(e)] = r.options.norm_target
                                               ? (target_at(i, e) - mean) / std::sqrt(var + 1e-6)
                                               : target_at(i, e);
  }

  // c * err of patch i and the scale its rounding error is measured against.
  double reference_loss(std::int64_t i, double* scale) const {
    const double c = coefficient(i);
    *scale = 0.0;
    if (c == 0.0) return 0.0;
    std::vector<double> t_hat;
    reference_target(i, t_hat);
    double err = 0.0, size = 0.0;
    for (std::int64_t e = 0; e < p; ++e) {
      const double x = pred_at(i, e), t = t_hat[static_cast<std::size_t>(e)];
      const double d = x - t;
      const double magnitude = std::fabs(x) + std::fabs(t);
      if (r.options.error == mwm::recon_error::mse) {
        err += d * d;
        size += magnitude * magnitude;
      } else {
        err += std::fabs(d);
        size += magnitude;
      }
    }
    *scale = std::fabs(c) * size / static_cast<double>(p);
    return c * err / static_cast<double>(p);
  }
};

template <typename Acc>
double tolerance_of() {
  return sizeof(Acc) == sizeof(float) ? 2e-4 : 1e-10;
}

template <typename Acc, typename P, typename T>
void check_losses(loss_case<Acc, P, T>& k, FuzzedDataProvider& data) {
  const auto& in = k.in;
  const std::int64_t bands = mwm::band_count(k.g, k.r.batch);
  std::vector<Acc> scratch(static_cast<std::size_t>(mwm::band_scratch_size(k.g)));
  std::vector<Acc> losses(static_cast<std::size_t>(k.count), Acc(-7));
  const std::int64_t bad = mwm::band_losses(in, 0, bands, losses.data(), scratch.data());

  // A split into two band ranges gives the same bits, and the first bad target of the two.
  const std::int64_t split = data.ConsumeIntegralInRange<std::int64_t>(0, bands);
  std::vector<Acc> split_losses(static_cast<std::size_t>(k.count), Acc(-9));
  const std::int64_t bad_low = mwm::band_losses(in, 0, split, split_losses.data(), scratch.data());
  const std::int64_t bad_high =
      mwm::band_losses(in, split, bands, split_losses.data(), scratch.data());
  MWM_FUZZ_CHECK((bad_low >= 0 ? bad_low : bad_high) == bad);

  // The forward runs in Acc on the stored values, so its tolerance depends on Acc alone.
  const double patch_tol = tolerance_of<Acc>();
  std::int64_t expected_bad = -1;
  std::int64_t first_non_finite = -1;
  bool all_safe = true;
  double reference_sum = 0.0, reference_scale = 0.0, reference_total = 0.0;
  for (std::int64_t i = 0; i < k.count; ++i) {
    const Acc got = losses[static_cast<std::size_t>(i)];
    MWM_FUZZ_CHECK(same_value(static_cast<double>(got),
                              static_cast<double>(split_losses[static_cast<std::size_t>(i)])));
    const double c = k.coefficient(i);
    // The per-patch functions that the CUDA kernels run give the same bits, and the same
    // verdict on the target.
    Acc device = Acc(0);
    const bool device_ok = mwm::steps::weighted_patch_loss(
        mwm::steps::patch_coefficient(in.mask, in.weight, i),
        in.pred + mwm::steps::patch_start(in.pred_strides, k.g.grid, i / k.n, i % k.n),
        in.pred_strides,
        in.target + mwm::steps::patch_start(in.target_strides, k.g.grid, i / k.n, i % k.n),
        in.target_strides, k.g, in.options, &device);
    MWM_FUZZ_CHECK(same_value(static_cast<double>(device), static_cast<double>(got)));
    if (c == 0.0) {
      MWM_FUZZ_CHECK(got == Acc(0));  // not read, loss exactly zero
      MWM_FUZZ_CHECK(device_ok);
      continue;
    }
    if (!std::isnan(c)) reference_total += c;
    const bool target_ok = k.finite_patch(i, true);
    const bool inputs_finite = target_ok && k.finite_patch(i, false) && std::isfinite(c);
    MWM_FUZZ_CHECK(device_ok == target_ok);
    if (!target_ok && expected_bad < 0) expected_bad = i;
    // Any non-finite input the loss reads makes its loss non-finite (never silently finite).
    if (!inputs_finite) MWM_FUZZ_CHECK(!std::isfinite(static_cast<double>(got)));
    if (!std::isfinite(static_cast<double>(got)) && first_non_finite < 0) first_non_finite = i;
    // The fault the forward would name: target, weight, pred, then overflow.
    const mwm::loss_fault fault = mwm::steps::patch_loss_fault(in, i, got);
    if (std::isfinite(static_cast<double>(got))) {
      MWM_FUZZ_CHECK(fault == mwm::loss_fault::none);
    } else if (!target_ok) {
      MWM_FUZZ_CHECK(fault == mwm::loss_fault::target);
    } else if (!std::isfinite(c)) {
      MWM_FUZZ_CHECK(fault == mwm::loss_fault::weight);
    } else if (!k.finite_patch(i, false)) {
      MWM_FUZZ_CHECK(fault == mwm::loss_fault::pred);
    } else {
      MWM_FUZZ_CHECK(fault == mwm::loss_fault::overflow);
      MWM_FUZZ_CHECK(!k.safe_patch(i));  // an overflow needs a huge input
    }
    if (!k.safe_patch(i)) {
      all_safe = false;
      continue;
    }
    // Finite, moderate inputs: a finite loss equal to the double reference.
    double scale = 0.0;
    const double expected = k.reference_loss(i, &scale);
    MWM_FUZZ_CHECK(std::isfinite(static_cast<double>(got)));
    MWM_FUZZ_CHECK(std::fabs(static_cast<double>(got) - expected) <= patch_tol * scale + 1e-300);
    reference_sum += expected;
    reference_scale += scale;
  }
  MWM_FUZZ_CHECK(bad == expected_bad);

  // Reductions: `none` is the per-patch losses; `sum` adds them in the contract's order
  // (loss_order.hpp: zero-padded chunks of 256 by the halving tree, level after level), written
  // out here independently; `mean` and `mean_eps` divide that sum by sum(c) (+1e-8), summed the
  // same way. Each is checked bit for bit.
  const Acc total = mwm::coefficient_total(in.mask, in.weight, k.count);
  std::vector<Acc> coefficients(static_cast<std::size_t>(k.count));
  for (std::int64_t i = 0; i < k.count; ++i)
    coefficients[static_cast<std::size_t>(i)] =
        mwm::steps::patch_coefficient(in.mask, in.weight, i);
  MWM_FUZZ_CHECK(same_value(total, chunk_tree_sum(coefficients)));
  const Acc plain_sum = chunk_tree_sum(losses);
  const Acc sum = mwm::reduce_patch_losses(losses.data(), k.count, mwm::loss_reduction::sum, total);
  const Acc none =
      mwm::reduce_patch_losses(losses.data(), k.count, mwm::loss_reduction::none, total);
  const Acc mean =
      mwm::reduce_patch_losses(losses.data(), k.count, mwm::loss_reduction::mean, total);
  const Acc mean_eps =
      mwm::reduce_patch_losses(losses.data(), k.count, mwm::loss_reduction::mean_eps, total);
  MWM_FUZZ_CHECK(same_value(sum, plain_sum) && same_value(none, plain_sum));
  MWM_FUZZ_CHECK(same_value(mean, plain_sum / total));
  MWM_FUZZ_CHECK(same_value(mean_eps, plain_sum / (total + static_cast<Acc>(1e-8))));
  if (all_safe) {
    MWM_FUZZ_CHECK(std::fabs(static_cast<double>(total) - reference_total) <=
                   1e-6 * reference_total);
    MWM_FUZZ_CHECK(std::fabs(static_cast<double>(sum) - reference_sum) <=
                   patch_tol * reference_scale + 1e-300);
    if (reference_total > 0.0) {
      MWM_FUZZ_CHECK(std::fabs(static_cast<double>(mean) - reference_sum / reference_total) <=
                     (patch_tol * reference_scale + 1e-300) / reference_total +
                         1e-6 * std::fabs(reference_sum / reference_total));
    }
  }

  // finish_loss: the reduced value, or the documented error.
  const mwm::loss_reduction reduction = in.options.reduction;
  const Acc reduced = reduction == mwm::loss_reduction::mean       ? mean
                      : reduction == mwm::loss_reduction::mean_eps ? mean_eps
                      : reduction == mwm::loss_reduction::sum      ? sum
                                                                   : Acc(0);
  std::string expected_message;  // empty: no error expected
  const std::string place = [&](std::int64_t i) {
    return "sample " + std::to_string(i / k.n) + ", patch " + std::to_string(i % k.n);
  }(bad >= 0 ? bad : (first_non_finite >= 0 ? first_non_finite : 0));
  if (bad >= 0) {
    expected_message = "target has a non-finite value (NaN or Inf) in " + place;
  } else if (in.options.nonfinite == mwm::nonfinite_policy::error &&
             (reduction == mwm::loss_reduction::none ? first_non_finite >= 0
                                                     : !std::isfinite(double(reduced)))) {
    if (first_non_finite >= 0) {
      const std::int64_t i = first_non_finite;
      if (!std::isfinite(k.coefficient(i)))
        expected_message = "weight of " + place + " = ";
      else if (!k.finite_patch(i, false))
        expected_message = "pred has a non-finite value (NaN or Inf) in " + place;
      else
        expected_message = "the loss of " + place + " overflows";
    } else if (!(reduction == mwm::loss_reduction::mean && total == Acc(0))) {
      expected_message = "the reduced loss overflows";
    }
  }
  std::string message;
  Acc finished = Acc(0);
  try {
    finished = mwm::finish_loss(in, losses.data(), bad);
  } catch (const mwm::error& e) {
    message = e.what();
  }
  if (expected_message.empty()) {
    MWM_FUZZ_CHECK(message.empty());
    MWM_FUZZ_CHECK(same_value(finished, reduced));
    // What error mode lets through is finite, or mean's documented 0/0.
    if (in.options.nonfinite == mwm::nonfinite_policy::error && !std::isfinite(double(finished)))
      MWM_FUZZ_CHECK(reduction == mwm::loss_reduction::mean && total == Acc(0));
  } else {
    MWM_FUZZ_CHECK(has_text(message, "mwm: " + expected_message));
    if (bad < 0) MWM_FUZZ_CHECK(has_text(message, "propagate"));
  }
}

template <typename Acc, typename P, typename T>
void check_gradients(loss_case<Acc, P, T>& k, FuzzedDataProvider& data) {
  const auto& in = k.in;
  const bool per_patch = in.options.reduction == mwm::loss_reduction::none;
  std::vector<Acc> upstream(static_cast<std::size_t>(per_patch ? k.count : 1));
  for (auto& u : upstream)
    u = static_cast<Acc>(static_cast<int>(data.ConsumeIntegralInRange<int>(-8, 8)) * 0.25);
  const Acc total = mwm::coefficient_total(in.mask, in.weight, k.count);
  const Acc denominator = mwm::steps::loss_denominator(in.options.reduction, total);

  // The gradient has the prediction's layout; padding keeps a sentinel it must not lose.
  const P sentinel = static_cast<P>(1234.5);
  std::vector<P> grad(k.pred.size(), sentinel), split(k.pred.size(), sentinel),
      device(k.pred.size(), sentinel);
  const mwm::patch_strides& gs = in.pred_strides;
  const std::int64_t bands = mwm::band_count(k.g, k.r.batch);
  std::vector<Acc> scratch(static_cast<std::size_t>(mwm::band_scratch_size(k.g)));
  mwm::band_gradients(in, upstream.data(), denominator, grad.data(), gs, 0, bands, scratch.data());
  const std::int64_t cut = data.ConsumeIntegralInRange<std::int64_t>(0, bands);
  mwm::band_gradients(in, upstream.data(), denominator, split.data(), gs, 0, cut, scratch.data());
  mwm::band_gradients(in, upstream.data(), denominator, split.data(), gs, cut, bands,
                      scratch.data());
  for (std::int64_t i = 0; i < k.count; ++i) {
    const Acc factor = mwm::steps::gradient_factor(
        per_patch ? upstream[static_cast<std::size_t>(i)] : upstream[0],
        mwm::steps::patch_coefficient(in.mask, in.weight, i), denominator);
    mwm::steps::weighted_patch_gradient(
        factor, in.pred + mwm::steps::patch_start(in.pred_strides, k.g.grid, i / k.n, i % k.n),
        in.pred_strides,
        in.target + mwm::steps::patch_start(in.target_strides, k.g.grid, i / k.n, i % k.n),
        in.target_strides, k.g, in.options,
        device.data() + mwm::steps::patch_start(gs, k.g.grid, i / k.n, i % k.n), gs);
  }

  std::vector<char> in_layout(grad.size(), 0);
  // The gradient is rounded to P: float tolerance when either type is float.
  const double tol = sizeof(Acc) == sizeof(float) || sizeof(P) == sizeof(float) ? 2e-4 : 1e-10;
  std::vector<double> t_hat;
  for (std::int64_t i = 0; i < k.count; ++i) {
    const double c = k.coefficient(i);
    const double up = static_cast<double>(upstream[per_patch ? static_cast<std::size_t>(i) : 0]);
    const double factor = up * c / static_cast<double>(denominator);
    // (A NaN weight in a masked patch makes the denominator NaN, and every gradient NaN, as
    // in the eager formula.)
    const bool outside = c == 0.0 && std::isfinite(static_cast<double>(denominator)) &&
                         static_cast<double>(denominator) != 0.0;
    const bool compare = k.safe_patch(i) && std::isfinite(factor);
    if (compare && c != 0.0) k.reference_target(i, t_hat);
    for (std::int64_t e = 0; e < k.p; ++e) {
      const auto at = static_cast<std::size_t>(k.pred_offset(i / k.n, i % k.n, e));
      in_layout[at] = 1;
      const double got = static_cast<double>(grad[at]);
      MWM_FUZZ_CHECK(same_value(got, static_cast<double>(split[at])));
      MWM_FUZZ_CHECK(same_value(got, static_cast<double>(device[at])));
      // Patches outside the loss get exactly zero (and are not read).
      if (outside) {
        MWM_FUZZ_CHECK(got == 0.0);
        continue;
      }
      if (!compare) continue;
      if (c == 0.0) {  // denominator 0 (nothing masked under mean): the eager 0/0
        continue;
      }
      const double r = k.pred_at(i, e) - t_hat[static_cast<std::size_t>(e)];
      const double magnitude =
          std::fabs(k.pred_at(i, e)) + std::fabs(t_hat[static_cast<std::size_t>(e)]);
      const double scale = std::fabs(factor) / static_cast<double>(k.p);
      double expected;
      if (in.options.error == mwm::recon_error::mse) {
        expected = 2.0 * r * factor / static_cast<double>(k.p);
        MWM_FUZZ_CHECK(std::isfinite(got));
        MWM_FUZZ_CHECK(std::fabs(got - expected) <= tol * 2.0 * scale * magnitude + 1e-300);
      } else {
        if (std::fabs(r) <= tol * magnitude) continue;  // the sign of a rounding residue
        expected = (r > 0 ? 1.0 : -1.0) * factor / static_cast<double>(k.p);
        MWM_FUZZ_CHECK(std::fabs(got - expected) <= tol * scale + 1e-300);
      }
    }
  }
  for (std::size_t j = 0; j < grad.size(); ++j)
    if (!in_layout[j]) {
      MWM_FUZZ_CHECK(grad[j] == sentinel && split[j] == sentinel && device[j] == sentinel);
    }
}

template <typename Acc, typename P, typename T>
void run(const request& r, const mwm::patch_geometry& g, FuzzedDataProvider& data) {
  loss_case<Acc, P, T> k(r, g);
  k.fill(data);
  check_losses(k, data);
  check_gradients(k, data);
}

constexpr mwm::loss_reduction reductions[] = {mwm::loss_reduction::mean,
                                              mwm::loss_reduction::mean_eps,
                                              mwm::loss_reduction::sum, mwm::loss_reduction::none};
constexpr image_layout image_layouts[] = {image_layout::dense, image_layout::channels_last,
                                          image_layout::padded};
constexpr patch_layout patch_layouts[] = {patch_layout::dense, patch_layout::transposed,
                                          patch_layout::padded};

// Usually a multiple of the patch size; sometimes anything (including 0), to reach validation.
std::int64_t fuzzed_extent(FuzzedDataProvider& data, std::int64_t patch, std::int64_t most) {
  if (data.ConsumeIntegralInRange<int>(0, 7) == 0)
    return data.ConsumeIntegralInRange<std::int64_t>(-1, most);
  const std::int64_t cells = data.ConsumeIntegralInRange<std::int64_t>(1, 4);
  return patch > 0 ? cells * patch : cells;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  FuzzedDataProvider data(bytes, size);
  request r;
  r.volume = data.ConsumeBool();
  r.batch = data.ConsumeIntegralInRange<std::int64_t>(0, 3);
  r.channels = data.ConsumeIntegralInRange<std::int64_t>(0, 3);
  const std::int64_t largest_patch = r.volume ? 3 : 5;
  for (int axis = r.volume ? 0 : 1; axis < 3; ++axis) {
    r.patch[axis] = data.ConsumeIntegralInRange<std::int64_t>(0, largest_patch);
    r.image[axis] = fuzzed_extent(data, r.patch[axis], r.volume ? 9 : 16);
  }
  r.pred_in_patches = data.ConsumeBool();
  r.pred_patches = data.PickValueInArray(patch_layouts);
  r.pred_image = data.PickValueInArray(image_layouts);
  r.target_image = data.PickValueInArray(image_layouts);
  r.weighted = data.ConsumeBool();
  r.clean = data.ConsumeIntegralInRange<int>(0, 3) != 0;
  r.types = data.ConsumeIntegralInRange<int>(0, 2);
  r.options.error = data.ConsumeBool() ? mwm::recon_error::l1 : mwm::recon_error::mse;
  r.options.norm_target = data.ConsumeBool();
  r.options.reduction = data.PickValueInArray(reductions);
  r.options.nonfinite =
      data.ConsumeBool() ? mwm::nonfinite_policy::propagate : mwm::nonfinite_policy::error;

  // What the core must accept, decided independently of it.
  bool valid = r.channels > 0;
  std::int64_t vector_size = r.channels;
  for (int axis = r.volume ? 0 : 1; axis < 3; ++axis) {
    valid = valid && r.patch[axis] > 0 && r.image[axis] > 0 && r.image[axis] % r.patch[axis] == 0;
    vector_size *= r.patch[axis];
  }
  valid = valid && !(r.options.norm_target && vector_size < 2);

  mwm::patch_geometry g;
  try {
    g = r.volume
            ? mwm::make_geometry_3d(r.channels, r.image[0], r.image[1], r.image[2], r.patch[0],
                                    r.patch[1], r.patch[2])
            : mwm::make_geometry_2d(r.channels, r.image[1], r.image[2], r.patch[1], r.patch[2]);
    mwm::validate_loss_geometry(g, r.options);
  } catch (const mwm::error& e) {
    MWM_FUZZ_CHECK(!valid);  // rejected with a named argument: the contract for invalid input
    MWM_FUZZ_CHECK(std::strncmp(e.what(), "mwm: ", 5) == 0);
    return 0;
  }
  MWM_FUZZ_CHECK(valid);
  MWM_FUZZ_CHECK(g.patch_vector_size() == vector_size);

  if (r.types == 0)
    run<float, float, float>(r, g, data);
  else if (r.types == 1)
    run<double, double, double>(r, g, data);
  else
    run<double, float, double>(r, g, data);
  return 0;
}
