// A few MAE-style pretraining steps in C++ with text-guided masks from mwm.
//
// Synthetic images carry a bright "lesion"; a heatmap marks it (standing in for a grounding
// model). mwm masks the lesion patches at 0.8 and the background at 0.4 (the MWM default), keeps
// the same number of visible tokens in every sample (fixed_total), and the model reconstructs
// the masked patches from the visible ones.
#include <torch/torch.h>

#include <mwm/torch.hpp>

#include <cstdio>

namespace {

constexpr int64_t image_size = 32;
constexpr int64_t patch = 8;
constexpr int64_t grid_side = image_size / patch;
constexpr int64_t patches = grid_side * grid_side;
constexpr int64_t patch_dim = patch * patch;  // one channel

// (B, 1, H, W) -> (B, N, patch*patch) in MAE's patch order.
torch::Tensor patchify(const torch::Tensor& images) {
  const auto b = images.size(0);
  return images.reshape({b, 1, grid_side, patch, grid_side, patch})
      .permute({0, 2, 4, 3, 5, 1})
      .reshape({b, patches, patch_dim});
}

struct TinyMae : torch::nn::Module {
  TinyMae() {
    embed = register_module("embed", torch::nn::Linear(patch_dim, 64));
    encoder = register_module("encoder",
                              torch::nn::Sequential(torch::nn::Linear(64, 64), torch::nn::GELU(),
                                                    torch::nn::Linear(64, 64)));
    decoder = register_module("decoder",
                              torch::nn::Sequential(torch::nn::Linear(64, 64), torch::nn::GELU(),
                                                    torch::nn::Linear(64, patch_dim)));
    position = register_parameter("position", torch::randn({1, patches, 64}) * 0.02);
    mask_token = register_parameter("mask_token", torch::zeros({1, 1, 64}));
  }

  // Reconstruction of every patch from the visible ones (ids_keep), MAE style.
  torch::Tensor forward(const torch::Tensor& tokens, const mwm::tensors::masks& masks) {
    auto x = embed->forward(tokens) + position;
    const auto keep = masks.ids_keep.unsqueeze(-1).expand({-1, -1, x.size(-1)});
    auto visible = encoder->forward(torch::gather(x, 1, keep));
    auto full = mask_token.expand({x.size(0), patches, x.size(-1)}).clone();
    full = full.scatter(1, keep, visible) + position;
    return decoder->forward(full);
  }

  torch::nn::Linear embed{nullptr};
  torch::nn::Sequential encoder{nullptr}, decoder{nullptr};
  torch::Tensor position, mask_token;
};

}  // namespace

int main() {
  torch::manual_seed(0);
  const int64_t batch = 16;
  TinyMae model;
  torch::optim::AdamW optimizer(model.parameters(), torch::optim::AdamWOptions(1e-3));

  mwm::mask_policy policy;
  policy.kind = mwm::policy_kind::fixed_total;
  policy.ratio = 0.5;
  policy.region_ratios = {0.4, 0.8};
  const auto grid = mwm::make_grid_2d(grid_side, grid_side);

  float first_loss = 0.0f, last_loss = 0.0f;
  const int steps = 30;
  for (int step = 0; step < steps; ++step) {
    auto images = torch::rand({batch, 1, image_size, image_size}) * 0.2;
    auto heatmaps = torch::zeros({batch, 1, image_size, image_size});
    for (int64_t b = 0; b < batch; ++b) {
      const auto y = (b * 7 + step) % (image_size - 12);
      const auto x = (b * 5 + step * 3) % (image_size - 12);
      images.index_put_(
          {b, 0, torch::indexing::Slice(y, y + 12), torch::indexing::Slice(x, x + 12)}, 1.0);
      heatmaps.index_put_(
          {b, 0, torch::indexing::Slice(y, y + 12), torch::indexing::Slice(x, x + 12)}, 1.0);
    }
    const auto scores = mwm::tensors::patch_scores(heatmaps, grid);
    const auto regions = mwm::tensors::regions_from_thresholds(scores, {0.5f});
    const auto masks = mwm::tensors::generate_masks(
        mwm::tensors::sample_indices(batch, step * batch), grid, policy, /*seed=*/42, regions);

    const auto target = patchify(images);
    const auto prediction = model.forward(target, masks);
    const auto per_patch = (prediction - target).pow(2).mean(-1);
    const auto masked = masks.mask.to(torch::kFloat);
    const auto loss = (per_patch * masked).sum() / masked.sum();
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();

    const float value = loss.item<float>();
    if (step == 0) first_loss = value;
    last_loss = value;
    if (step % 10 == 0 || step == steps - 1) {
      const auto roi = (regions == 1);
      const auto roi_ratio = (masks.mask & roi).sum().item<double>() / roi.sum().item<double>();
      const auto bg_ratio = (masks.mask & ~roi).sum().item<double>() / (~roi).sum().item<double>();
      std::printf(
          "step %2d  loss %.4f  masked %lld/%lld per sample  ROI masked %.2f  "
          "background masked %.2f\n",
          step, value, static_cast<long long>(masks.num_masked[0].item<int64_t>()),
          static_cast<long long>(patches), roi_ratio, bg_ratio);
    }
  }
  std::printf("loss went from %.4f to %.4f over %d steps\n", first_loss, last_loss, steps);
  return last_loss < first_loss ? 0 : 1;
}
