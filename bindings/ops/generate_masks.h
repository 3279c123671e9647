// generate_masks: masks for the samples whose global indices are `sample_index` (B,) int64.
//
// The mask policy's options are listed once, in MWM_MASK_OPTIONS below: each row names the op
// argument and the field of mwm::mask_request it fills. From that list come the op's C++
// signature, its schema (types from the field types, defaults from mwm::mask_request{}), the
// parser both backends share, and the option names and choices exported to Python (mwm._C),
// whose wrapper and fake kernel read the argument list back from the schema. A new option is
// one row here and its field in the core.
#pragma once

#include <ATen/ATen.h>

#include <mwm/masking.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/check.h"
#include "common/parse.h"

// X(argument name, field of mwm::mask_request)
#define MWM_MASK_OPTIONS(X)                      \
  X(policy, policy.kind)                         \
  X(ratio, policy.ratio)                         \
  X(region_ratios, policy.region_ratios)         \
  X(rounding, policy.rounding)                   \
  X(order, policy.order)                         \
  X(coarse_factor, policy.coarse_factor)         \
  X(hard_share, policy.hard_share)               \
  X(attention_mode, policy.attention)            \
  X(hint_pool_share, policy.hint_pool_share)     \
  X(hint_share, policy.hint_share)               \
  X(weight_floor, policy.weight_floor)           \
  X(block_min_patches, policy.block.min_patches) \
  X(block_max_patches, policy.block.max_patches) \
  X(block_min_aspect, policy.block.min_aspect)   \
  X(block_max_aspect, policy.block.max_aspect)   \
  X(nan_policy, non_finite)

namespace mwm_bindings {

// ---------------------------------------------------------------- the choices of enum options

inline const choices<mwm::policy_kind>& choices_for(mwm::policy_kind) {
  // Every kind the core names, in enum order: a new policy needs no edit here.
  static const choices<mwm::policy_kind> table = [] {
    choices<mwm::policy_kind> kinds;
    for (int k = 0;; ++k) {
      const auto kind = static_cast<mwm::policy_kind>(k);
      const std::string name = mwm::policy_name(kind);
      if (name == "unknown") break;
      kinds.emplace_back(mwm::policy_name(kind), kind);
    }
    return kinds;
  }();
  return table;
}

inline const choices<mwm::keep_rounding>& choices_for(mwm::keep_rounding) {
  static const choices<mwm::keep_rounding> table{{"floor", mwm::keep_rounding::floor},
                                                 {"round", mwm::keep_rounding::round},
                                                 {"ceil_mask", mwm::keep_rounding::ceil_mask},
                                                 {"floor_mask", mwm::keep_rounding::floor_mask}};
  return table;
}

inline const choices<mwm::visible_order>& choices_for(mwm::visible_order) {
  static const choices<mwm::visible_order> table{{"random", mwm::visible_order::random},
                                                 {"sorted", mwm::visible_order::sorted}};
  return table;
}

inline const choices<mwm::attention_mode>& choices_for(mwm::attention_mode) {
  static const choices<mwm::attention_mode> table{{"high", mwm::attention_mode::high},
                                                  {"low", mwm::attention_mode::low},
                                                  {"hint", mwm::attention_mode::hint}};
  return table;
}

inline const choices<mwm::nan_policy>& choices_for(mwm::nan_policy) { return nan_policy_choices(); }

// ------------------------------------------- how an option of each field type crosses the op

// The shortest decimal text that reads back as `v` (schema defaults must round-trip).
inline std::string exact_text(double v) {
  char text[32];
  for (int digits = 1; digits <= 17; ++digits) {
    std::snprintf(text, sizeof(text), "%.*g", digits, v);
    if (std::strtod(text, nullptr) == v) break;
  }
  std::string out = text;
  if (out.find_first_of(".e") == std::string::npos) out += ".0";
  return out;
}

template <typename Field, typename = void>
struct mask_option;

template <>
struct mask_option<double> {
  using parameter = double;
  static constexpr const char* schema_type = "float";
  static void store(const char*, double value, double& field) { field = value; }
  static std::string text(double value) { return exact_text(value); }
};

template <>
struct mask_option<std::int64_t> {
  using parameter = int64_t;
  static constexpr const char* schema_type = "int";
  static void store(const char*, int64_t value, std::int64_t& field) { field = value; }
  static std::string text(std::int64_t value) { return std::to_string(value); }
};

template <>
struct mask_option<std::vector<double>> {
  using parameter = at::ArrayRef<double>;
  static constexpr const char* schema_type = "float[]";
  static void store(const char*, at::ArrayRef<double> value, std::vector<double>& field) {
    field.assign(value.begin(), value.end());
  }
  static std::string text(const std::vector<double>& values) {
    std::string out = "[";
    for (std::size_t i = 0; i < values.size(); ++i) out += (i ? ", " : "") + exact_text(values[i]);
    return out + "]";
  }
};

template <typename Enum>
struct mask_option<Enum, std::enable_if_t<std::is_enum_v<Enum>>> {
  using parameter = c10::string_view;
  static constexpr const char* schema_type = "str";
  static void store(const char* name, c10::string_view value, Enum& field) {
    field = parse_choice(name, value, choices_for(Enum{}));
  }
  static std::string text(Enum value) {
    return std::string("\"") + choice_name(choices_for(Enum{}), value) + "\"";
  }
};

}  // namespace mwm_bindings

