// The C++ core called directly, for test_core_parity.py: reads one request as whitespace-separated
// tokens on stdin, runs the core function (no torch), and prints every output as text. Floats are
// printed with 9 significant digits, which round-trips float32 exactly.
//
// A grid is "2 H W" or "3 D H W".
//   scores    grid  B K  d h w  reduction threshold nan combine  nweights w...  values...
//   thresholds B N  count t...  nan  values...
//   quantiles  B N  count q...  nan  values...
//   masks     grid  B seed offset  kind ratio  nratios r...  rounding order coarse_factor
//             hard_share attention hint_pool_share hint_share weight_floor
//             block_min block_max block_min_aspect block_max_aspect nan
//             has_index index...  has_regions regions...  has_scores scores...
//   upsample  grid  fd fh fw invert  B  values (0/1)...
#include <mwm/masking.hpp>

#include <cstdint>
#include <cstdio>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

std::string word() {
  std::string s;
  if (!(std::cin >> s)) throw std::runtime_error("core_driver: unexpected end of input");
  return s;
}
std::int64_t integer() { return std::stoll(word()); }
std::uint64_t unsigned_integer() { return std::stoull(word()); }
double real() { return std::stod(word()); }

template <typename T>
std::vector<T> reals(std::int64_t count) {
  std::vector<T> out(static_cast<std::size_t>(count));
  for (auto& v : out) v = static_cast<T>(real());
  return out;
}

// "2 H W" or "3 D H W".
mwm::grid_shape read_grid() {
  const std::int64_t ndim = integer();
  if (ndim == 2) {
    const std::int64_t h = integer();
    return mwm::make_grid_2d(h, integer());
  }
  if (ndim != 3) throw std::runtime_error("core_driver: grid ndim " + std::to_string(ndim));
  const std::int64_t d = integer();
  const std::int64_t h = integer();
  return mwm::make_grid_3d(d, h, integer());
}

mwm::nan_policy read_nan() {
  const auto s = word();
  if (s == "error") return mwm::nan_policy::error;
  if (s == "zero") return mwm::nan_policy::zero;
  throw std::runtime_error("core_driver: nan policy " + s);
}

template <typename Enum>
Enum pick(const std::string& s, std::initializer_list<std::pair<const char*, Enum>> names) {
  for (const auto& n : names)
    if (s == n.first) return n.second;
  throw std::runtime_error("core_driver: unknown name " + s);
}

void print_floats(const char* name, const std::vector<float>& values) {
  std::printf("%s %zu", name, values.size());
  for (float v : values) std::printf(" %.9g", static_cast<double>(v));
  std::printf("\n");
}

template <typename T>
void print_integers(const char* name, const std::vector<T>& values) {
  std::printf("%s %zu", name, values.size());
  for (T v : values) std::printf(" %lld", static_cast<long long>(v));
  std::printf("\n");
}

void scores() {
  mwm::pooling_request r;
  r.grid = read_grid();
  r.batch = integer();
  r.prompts = integer();
  r.shape.depth = integer();
  r.shape.height = integer();
  r.shape.width = integer();
  using mwm::pool_reduction;
  r.options.reduction = pick<pool_reduction>(word(), {{"mean", pool_reduction::mean},
                                                      {"max", pool_reduction::max},
                                                      {"fraction", pool_reduction::fraction},
                                                      {"nearest", pool_reduction::nearest}});
  r.options.threshold = static_cast<float>(real());
  r.options.non_finite = read_nan();
  r.combine = pick<mwm::prompt_combine>(
      word(), {{"max", mwm::prompt_combine::max},
               {"weighted_sum", mwm::prompt_combine::weighted_sum}});
  r.prompt_weights = reals<float>(integer());
  const auto heat = reals<float>(r.batch * r.prompts * r.shape.num_pixels());
  std::vector<float> out(static_cast<std::size_t>(r.batch * r.grid.num_patches()));
  mwm::heatmaps_to_scores(r, heat.data(), out.data());
  print_floats("scores", out);
}

void regions(bool by_quantiles) {
  const std::int64_t batch = integer();
  const std::int64_t n = integer();
  const std::int64_t count = integer();
  const auto cuts = reals<double>(count);
  const auto non_finite = read_nan();
  const auto values = reals<float>(batch * n);
  std::vector<std::int32_t> out(static_cast<std::size_t>(batch * n));
  if (by_quantiles) {
    mwm::regions_by_quantiles(values.data(), batch, n, cuts, out.data(), non_finite);
  } else {
    const std::vector<float> thresholds(cuts.begin(), cuts.end());
    mwm::regions_by_thresholds(values.data(), batch, n, thresholds, out.data(), non_finite);
  }
  print_integers("regions", out);
}

