// Op string arguments to the core's enums; unknown names raise ValueError listing the choices.
#pragma once

#include <c10/util/Exception.h>
#include <c10/util/string_view.h>

#include <mwm/masking.hpp>

#include <string>
#include <utility>
#include <vector>

namespace mwm_bindings {

template <typename Enum>
Enum parse_choice(const char* argument, c10::string_view value,
                  const std::vector<std::pair<const char*, Enum>>& choices) {
  std::string names;
  for (const auto& choice : choices) {
    if (value == choice.first) return choice.second;
    names += (names.empty() ? "" : ", ") + std::string(choice.first);
  }
  TORCH_CHECK_VALUE(false, "mwm: ", argument, " = '", std::string(value), "': must be one of ",
                    names);
}

inline mwm::pool_reduction parse_reduction(c10::string_view v) {
  return parse_choice<mwm::pool_reduction>("reduction", v,
                                           {{"mean", mwm::pool_reduction::mean},
                                            {"max", mwm::pool_reduction::max},
                                            {"fraction", mwm::pool_reduction::fraction},
                                            {"nearest", mwm::pool_reduction::nearest}});
}

inline mwm::prompt_combine parse_combine(c10::string_view v) {
  return parse_choice<mwm::prompt_combine>(
      "combine", v,
      {{"max", mwm::prompt_combine::max}, {"weighted_sum", mwm::prompt_combine::weighted_sum}});
}

inline mwm::nan_policy parse_nan_policy(c10::string_view v) {
  return parse_choice<mwm::nan_policy>(
      "nan_policy", v, {{"error", mwm::nan_policy::error}, {"zero", mwm::nan_policy::zero}});
}

inline mwm::policy_kind parse_policy(c10::string_view v) {
  return parse_choice<mwm::policy_kind>(
      "policy", v,
      {{"random", mwm::policy_kind::random},
       {"per_region", mwm::policy_kind::per_region},
       {"fixed_total", mwm::policy_kind::fixed_total},
       {"weighted", mwm::policy_kind::weighted},
       {"block", mwm::policy_kind::block},
       {"coarse", mwm::policy_kind::coarse},
       {"loss_guided", mwm::policy_kind::loss_guided},
       {"attention_guided", mwm::policy_kind::attention_guided}});
}

inline mwm::keep_rounding parse_rounding(c10::string_view v) {
  return parse_choice<mwm::keep_rounding>("rounding", v,
                                          {{"floor", mwm::keep_rounding::floor},
                                           {"round", mwm::keep_rounding::round},
                                           {"ceil_mask", mwm::keep_rounding::ceil_mask},
                                           {"floor_mask", mwm::keep_rounding::floor_mask}});
}

inline mwm::visible_order parse_order(c10::string_view v) {
  return parse_choice<mwm::visible_order>(
      "order", v, {{"random", mwm::visible_order::random}, {"sorted", mwm::visible_order::sorted}});
}

inline mwm::attention_mode parse_attention(c10::string_view v) {
  return parse_choice<mwm::attention_mode>("attention_mode", v,
                                           {{"high", mwm::attention_mode::high},
                                            {"low", mwm::attention_mode::low},
                                            {"hint", mwm::attention_mode::hint}});
}

inline mwm::grid_shape make_grid(const std::vector<int64_t>& grid) {
  return grid.size() == 3 ? mwm::make_grid_3d(grid[0], grid[1], grid[2])
                          : mwm::make_grid_2d(grid[0], grid[1]);
}

}  // namespace mwm_bindings
