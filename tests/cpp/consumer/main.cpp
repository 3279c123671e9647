// A downstream project: 14x14 grid, MAE random masking at 0.75 keeps int(196 * 0.25) = 49.
#include <mwm/masking.hpp>

#include <iostream>

int main() {
  mwm::mask_request request;
  request.grid = mwm::make_grid_2d(14, 14);
  request.batch = 4;
  request.policy.ratio = 0.75;
  const auto masks = mwm::generate_masks(request);
  for (auto masked : masks.num_masked) {
    if (masked != 147) {
      std::cerr << "expected 147 masked patches, got " << masked << "\n";
      return 1;
    }
  }
  std::cout << "consumer ok\n";
  return 0;
}
