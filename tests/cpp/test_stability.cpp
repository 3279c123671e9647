// The masks of a given (seed, offset, inputs) are part of the contract: experiments must be
// reproducible across mwm versions, and CUDA must match the CPU. These FNV-1a digests of the
// outputs pin them; a change here is a breaking change and needs a deliberate decision.
#include <mwm/masking.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "catch.hpp"
#include "core_test_support.hpp"

namespace {

std::uint64_t fnv1a(std::uint64_t hash, const void* data, std::size_t bytes) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < bytes; ++i) {
    hash ^= p[i];
    hash *= 0x100000001b3ull;
  }
  return hash;
}

std::uint64_t digest(const mwm::mask_batch& masks) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  h = fnv1a(h, masks.ids_shuffle.data(), masks.ids_shuffle.size() * sizeof(std::int64_t));
  h = fnv1a(h, masks.num_masked.data(), masks.num_masked.size() * sizeof(std::int64_t));
  return h;
}

struct pinned {
  const char* grid;
  const char* policy;
  std::uint64_t digest;
};

// Recorded from mwm 0.1.0 before the selection code was optimized.
const pinned pinned_digests[] = {
    {"14x14", "attention high", 0xa3738effd2e5a167ull},
    {"14x14", "attention hint", 0x5d8952b0487db2aull},
    {"14x14", "attention low", 0x1b0332c11e2aa027ull},
    {"14x14", "block", 0x731c4779a6b13e2aull},
    {"14x14", "coarse", 0x5c9d57467d63aaf1ull},
    {"14x14", "fixed_total", 0x23b12e6185d507efull},
    {"14x14", "loss_guided", 0x42a4d448c17db896ull},
    {"14x14", "per_region", 0x6a10d699b5871cebull},
    {"14x14", "random sorted", 0x90354631da52f393ull},
    {"14x14", "random", 0x1d78dc2f59b76dd3ull},
    {"14x14", "weighted", 0xfecac8358a60e849ull},
    {"4x4x6", "attention high", 0x727eadc3af0451b5ull},
    {"4x4x6", "attention hint", 0xd05912fbf181a8a2ull},
    {"4x4x6", "attention low", 0x4124cf09c40157d5ull},
    {"4x4x6", "block", 0xd62693e22a7dd882ull},
    {"4x4x6", "coarse", 0xa9b92c4e3ae0e63dull},
    {"4x4x6", "fixed_total", 0xba48b831ab973241ull},
    {"4x4x6", "loss_guided", 0xe7ad53d4e49babadull},
    {"4x4x6", "per_region", 0x1a38dd08da3eeea0ull},
    {"4x4x6", "random sorted", 0xdd88d29b061218bfull},
    {"4x4x6", "random", 0xab10374ca953755full},
    {"4x4x6", "weighted", 0xc80751a9964a1130ull},
};

}  // namespace

TEST_CASE("mask digests are stable across versions", "[stability]") {
  const std::pair<std::string, mwm::grid_shape> grids[] = {{"14x14", mwm::make_grid_2d(14, 14)},
                                                           {"4x4x6", mwm::make_grid_3d(4, 4, 6)}};
  for (const auto& g : grids) {
    const std::int64_t batch = 5;
    mwm_test::test_rng rng(2718);
    const auto regions = mwm_test::random_regions(rng, g.second, batch, 3);
    const auto scores = mwm_test::random_scores(rng, batch * g.second.num_patches(), true);
    for (const auto& config : mwm_test::every_policy()) {
      mwm_test::generate_inputs in;
      in.grid = g.second;
      in.batch = batch;
      in.seed = 31337;
      in.offset = 99;
      in.regions = &regions;
      in.scores = &scores;
      const auto got = digest(mwm_test::generate(config.policy, in));
      const pinned* expected = nullptr;
      for (const auto& p : pinned_digests)
        if (g.first == p.grid && config.name == p.policy) expected = &p;
      INFO("{\"" << g.first << "\", \"" << config.name << "\", 0x" << std::hex << got << "ull},");
      CHECK(expected != nullptr);
      if (expected != nullptr) CHECK(got == expected->digest);
    }
  }
}
