// CORAL loss and gradients (include/mwm/coral.hpp) against the formula written out with loops.
#include <mwm/coral.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>

#include "catch.hpp"

namespace {

using matrix = mwm::feature_rows<double>;

matrix random_features(std::int64_t n, std::int64_t d, unsigned seed, double scale = 1.0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, scale);
  matrix x(n, d);
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t j = 0; j < d; ++j) x(i, j) = normal(rng) + 0.3 * static_cast<double>(j);
  }
  return x;
}

// The textbook unbiased covariance, one entry at a time.
double loop_covariance(const matrix& x, std::int64_t a, std::int64_t b) {
  const auto n = x.rows();
  double mean_a = 0, mean_b = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    mean_a += x(i, a);
    mean_b += x(i, b);
  }
  mean_a /= static_cast<double>(n);
  mean_b /= static_cast<double>(n);
  double sum = 0;
  for (std::int64_t i = 0; i < n; ++i) sum += (x(i, a) - mean_a) * (x(i, b) - mean_b);
  return sum / static_cast<double>(n - 1);
}

double loop_coral(const matrix& x, const matrix& y) {
  const auto d = x.cols();
  double sum = 0;
  for (std::int64_t a = 0; a < d; ++a) {
    for (std::int64_t b = 0; b < d; ++b) {
      const double diff = loop_covariance(x, a, b) - loop_covariance(y, a, b);
      sum += diff * diff;
    }
  }
  return sum / (4.0 * static_cast<double>(d * d));
}

