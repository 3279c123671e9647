import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from mwm.viz import (
    MASK_GRAY,
    MASK_OPACITY,
    ROI_COLOR,
    figure_to_array,
    overlay_figure,
    overlay_rgb,
    save_png,
)


def ramp(height=32, width=32):
    return np.tile(np.linspace(10.0, 50.0, width), (height, 1))


def test_image_alone_is_scaled_to_the_full_gray_range():
    picture = overlay_rgb(ramp())
    assert picture.shape == (32, 32, 3) and picture.dtype == np.uint8
    assert picture[0, 0].tolist() == [0, 0, 0] and picture[0, -1].tolist() == [255, 255, 255]
    assert (picture[..., 0] == picture[..., 2]).all()
    chw = overlay_rgb(torch.from_numpy(np.stack([ramp()] * 3)))  # (3, H, W) tensors work too
    assert np.array_equal(chw, picture)


def test_heatmap_is_blended_with_the_colormap_after_bilinear_upsampling():
    heat = np.array([[0.0, 1.0], [0.25, 0.5]])
    picture = overlay_rgb(np.zeros((32, 32)), heatmap=heat, alpha=1.0, cmap="viridis")
    up = torch.nn.functional.interpolate(torch.tensor(heat, dtype=torch.float32)[None, None],
                                         size=(32, 32),
                                         mode="bilinear", align_corners=False)[0, 0].numpy()
    expected = (matplotlib.colormaps["viridis"](up)[..., :3] * 255 + 0.5).astype(np.uint8)
    assert np.abs(picture.astype(int) - expected.astype(int)).max() <= 1
    half = overlay_rgb(np.zeros((32, 32)), heatmap=heat, alpha=0.5, cmap="viridis")
    assert np.abs(half.astype(int) - expected.astype(int) // 2).max() <= 1


def test_masked_patches_are_grayed_and_visible_ones_untouched():
    image = ramp()
    mask = np.zeros(16, dtype=bool)
    mask[[0, 5]] = True  # patches (0, 0) and (1, 1) of a 4x4 grid, 8 px each
    plain = overlay_rgb(image).astype(float) / 255
    picture = overlay_rgb(image, mask=mask).astype(float) / 255
    expected = (1 - MASK_OPACITY) * plain[:8, :8] + MASK_OPACITY * MASK_GRAY
    assert np.abs(picture[:8, :8] - expected).max() <= 1 / 255 + 1e-9
    assert np.abs(picture[8:16, 8:16]
                  - ((1 - MASK_OPACITY) * plain[8:16, 8:16] + MASK_OPACITY * MASK_GRAY)
                  ).max() <= 1 / 255 + 1e-9
    assert np.array_equal(picture[:8, 8:], plain[:8, 8:])
    assert np.array_equal(overlay_rgb(image, mask=mask.reshape(4, 4)),
                          overlay_rgb(image, mask=mask))


def test_region_outline_follows_every_region_edge():
    regions = np.zeros((4, 4))
    regions[1:3, 1:3] = 0.5
    regions[1, 1] = 1.0
    picture = overlay_rgb(np.zeros((32, 32)), region_map=regions, outline_width=1)
    color = (ROI_COLOR * 255 + 0.5).astype(np.uint8)
    is_outline = (picture == color).all(-1)
    assert is_outline[8, 8:24].all() and is_outline[8:24, 8].all()  # outer edge of the ROI
    assert is_outline[15, 8:16].all()  # edge between level 1.0 and level 0.5
    assert not is_outline[20, 20] and not is_outline[0, 0] and not is_outline[28, 28]


def test_overlay_errors():
    with pytest.raises(ValueError, match="mask has 10 patches, not a square grid"):
        overlay_rgb(np.zeros((8, 8)), mask=np.zeros(10, dtype=bool))
    with pytest.raises(ValueError, match="grid 2x2 has 4"):
        overlay_rgb(np.zeros((8, 8)), mask=np.zeros(9, dtype=bool), grid=(2, 2))
    with pytest.raises(ValueError, match="image must be"):
        overlay_rgb(np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="heatmap must be"):
        overlay_rgb(np.zeros((8, 8)), heatmap=np.zeros((1, 8, 8)))
    with pytest.raises(ValueError, match="alpha"):
        overlay_rgb(np.zeros((8, 8)), heatmap=np.zeros((8, 8)), alpha=2.0)


def test_figure_grid_returns_a_figure_renders_and_saves(tmp_path):
    images = torch.rand(2, 32, 32)
    heat = torch.rand(2, 8, 8)
    regions = torch.zeros(2, 4, 4)
    regions[:, 1:3, 1:3] = 1
    masks = torch.zeros(2, 16, dtype=torch.bool)
    masks[:, ::3] = True
    path = tmp_path / "pictures" / "grid.png"
    figure = overlay_figure(images, heatmaps=heat, region_maps=regions, masks=masks, grid=(4, 4),
                            row_titles=["first", "second"], panel_size=2.0, dpi=50, path=path)
    assert isinstance(figure, Figure)
    assert len(figure.axes) == 2 * 4
    assert [ax.get_title() for ax in figure.axes[:4]] == ["image", "heatmap", "region map",
                                                          "mask (gray = masked)"]
    pixels = figure_to_array(figure)
    assert (pixels.shape == (int(round((2.0 * 2 + 0.4) * 50)), 4 * 2 * 50, 4)
            and pixels.dtype == np.uint8)
    with Image.open(path) as saved:
        assert saved.size == (pixels.shape[1], pixels.shape[0])
        assert np.array_equal(np.asarray(saved.convert("RGBA")), pixels)
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]  # the temporary file is gone
    only_images = overlay_figure([np.zeros((8, 8))])
    assert len(only_images.axes) == 1


def test_figure_errors():
    with pytest.raises(ValueError, match="heatmaps has 1 samples but images has 2"):
        overlay_figure(np.zeros((2, 8, 8)), heatmaps=np.zeros((1, 8, 8)))
    with pytest.raises(ValueError, match="column_titles has 1 entries for 2 panels"):
        overlay_figure(np.zeros((1, 8, 8)), heatmaps=np.zeros((1, 8, 8)), column_titles=["x"])
    with pytest.raises(ValueError, match="at least one image"):
        overlay_figure([])


def test_save_png_round_trips(tmp_path):
    picture = overlay_rgb(ramp(), heatmap=np.eye(4))
    path = save_png(picture, tmp_path / "x.png")
    with Image.open(path) as saved:
        assert np.array_equal(np.asarray(saved), picture)
