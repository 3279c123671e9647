// MWM_CPU_VECTOR_BITS: its values, its error, and that the kernels' dispatch obeys the cap
// (ctest also runs the whole suite under 256 and 128, so every variant meets the same tests).
#include <mwm/masking.hpp>

#include <cstdlib>
#include <stdexcept>
#include <string>

#include "catch.hpp"

#if defined(MWM_X86_DISPATCH)

TEST_CASE("MWM_CPU_VECTOR_BITS caps the vector unit at 512, 256 or 128", "[x86]") {
  REQUIRE(mwm::detail::vector_bits_cap(nullptr) == 512);
  REQUIRE(mwm::detail::vector_bits_cap("") == 512);
  REQUIRE(mwm::detail::vector_bits_cap("512") == 512);
  REQUIRE(mwm::detail::vector_bits_cap("256") == 256);
  REQUIRE(mwm::detail::vector_bits_cap("128") == 128);
  for (const char* bad : {"64", "1024", "avx2", "256 ", "+256", "0"}) {
    INFO("value '" << bad << "'");
    try {
      mwm::detail::vector_bits_cap(bad);
      FAIL("accepted");
    } catch (const std::invalid_argument& e) {
      const std::string message = e.what();
      REQUIRE(message.find("MWM_CPU_VECTOR_BITS") != std::string::npos);
      REQUIRE(message.find(std::string("'") + bad + "'") != std::string::npos);
    }
  }
}

TEST_CASE("the kernels run on the CPU's vector unit, capped by MWM_CPU_VECTOR_BITS", "[x86]") {
  const int supported = mwm::detail::supported_x86_vector_bits();
  const int cap = mwm::detail::vector_bits_cap(std::getenv("MWM_CPU_VECTOR_BITS"));
  const int expected = cap < supported ? cap : supported;
  INFO("supported " << supported << ", cap " << cap);
  REQUIRE(mwm::detail::x86_vector_bits() == expected);
  // The loss's gathers of rows of 16 pixels: AVX-512 only at 512, AVX2 at 256 and above.
  const mwm::patch_geometry g = mwm::make_geometry_2d(1, 6, 48, 1, 16);
  const auto s = mwm::image_patch_strides(g, 0, g.image_height() * g.image_width(),
                                          g.image_height() * g.image_width(), g.image_width(), 1);
  REQUIRE(mwm::detail::avx512::gathers_rows(s, g) == (expected == 512));
  REQUIRE(mwm::detail::avx2::gathers_rows(s, g) == (expected >= 256));
  REQUIRE(mwm::detail::network_sorts(16) == (expected == 512));
}

#endif
