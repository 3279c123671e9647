// The same pipeline with Eigen matrices in and out (mwm/eigen.hpp).
#include <mwm/eigen.hpp>

#include <iostream>

int main() {
  // One 64x64 heatmap, pooled onto a 7x7 grid (SparK at 224 px).
  Eigen::MatrixXf heatmap = Eigen::MatrixXf::Zero(64, 64);
  heatmap.block(10, 30, 20, 20).setOnes();
  const mwm::grid_shape grid = mwm::make_grid_2d(7, 7);
  const mwm::row_major_matrix<float> scores = mwm::pool_heatmap(heatmap, grid);

  // A batch is one row per image: here the same image twice, as a (2, 49) matrix.
  mwm::row_major_matrix<float> batch_scores(2, 49);
  batch_scores.row(0) = Eigen::Map<const Eigen::RowVectorXf>(scores.data(), 49);
  batch_scores.row(1) = batch_scores.row(0);
  const auto regions = mwm::regions_by_thresholds(batch_scores, {0.3f});

  mwm::mask_request request;
  request.grid = grid;
  request.policy.kind = mwm::policy_kind::fixed_total;  // the same total in every image
  request.policy.ratio = 0.6;
  request.policy.region_ratios = {0.4, 0.8};
  request.seed = 7;
  const mwm::eigen_mask_batch masks = mwm::generate_masks(request, regions);

  std::cout << "masked per image: " << masks.num_masked.transpose() << "\n";
  std::cout
      << "image 0 mask (1 = masked):\n"
      << Eigen::Map<const mwm::row_major_matrix<bool>>(masks.mask.row(0).data(), 7, 7).cast<int>()
      << "\n";
  return 0;
}
