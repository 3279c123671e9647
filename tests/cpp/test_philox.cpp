// Philox4x32-10 against the published known answers, and the mwm keying of its counter.
#include <mwm/masking.hpp>

#include <cstdint>
#include <set>

#include "catch.hpp"

namespace {

struct philox_known_answer {
  mwm::philox_counter counter;
  mwm::philox_key key;
  std::uint32_t expected[4];
};

// Random123, tests/kat_vectors, the three "philox4x32 10" lines (counter, key, output).
const philox_known_answer random123_vectors[] = {
    {{{0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u}},
     {{0x00000000u, 0x00000000u}},
     {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
    {{{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}},
     {{0xffffffffu, 0xffffffffu}},
     {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
    {{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}},
     {{0xa4093822u, 0x299f31d0u}},
     {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
};

}  // namespace

TEST_CASE("philox4x32_10 reproduces the Random123 known-answer vectors", "[philox]") {
  for (const auto& vector : random123_vectors) {
    const auto out = mwm::steps::philox4x32_10(vector.counter, vector.key);
    for (int word = 0; word < 4; ++word) {
      INFO("counter word 0 = " << vector.counter.v[0] << ", output word " << word);
      CHECK(out.v[word] == vector.expected[word]);
    }
  }
}

TEST_CASE("random_u32 keys Philox by seed and counts (sample, patch, draw, sample >> 32)",
          "[philox]") {
  const std::uint64_t seed = 0x299f31d0a4093822ull;
  const std::uint64_t sample = 0x03707344243f6a88ull;
  const std::uint32_t patch = 0x85a308d3u;
  const std::uint32_t draw = 0x13198a2eu;
  // The pi-digits vector again, reached through the mwm stream layout.
  CHECK(mwm::steps::random_u32(seed, sample, patch, draw) == 0xd16cfe09u);
  CHECK(mwm::steps::random_u32(0, 0, 0, 0) == 0x6627e8d5u);
  CHECK(mwm::steps::random_u32(~0ull, ~0ull, 0xffffffffu, 0xffffffffu) == 0x408f276du);
}

TEST_CASE("sample indices past 2^32 do not alias earlier samples", "[philox]") {
  std::set<std::uint32_t> values;
  for (std::uint64_t high = 0; high < 4; ++high) {
    values.insert(mwm::steps::random_u32(7, (high << 32) | 5u, 11, 0));
  }
  CHECK(values.size() == 4);
}

TEST_CASE("random_key carries the patch index in its low 32 bits", "[philox][keys]") {
  for (std::uint32_t patch = 0; patch < 64; ++patch) {
    const auto key = mwm::steps::random_key(3, 9, patch);
    CHECK(mwm::steps::key_index(key) == patch);
    CHECK((key >> 32) == mwm::steps::random_u32(3, 9, patch, 0));
  }
}