#define MWM_MASK_FIELD_TYPE(field) \
  std::remove_reference_t<decltype(std::declval<mwm::mask_request&>().field)>
#define MWM_MASK_OPTION(field) ::mwm_bindings::mask_option<MWM_MASK_FIELD_TYPE(field)>
#define MWM_MASK_OPTION_PARAMETER(name, field) , typename MWM_MASK_OPTION(field)::parameter name

namespace mwm_bindings {

// "generate_masks(Tensor sample_index, int[] grid, Tensor? regions=None, ..., <options>) -> (...)"
inline std::string generate_masks_schema() {
  const mwm::mask_request defaults;
  std::string schema =
      "generate_masks(Tensor sample_index, int[] grid, Tensor? regions=None, "
      "Tensor? scores=None, int seed=0";
#define MWM_SCHEMA_ARGUMENT(name, field)                                              \
  schema += std::string(", ") + MWM_MASK_OPTION(field)::schema_type + " " #name "=" + \
            MWM_MASK_OPTION(field)::text(defaults.field);
  MWM_MASK_OPTIONS(MWM_SCHEMA_ARGUMENT)
#undef MWM_SCHEMA_ARGUMENT
  return schema +
         ") -> (Tensor mask, Tensor num_masked, Tensor ids_shuffle, Tensor ids_restore, "
         "Tensor ids_keep, Tensor ids_masked, Tensor noise)";
}

template <typename Field>
void add_choices(std::map<std::string, std::vector<std::string>>& out, const char* name) {
  if constexpr (std::is_enum_v<Field>) out[name] = choice_names(choices_for(Field{}));
}

// The names each string option accepts, by option (for mwm._C.mask_option_choices()).
inline std::map<std::string, std::vector<std::string>> mask_option_choices() {
  std::map<std::string, std::vector<std::string>> out;
#define MWM_OPTION_CHOICES(name, field) add_choices<MWM_MASK_FIELD_TYPE(field)>(out, #name);
  MWM_MASK_OPTIONS(MWM_OPTION_CHOICES)
#undef MWM_OPTION_CHOICES
  return out;
}

// A checked call: the request points into the contiguous tensors held here.
struct mask_call {
  mwm::mask_request request;
  at::Tensor sample_index;
  at::Tensor regions;  // undefined unless the policy reads regions
  at::Tensor scores;   // undefined unless the policy reads scores
};

using mask_outputs =
    std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
using mask_run = mask_outputs (*)(const mask_call&);

// A (B, N) tensor that the policy needs, checked against the batch and grid.
inline at::Tensor checked_rows(const std::optional<at::Tensor>& rows, const char* name,
                               at::ScalarType dtype, const char* what, const mask_call& call) {
  TORCH_CHECK_VALUE(rows.has_value(), "mwm: ", name, " = None: policy '",
                    mwm::policy_name(call.request.policy.kind), "' needs ", what, " (B, N)");
  check_dtype(*rows, name, dtype);
  check_dim(*rows, name, 2);
  check_same_device(*rows, name, call.sample_index, "sample_index");
  check_size(*rows, name, 0, call.request.batch, "the batch size");
  check_size(*rows, name, 1, call.request.grid.num_patches(), "the number of patches");
  return rows->contiguous();
}

// The op for one backend: `Run` generates the masks of a checked call.
template <mask_run Run>
mask_outputs generate_masks_op(const at::Tensor& sample_index, at::IntArrayRef grid,
                               const std::optional<at::Tensor>& regions,
                               const std::optional<at::Tensor>& scores,
                               int64_t seed MWM_MASK_OPTIONS(MWM_MASK_OPTION_PARAMETER)) {
  const auto grid_sizes = check_grid(grid);
  check_dtype(sample_index, "sample_index", at::kLong);
  check_dim(sample_index, "sample_index", 1);
  TORCH_CHECK_VALUE(sample_index.size(0) > 0, "mwm: batch size = 0: need at least one sample");
  return translate_errors([&] {
    mask_call call;
    mwm::mask_request& request = call.request;
#define MWM_STORE_OPTION(name, field) MWM_MASK_OPTION(field)::store(#name, name, request.field);
    MWM_MASK_OPTIONS(MWM_STORE_OPTION)
#undef MWM_STORE_OPTION
    call.sample_index = sample_index.contiguous();
    request.grid = make_grid(grid_sizes);
    request.batch = sample_index.size(0);
    request.seed = static_cast<std::uint64_t>(seed);
    request.sample_index = call.sample_index.const_data_ptr<int64_t>();
    if (mwm::uses_regions(request.policy.kind)) {
      call.regions = checked_rows(regions, "regions", at::kInt, "region indices", call);
      request.regions = call.regions.const_data_ptr<int32_t>();
    }
    if (mwm::uses_scores(request.policy.kind)) {
      call.scores = checked_rows(scores, "scores", at::kFloat, "patch scores", call);
      request.scores = call.scores.const_data_ptr<float>();
    }
    return Run(call);
  });
}

}  // namespace mwm_bindings
