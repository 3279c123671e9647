import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import measure

from mwm.grounding import largest_component_boxes, mwm_region_map, region_level_map


def reference_region_map(heat: np.ndarray, threshold, k, expand) -> np.ndarray:
    """The MWM recipe written independently with scikit-image's labelling and regionprops."""
    labels = measure.label(heat > threshold, connectivity=heat.ndim)
    props = sorted(measure.regionprops(labels), key=lambda p: (-p.area, p.label))[:k]
    out = np.zeros(heat.shape, dtype=bool)
    grids = np.meshgrid(*[np.arange(n) + 0.5 for n in heat.shape], indexing="ij")
    for prop in props:
        inside = np.ones(heat.shape, dtype=bool)
        for axis in range(heat.ndim):
            lo, hi = prop.bbox[axis], prop.bbox[axis + heat.ndim]
            center, half = (lo + hi) / 2, (hi - lo) / 2 * expand
            inside &= (grids[axis] >= center - half) & (grids[axis] < center + half)
        out |= inside
    return out


@pytest.mark.parametrize("expand", [1.0, 1.3, 2.0])
def test_matches_an_independent_reference_on_random_heatmaps(expand):
    rng = np.random.default_rng(7)
    smooth = torch.from_numpy(rng.random((6, 1, 40, 48))).float()
    heat = F.avg_pool2d(smooth, 5, stride=1, padding=2)[:, 0]  # blobs of varied sizes
    heat = (heat - heat.amin()) / (heat.amax() - heat.amin())
    for threshold in (0.5, 0.6):
        ours = mwm_region_map(heat, threshold=threshold, num_components=2, expand_ratio=expand)
        assert ours.dtype == torch.bool and ours.shape == heat.shape
        for b in range(heat.shape[0]):
            expected = reference_region_map(heat[b].numpy(), threshold, 2, expand)
            assert np.array_equal(ours[b].numpy(), expected), (b, threshold)


def test_threshold_is_strict():
    heat = torch.zeros(1, 5, 5)
    heat[0, 1:3, 1:3] = 0.3
    assert not mwm_region_map(heat).any()
    heat[0, 1:3, 1:3] = 0.3001
    assert mwm_region_map(heat).sum() == 4


def test_diagonal_pixels_connect_and_only_the_k_largest_survive():
    heat = torch.zeros(1, 12, 12)
    heat[0, 0, 0] = heat[0, 1, 1] = heat[0, 2, 2] = 1.0  # one diagonal component, bbox 3x3
    heat[0, 6:8, 6:8] = 1.0  # 4 pixels
    heat[0, 10, 0] = 1.0  # 1 pixel
    roi = mwm_region_map(heat, num_components=2)[0]
    assert roi[:3, :3].all() and roi[6:8, 6:8].all()
    assert roi.sum() == 9 + 4 and not roi[10, 0]
    assert mwm_region_map(heat, num_components=None)[0].sum() == 9 + 4 + 1


def test_equal_sizes_keep_the_first_component_in_scan_order():
    heat = torch.zeros(1, 8, 8)
    heat[0, 5:7, 0:2] = 1.0  # found second in row-major scan
    heat[0, 0:2, 5:7] = 1.0  # found first
    roi = mwm_region_map(heat, num_components=1)[0]
    assert roi[0:2, 5:7].all() and roi.sum() == 4


def test_a_component_is_replaced_by_its_filled_bounding_box():
    heat = torch.zeros(1, 9, 9)
    heat[0, 2:7, 2:7] = 1.0
    heat[0, 3:6, 3:6] = 0.0  # a ring: its hole is filled by the box
    heat[0, 7, 7] = 1.0  # touches the ring's corner diagonally: one component
    roi = mwm_region_map(heat, num_components=1)[0]
    expected = torch.zeros(9, 9, dtype=torch.bool)
    expected[2:8, 2:8] = True
    assert torch.equal(roi, expected)


def test_resizing_to_the_patch_grid_uses_pytorch_nearest():
    rng = np.random.default_rng(3)
    heat = torch.from_numpy(rng.random((2, 32, 32))).float()
    full = mwm_region_map(heat, threshold=0.5, num_components=None)
    for grid in [(7, 7), (4, 8), (5, 3)]:
        grid_map = mwm_region_map(heat, threshold=0.5, num_components=None, grid=grid)
        reference = F.interpolate(full[:, None].float(), size=grid, mode="nearest")[:, 0] > 0
        assert torch.equal(grid_map, reference)
    # 14 -> 7 keeps every second row and column, starting at 0.
    pattern = torch.zeros(1, 14, 14)
    pattern[0, ::2, ::2] = 1.0
    roi = mwm_region_map(pattern, num_components=None, grid=(7, 7))
    assert roi.all()


def test_volumes_use_26_connectivity_boxes():
    heat = torch.zeros(1, 6, 6, 6)
    heat[0, 1, 1, 1] = heat[0, 2, 2, 2] = 1.0  # corner-touching voxels: one component
    heat[0, 5, 5, 5] = 1.0
    roi = mwm_region_map(heat, num_components=1, spatial_dims=3)[0]
    assert roi[1:3, 1:3, 1:3].all() and roi.sum() == 8
    expected = reference_region_map(heat[0].numpy(), 0.3, 1, 1.5)
    assert np.array_equal(mwm_region_map(heat, num_components=1, expand_ratio=1.5,
                                         spatial_dims=3)[0].numpy(), expected)


def test_empty_heatmap_has_no_roi_and_boxes_are_reported_largest_first():
    assert not mwm_region_map(torch.zeros(2, 8, 8)).any()
    binary = np.zeros((8, 8), dtype=bool)
    binary[0, 0] = True
    binary[4:7, 4:6] = True
    assert largest_component_boxes(binary, 2) == [((4, 7), (4, 6)), ((0, 1), (0, 1))]


def test_region_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"heatmaps must be \(B, H, W\)"):
        mwm_region_map(torch.zeros(8, 8))
    with pytest.raises(ValueError, match="num_components = 0"):
        mwm_region_map(torch.zeros(1, 8, 8), num_components=0)
    with pytest.raises(ValueError, match="expand_ratio"):
        mwm_region_map(torch.zeros(1, 8, 8), expand_ratio=-1.0)
    with pytest.raises(ValueError, match="NaN or infinity"):
        mwm_region_map(torch.full((1, 2, 2), float("nan")))
    with pytest.raises(ValueError, match="grid"):
        mwm_region_map(torch.zeros(1, 8, 8), grid=(7,))


def test_level_map_highest_level_wins_on_overlap():
    rois = torch.zeros(1, 2, 4, 4, dtype=torch.bool)
    rois[0, 0, :3, :3] = True  # level 2 of 2
    rois[0, 1, 1:, 1:] = True  # level 1 of 2
    levels = region_level_map(rois, [2, 1], 2)
    assert levels[0, 0, 0] == 1.0 and levels[0, 2, 2] == 1.0 and levels[0, 3, 3] == 0.5
    assert levels[0, 0, 3] == 0.0
    with pytest.raises(ValueError, match="levels has 1 entries"):
        region_level_map(rois, [1], 2)
    with pytest.raises(TypeError, match="bool"):
        region_level_map(rois.float(), [1, 2], 2)
