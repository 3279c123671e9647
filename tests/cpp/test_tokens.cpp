// Token gather / restore (MAE encoder input and decoder input) and their backward passes,
// against direct index arithmetic, including the -1 padding of variable-total policies.
#include <mwm/masking.hpp>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "catch.hpp"
#include "core_test_support.hpp"

namespace {

using mwm_test::mwm_error_message;

mwm::token_strides dense(std::int64_t tokens, std::int64_t channels) {
  return mwm::token_strides{tokens * channels, channels, 1};
}

// A value that names its place: x[b, n, c] = 1000 b + 10 n + c.
std::vector<double> labelled(std::int64_t batch, std::int64_t tokens, std::int64_t channels) {
  std::vector<double> x(static_cast<std::size_t>(batch * tokens * channels));
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t n = 0; n < tokens; ++n)
      for (std::int64_t c = 0; c < channels; ++c)
        x[static_cast<std::size_t>((b * tokens + n) * channels + c)] =
            1000.0 * static_cast<double>(b) + 10.0 * static_cast<double>(n) +
            static_cast<double>(c);
  return x;
}

}  // namespace

TEST_CASE("gather_tokens picks the rows named by ids_keep and zeros for padding", "[tokens]") {
  const std::int64_t B = 2, N = 5, C = 3, K = 3;
  const auto x = labelled(B, N, C);
  const std::vector<std::int64_t> ids{4, 0, 2, 1, 3, -1};
  std::vector<double> out(static_cast<std::size_t>(B * K * C), -7.0);
  mwm::gather_tokens(x.data(), dense(N, C), ids.data(), K, C, out.data(), dense(K, C), 0, B);
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t k = 0; k < K; ++k)
      for (std::int64_t c = 0; c < C; ++c) {
        const auto id = ids[static_cast<std::size_t>(b * K + k)];
        const double expected = id < 0 ? 0.0 : 1000.0 * b + 10.0 * id + c;
        CHECK(out[static_cast<std::size_t>((b * K + k) * C + c)] == expected);
      }
}

TEST_CASE("gather_tokens reads strided inputs (channels first storage)", "[tokens]") {
  const std::int64_t B = 1, N = 4, C = 2, K = 2;
  // x stored as (B, C, N): token stride 1, channel stride N.
  std::vector<double> storage{0, 1, 2, 3, 10, 11, 12, 13};
  const mwm::token_strides xs{N * C, 1, N};
  const std::vector<std::int64_t> ids{3, 1};
  std::vector<double> out(4);
  mwm::gather_tokens(storage.data(), xs, ids.data(), K, C, out.data(), dense(K, C), 0, B);
  CHECK(out == std::vector<double>{3, 13, 1, 11});
}

TEST_CASE("gather_tokens_backward scatters gradients, accumulating repeats", "[tokens]") {
  const std::int64_t B = 2, N = 4, C = 2, K = 3;
  const std::vector<std::int64_t> ids{2, 0, 2, -1, 3, 1};
  const auto grad = labelled(B, K, C);
  std::vector<double> grad_x(static_cast<std::size_t>(B * N * C), 99.0);
  mwm::gather_tokens_backward<double>(grad.data(), dense(K, C), ids.data(), K, N, C, grad_x.data(),
                                      dense(N, C), 0, B);
  std::vector<double> expected(grad_x.size(), 0.0);
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t k = 0; k < K; ++k) {
      const auto id = ids[static_cast<std::size_t>(b * K + k)];
      if (id < 0) continue;
      for (std::int64_t c = 0; c < C; ++c)
        expected[static_cast<std::size_t>((b * N + id) * C + c)] +=
            grad[static_cast<std::size_t>((b * K + k) * C + c)];
    }
  CHECK(grad_x == expected);
}

