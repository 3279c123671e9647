// The one exception type of mwm and the helpers that build its messages.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace mwm {

// Raised for every invalid argument; the message names the argument and its value.
class error : public std::invalid_argument {
 public:
  explicit error(const std::string& what) : std::invalid_argument(what) {}
};

namespace detail {

template <typename T>
std::string to_text(const T& value) {
  std::ostringstream out;
  out.precision(17);
  out << value;
  return out.str();
}

// Throws mwm::error("mwm: <argument> = <value>: <requirement>") unless `ok`.
template <typename T>
void require(bool ok, const char* argument, const T& value, const std::string& requirement) {
  if (!ok) {
    throw error(std::string("mwm: ") + argument + " = " + to_text(value) + ": " + requirement);
  }
}

}  // namespace detail
}  // namespace mwm