void masks() {
  mwm::mask_request r;
  r.grid = read_grid();
  r.batch = integer();
  r.seed = unsigned_integer();
  r.offset = unsigned_integer();
  mwm::mask_policy& p = r.policy;
  using mwm::policy_kind;
  p.kind = pick<policy_kind>(word(), {{"random", policy_kind::random},
                                      {"per_region", policy_kind::per_region},
                                      {"fixed_total", policy_kind::fixed_total},
                                      {"weighted", policy_kind::weighted},
                                      {"block", policy_kind::block},
                                      {"coarse", policy_kind::coarse},
                                      {"loss_guided", policy_kind::loss_guided},
                                      {"attention_guided", policy_kind::attention_guided}});
  p.ratio = real();
  p.region_ratios = reals<double>(integer());
  using mwm::keep_rounding;
  p.rounding = pick<keep_rounding>(word(), {{"floor", keep_rounding::floor},
                                            {"round", keep_rounding::round},
                                            {"ceil_mask", keep_rounding::ceil_mask},
                                            {"floor_mask", keep_rounding::floor_mask}});
  p.order = pick<mwm::visible_order>(
      word(), {{"random", mwm::visible_order::random}, {"sorted", mwm::visible_order::sorted}});
  p.coarse_factor = integer();
  p.hard_share = real();
  p.attention = pick<mwm::attention_mode>(word(), {{"high", mwm::attention_mode::high},
                                                   {"low", mwm::attention_mode::low},
                                                   {"hint", mwm::attention_mode::hint}});
  p.hint_pool_share = real();
  p.hint_share = real();
  p.weight_floor = real();
  p.block.min_patches = integer();
  p.block.max_patches = integer();
  p.block.min_aspect = real();
  p.block.max_aspect = real();
  r.non_finite = read_nan();
  const std::int64_t n = r.grid.num_patches();
  std::vector<std::int64_t> index;
  if (integer() != 0) {
    index.resize(static_cast<std::size_t>(r.batch));
    for (auto& i : index) i = integer();
    r.sample_index = index.data();
  }
  std::vector<std::int32_t> region_values;
  if (integer() != 0) {
    region_values.resize(static_cast<std::size_t>(r.batch * n));
    for (auto& v : region_values) v = static_cast<std::int32_t>(integer());
    r.regions = region_values.data();
  }
  std::vector<float> score_values;
  if (integer() != 0) {
    score_values = reals<float>(r.batch * n);
    r.scores = score_values.data();
  }
  r.threads = 1;
  const mwm::mask_batch m = mwm::generate_masks(r);
  print_integers("mask", m.mask);
  print_integers("num_masked", m.num_masked);
  print_integers("ids_shuffle", m.ids_shuffle);
  print_integers("ids_restore", m.ids_restore);
  print_integers("ids_keep", m.ids_keep);
  print_integers("ids_masked", m.ids_masked);
  print_floats("noise", m.noise);
}

void upsample() {
  const mwm::grid_shape g = read_grid();
  const std::int64_t fd = integer();
  const std::int64_t fh = integer();
  const std::int64_t fw = integer();
  const bool invert = integer() != 0;
  const std::int64_t batch = integer();
  const std::int64_t n = g.num_patches();
  std::vector<std::uint8_t> values(static_cast<std::size_t>(batch * n));
  for (auto& v : values) v = static_cast<std::uint8_t>(integer());
  const std::int64_t per_sample = n * fd * fh * fw;
  std::vector<std::uint8_t> out(static_cast<std::size_t>(batch * per_sample));
  for (std::int64_t b = 0; b < batch; ++b)
    mwm::upsample_patch_map(values.data() + b * n, g, fd, fh, fw, invert,
                            out.data() + b * per_sample);
  print_integers("values", out);
}

}  // namespace

int main() {
  try {
    const std::string op = word();
    if (op == "scores") {
      scores();
    } else if (op == "thresholds") {
      regions(false);
    } else if (op == "quantiles") {
      regions(true);
    } else if (op == "masks") {
      masks();
    } else if (op == "upsample") {
      upsample();
    } else {
      throw std::runtime_error("core_driver: unknown op " + op);
    }
  } catch (const mwm::error& e) {
    std::printf("mwm_error %s\n", e.what());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
  return 0;
}
