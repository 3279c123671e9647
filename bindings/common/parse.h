// Op string arguments to the core's enums. Each enum's names are listed once, in a table that
// both parses (unknown names raise ValueError listing the choices) and names a value (schema
// defaults, the choices exported to Python).
#pragma once

#include <c10/util/Exception.h>
#include <c10/util/string_view.h>

#include <mwm/masking.hpp>

#include <string>
#include <utility>
#include <vector>

namespace mwm_bindings {

template <typename Enum>
using choices = std::vector<std::pair<const char*, Enum>>;

template <typename Enum>
Enum parse_choice(const char* argument, c10::string_view value, const choices<Enum>& table) {
  for (const auto& choice : table) {
    if (value == choice.first) return choice.second;
  }
  std::string names;  // built on failure only: every op call parses its choices
  for (const auto& choice : table) names += (names.empty() ? "" : ", ") + std::string(choice.first);
  TORCH_CHECK_VALUE(false, "mwm: ", argument, " = '", std::string(value), "': must be one of ",
                    names);
}

template <typename Enum>
const char* choice_name(const choices<Enum>& table, Enum value) {
  for (const auto& choice : table) {
    if (choice.second == value) return choice.first;
  }
  return "unknown";
}

template <typename Enum>
std::vector<std::string> choice_names(const choices<Enum>& table) {
  std::vector<std::string> names;
  for (const auto& choice : table) names.emplace_back(choice.first);
  return names;
}

inline const choices<mwm::nan_policy>& nan_policy_choices() {
  static const choices<mwm::nan_policy> table{{"error", mwm::nan_policy::error},
                                              {"zero", mwm::nan_policy::zero}};
  return table;
}

inline mwm::nan_policy parse_nan_policy(c10::string_view v) {
  return parse_choice("nan_policy", v, nan_policy_choices());
}

inline mwm::grid_shape make_grid(const std::vector<int64_t>& grid) {
  return grid.size() == 3 ? mwm::make_grid_3d(grid[0], grid[1], grid[2])
                          : mwm::make_grid_2d(grid[0], grid[1]);
}

}  // namespace mwm_bindings
