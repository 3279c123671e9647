// The streaming stores of the loss gradient (loss_stream.hpp) against the plain loop: the same
// bits for every start alignment and length (head, vector body and tail), NaN payloads and
// signed zeros included, and nothing written outside the range.
#include <mwm/loss.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "catch.hpp"

namespace {

std::vector<float> sample_values(std::int64_t count) {
  std::vector<float> v(static_cast<std::size_t>(count));
  for (std::int64_t i = 0; i < count; ++i) v[i] = static_cast<float>(i) * 0.37f - 5.0f;
  if (count > 2) v[1] = -0.0f;
  if (count > 5) v[5] = std::numeric_limits<float>::quiet_NaN();
  if (count > 7) v[7] = std::numeric_limits<float>::infinity();
  if (count > 9) v[9] = std::numeric_limits<float>::denorm_min();
  return v;
}

constexpr float guard = 12345.0f;

}  // namespace

TEST_CASE("streamed gradient values have the plain loop's bits at every alignment", "[loss]") {
  for (std::int64_t count : {0, 1, 3, 4, 5, 7, 8, 17, 48, 768}) {
    const auto in = sample_values(count);
    for (std::int64_t offset = 0; offset < 4; ++offset) {
      std::vector<float> streamed(static_cast<std::size_t>(count + 8), guard);
      std::vector<float> plain(streamed);
      mwm::detail::stream_values(streamed.data() + offset, in.data(), count);
      mwm::detail::stream_fence();
      mwm::detail::store_values_plain(plain.data() + offset, in.data(), count);
      INFO("count " << count << ", offset " << offset);
      REQUIRE(std::memcmp(streamed.data(), plain.data(), streamed.size() * sizeof(float)) == 0);
    }
  }
}

TEST_CASE("streamed zeros fill exactly the range at every alignment", "[loss]") {
  for (std::int64_t count : {0, 1, 3, 4, 5, 9, 768}) {
    for (std::int64_t offset = 0; offset < 4; ++offset) {
      std::vector<float> out(static_cast<std::size_t>(count + 8), guard);
      mwm::detail::stream_zeros(out.data() + offset, count);
      mwm::detail::stream_fence();
      for (std::int64_t i = 0; i < static_cast<std::int64_t>(out.size()); ++i) {
        const bool inside = i >= offset && i < offset + count;
        INFO("count " << count << ", offset " << offset << ", element " << i);
        REQUIRE(out[i] == (inside ? 0.0f : guard));
        if (inside) REQUIRE_FALSE(std::signbit(out[i]));
      }
    }
  }
}

TEST_CASE("types the gradient does not stream go through the plain loop", "[loss]") {
  const std::vector<double> in = {1.5, -0.0, 3.25, 1e300};
  std::vector<double> out(4, 0.0);
  mwm::detail::stream_values(out.data(), in.data(), 4);
  REQUIRE(std::memcmp(out.data(), in.data(), sizeof(double) * 4) == 0);
  std::vector<float> narrowed(4, 0.0f);
  mwm::detail::stream_values(narrowed.data(), in.data(), 4);  // double -> float: plain casts
  REQUIRE(narrowed[2] == 3.25f);
  REQUIRE(narrowed[3] == static_cast<float>(1e300));
  REQUIRE_FALSE(mwm::detail::streams_gradient<double>());
}