TEST_CASE("restore_tokens is MAE's cat + gather, with per-sample visible counts", "[tokens]") {
  const std::int64_t N = 6, C = 2;
  std::mt19937_64 rng(3);
  for (std::int64_t K : {std::int64_t(2), std::int64_t(4), std::int64_t(6)}) {
    const std::int64_t B = 3;
    // ids_restore: the inverse of a random permutation per sample.
    std::vector<std::int64_t> restore(static_cast<std::size_t>(B * N));
    for (std::int64_t b = 0; b < B; ++b) {
      std::vector<std::int64_t> shuffle(static_cast<std::size_t>(N));
      std::iota(shuffle.begin(), shuffle.end(), 0);
      std::shuffle(shuffle.begin(), shuffle.end(), rng);
      for (std::int64_t p = 0; p < N; ++p)
        restore[static_cast<std::size_t>(b * N + shuffle[static_cast<std::size_t>(p)])] = p;
    }
    const auto x_vis = labelled(B, K, C);
    const std::vector<double> token{-1.5, -2.5};
    const std::vector<std::int64_t> visible{K, K / 2, 0};
    for (bool per_sample : {false, true}) {
      std::vector<double> out(static_cast<std::size_t>(B * N * C));
      mwm::restore_tokens(x_vis.data(), dense(K, C), restore.data(),
                          per_sample ? visible.data() : nullptr, K, N, C, token.data(), 1,
                          out.data(), dense(N, C), 0, B);
      for (std::int64_t b = 0; b < B; ++b) {
        // MAE: cat([x_vis[b, :count], mask tokens]) gathered at ids_restore.
        const std::int64_t count = per_sample ? visible[static_cast<std::size_t>(b)] : K;
        for (std::int64_t n = 0; n < N; ++n) {
          const auto p = restore[static_cast<std::size_t>(b * N + n)];
          for (std::int64_t c = 0; c < C; ++c) {
            const double expected = p < count ? x_vis[static_cast<std::size_t>((b * K + p) * C + c)]
                                              : token[static_cast<std::size_t>(c)];
            CHECK(out[static_cast<std::size_t>((b * N + n) * C + c)] == expected);
          }
        }
      }

      // Backward: slot gradients land in their slots, the rest sums into the mask token.
      const auto grad = labelled(B, N, C);
      std::vector<double> grad_vis(static_cast<std::size_t>(B * K * C), 5.0);
      std::vector<double> partials(static_cast<std::size_t>(B * C), 5.0), grad_token(C);
      mwm::restore_tokens_backward(grad.data(), dense(N, C), restore.data(),
                                   per_sample ? visible.data() : nullptr, K, N, C, grad_vis.data(),
                                   dense(K, C), partials.data(), 0, B);
      mwm::steps::sum_mask_partials(partials.data(), B, C, grad_token.data());
      std::vector<double> expected_vis(grad_vis.size(), 0.0), expected_token(C, 0.0);
      for (std::int64_t b = 0; b < B; ++b) {
        const std::int64_t count = per_sample ? visible[static_cast<std::size_t>(b)] : K;
        for (std::int64_t n = 0; n < N; ++n) {
          const auto p = restore[static_cast<std::size_t>(b * N + n)];
          for (std::int64_t c = 0; c < C; ++c) {
            const double g = grad[static_cast<std::size_t>((b * N + n) * C + c)];
            if (p < count)
              expected_vis[static_cast<std::size_t>((b * K + p) * C + c)] += g;
            else
              expected_token[static_cast<std::size_t>(c)] += g;
          }
        }
      }
      CHECK(grad_vis == expected_vis);
      CHECK(grad_token == expected_token);
    }
  }
}

TEST_CASE("token ids are validated with the sample and slot named", "[tokens]") {
  const std::vector<std::int64_t> keep{0, 3, -1, 4};
  CHECK(mwm_error_message([&] { mwm::validate_keep_ids(keep.data(), 2, 2, 5); }).empty());
  CHECK(mwm_error_message([&] { mwm::validate_keep_ids(keep.data(), 2, 2, 4); }) ==
        "mwm: ids_keep = 4: must lie in [-1, 4) (sample 1, slot 1; -1 marks padding)");
  const std::vector<std::int64_t> below{0, -2};
  CHECK_THAT(mwm_error_message([&] { mwm::validate_keep_ids(below.data(), 1, 2, 4); }),
             Catch::Matchers::StartsWith("mwm: ids_keep = -2"));

  const std::vector<std::int64_t> restore{1, 0, 2, 2, -1, 0};
  CHECK_THAT(
      mwm_error_message([&] { mwm::validate_restore_ids(restore.data(), nullptr, 2, 3, 2); }),
      Catch::Matchers::StartsWith("mwm: ids_restore = -1: must lie in [0, 3) (sample 1, "
                                  "token 1)"));
  const std::vector<std::int64_t> good{1, 0, 2, 2, 1, 0};
  const std::vector<std::int64_t> visible{2, 3};
  CHECK(mwm_error_message([&] {
          mwm::validate_restore_ids(good.data(), visible.data(), 2, 3, 3);
        }).empty());
  const auto too_many = [&] { mwm::validate_restore_ids(good.data(), visible.data(), 2, 3, 2); };
  CHECK_THAT(mwm_error_message(too_many),
             Catch::Matchers::StartsWith("mwm: num_visible = 3: must lie in [0, 2] (sample 1"));
}