template <typename Body>
std::string error_text(Body body) {
  try {
    body();
  } catch (const mwm::error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST_CASE("coral covariance is the unbiased sample covariance, exactly symmetric", "[coral]") {
  const matrix x = random_features(37, 6, 1);
  const auto cov = mwm::coral_covariance(x);
  REQUIRE(cov.rows() == 6);
  for (std::int64_t a = 0; a < 6; ++a) {
    for (std::int64_t b = 0; b < 6; ++b) {
      CHECK(cov(a, b) == Approx(loop_covariance(x, a, b)).epsilon(1e-12));
      CHECK(cov(a, b) == cov(b, a));
    }
  }
}

TEST_CASE("coral loss matches the Deep CORAL formula", "[coral]") {
  for (auto dims : {std::pair<int, int>{2, 1}, {5, 3}, {40, 8}, {13, 17}}) {
    const matrix x = random_features(dims.first, dims.second, 2);
    const matrix y = random_features(dims.first + 7, dims.second, 3, 2.5);
    const double expected = loop_coral(x, y);
    CHECK(mwm::coral_loss(x, y) == Approx(expected).epsilon(1e-12));
    const auto forward = mwm::coral_forward(x, y);
    CHECK(forward.loss == Approx(expected).epsilon(1e-12));
    CHECK((forward.cov_diff - (mwm::coral_covariance(x) - mwm::coral_covariance(y))).norm() == 0.0);
  }
}

TEST_CASE("coral loss: known values and invariances", "[coral]") {
  const matrix x = random_features(25, 4, 4);
  CHECK(mwm::coral_loss(x, x) == 0.0);
  // y = 2x quadruples the covariance: diff = -3 cov(x).
  const matrix y = 2.0 * x;
  const double cov_norm2 = mwm::coral_covariance(x).squaredNorm();
  CHECK(mwm::coral_loss(x, y) == Approx(9.0 * cov_norm2 / (4.0 * 16.0)).epsilon(1e-12));
  // A shift of every sample and a reordering of the samples leave covariances alone.
  const matrix z = random_features(30, 4, 5);
  matrix shifted = x;
  shifted.rowwise() += Eigen::RowVectorXd::LinSpaced(4, -3.0, 11.0);
  matrix reversed = z.colwise().reverse();
  CHECK(mwm::coral_loss(shifted, reversed) == Approx(mwm::coral_loss(x, z)).epsilon(1e-10));
  // Symmetric in its arguments.
  CHECK(mwm::coral_loss(z, x) == Approx(mwm::coral_loss(x, z)).epsilon(1e-14));
}

TEST_CASE("coral float32 agrees with float64", "[coral]") {
  const matrix x = random_features(64, 10, 6);
  const matrix y = random_features(50, 10, 7, 0.5);
  const mwm::feature_rows<float> xf = x.cast<float>();
  const mwm::feature_rows<float> yf = y.cast<float>();
  CHECK(static_cast<double>(mwm::coral_loss(xf, yf)) ==
        Approx(mwm::coral_loss(x, y)).epsilon(1e-5));
}

TEST_CASE("coral gradients match central finite differences", "[coral]") {
  const matrix x = random_features(9, 4, 8);
  const matrix y = random_features(12, 4, 9, 1.7);
  const double grad_loss = 0.75;
  const auto forward = mwm::coral_forward(x, y);
  const auto grads = mwm::coral_backward(x, y, forward.cov_diff, grad_loss);
  const double h = 1e-6;
  for (int which = 0; which < 2; ++which) {
    const matrix& base = which == 0 ? x : y;
    const matrix& analytic = which == 0 ? grads.grad_x : grads.grad_y;
    for (std::int64_t i = 0; i < base.rows(); ++i) {
      for (std::int64_t j = 0; j < base.cols(); ++j) {
        matrix plus = base, minus = base;
        plus(i, j) += h;
        minus(i, j) -= h;
        const double f_plus = which == 0 ? mwm::coral_loss(plus, y) : mwm::coral_loss(x, plus);
        const double f_minus = which == 0 ? mwm::coral_loss(minus, y) : mwm::coral_loss(x, minus);
        const double numeric = grad_loss * (f_plus - f_minus) / (2 * h);
        CHECK(analytic(i, j) == Approx(numeric).epsilon(1e-6).margin(1e-9));
      }
    }
  }
}

TEST_CASE("coral gradients include an incoming gradient on cov_diff", "[coral]") {
  const matrix x = random_features(8, 3, 10);
  const matrix y = random_features(6, 3, 11, 0.4);
  // f = 0.5 * loss + <G, cov_diff> with an asymmetric G.
  mwm::covariance_matrix<double> g(3, 3);
  g << 0.3, -1.0, 0.2, 0.5, 0.1, -0.7, 0.0, 0.4, 0.9;
  auto f = [&](const matrix& a, const matrix& b) {
    const auto forward = mwm::coral_forward(a, b);
    return 0.5 * forward.loss + (g.array() * forward.cov_diff.array()).sum();
  };
  const auto forward = mwm::coral_forward(x, y);
  const auto grads = mwm::coral_backward(x, y, forward.cov_diff, 0.5, &g);
  const double h = 1e-6;
  for (std::int64_t i = 0; i < x.rows(); ++i) {
    for (std::int64_t j = 0; j < x.cols(); ++j) {
      matrix plus = x, minus = x;
      plus(i, j) += h;
      minus(i, j) -= h;
      CHECK(grads.grad_x(i, j) ==
            Approx((f(plus, y) - f(minus, y)) / (2 * h)).epsilon(1e-6).margin(1e-9));
    }
  }
  for (std::int64_t i = 0; i < y.rows(); ++i) {
    for (std::int64_t j = 0; j < y.cols(); ++j) {
      matrix plus = y, minus = y;
      plus(i, j) += h;
      minus(i, j) -= h;
      CHECK(grads.grad_y(i, j) ==
            Approx((f(x, plus) - f(x, minus)) / (2 * h)).epsilon(1e-6).margin(1e-9));
    }
  }
}

TEST_CASE("coral gradients sum to zero over samples", "[coral]") {
  // Shifting every sample by the same vector does not change the loss, so neither does the sum
  // of the gradients over samples.
  const matrix x = random_features(30, 5, 12);
  const matrix y = random_features(20, 5, 13, 3.0);
  const auto forward = mwm::coral_forward(x, y);
  const auto grads = mwm::coral_backward(x, y, forward.cov_diff, 1.0);
  CHECK(grads.grad_x.colwise().sum().cwiseAbs().maxCoeff() < 1e-12);
  CHECK(grads.grad_y.colwise().sum().cwiseAbs().maxCoeff() < 1e-12);
}

TEST_CASE("coral rejects bad inputs with messages naming the argument", "[coral]") {
  const matrix x = random_features(5, 3, 14);
  const matrix one_row = random_features(1, 3, 15);
  const matrix wide = random_features(5, 4, 16);
  CHECK(error_text([&] { mwm::coral_loss(one_row, x); }) ==
        "mwm: x.rows = 1: an unbiased covariance needs at least 2 samples (rows)");
  CHECK(error_text([&] { mwm::coral_loss(x, one_row); }) ==
        "mwm: y.rows = 1: an unbiased covariance needs at least 2 samples (rows)");
  CHECK(error_text([&] { mwm::coral_loss(x, wide); }) ==
        "mwm: y.cols = 4: must equal x.cols = 3 (the feature dimension d)");
  matrix bad = x;
  bad(2, 1) = std::numeric_limits<double>::quiet_NaN();
  const std::string nan_text = error_text([&] { mwm::coral_loss(x, bad); });
  CHECK(nan_text.find("mwm: y[2, 1] = ") == 0);
  CHECK(nan_text.find("nan") != std::string::npos);
  CHECK(nan_text.find("features must be finite") != std::string::npos);
  bad(2, 1) = std::numeric_limits<double>::infinity();
  CHECK(error_text([&] { mwm::coral_covariance(bad, "pool"); }).find("mwm: pool[2, 1] = inf") == 0);
  const matrix empty(4, 0);
  CHECK(error_text([&] { mwm::coral_covariance(empty); }) ==
        "mwm: x.cols = 0: needs at least 1 feature (column)");
  const auto forward = mwm::coral_forward(x, x);
  mwm::covariance_matrix<double> wrong = mwm::covariance_matrix<double>::Zero(2, 2);
  CHECK(error_text([&] {
          mwm::coral_backward(x, x, forward.cov_diff, 1.0, &wrong);
        }).find("mwm: grad_cov_diff.rows = 2") == 0);
  CHECK(error_text([&] { mwm::coral_backward(x, x, wrong, 1.0); }).find("mwm: cov_diff.rows = 2") ==
        0);
}
