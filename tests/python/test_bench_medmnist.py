"""MedMNIST from local .npz files (mwm.bench.medmnist) and the phantoms' heatmap sources
(mwm.bench.guidance), on small synthetic data in MedMNIST's layout."""

import numpy as np
import pytest
import torch

from mwm.bench import pretraining as PT
from mwm.bench import ratios as R
from mwm.bench.guidance import noisy_heatmaps, random_clip_heatmaps, smooth_field
from mwm.bench.medmnist import folder_heatmaps, load_medmnist, npz_path


def _write_npz(root, flag, size=28, rgb=False, multilabel=False, counts=(40, 16, 16)):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in zip(("train", "val", "test"), counts):
        shape = (count, size, size, 3) if rgb else (count, size, size)
        arrays[f"{split}_images"] = rng.integers(0, 256, size=shape, dtype=np.uint8)
        if multilabel:
            labels = (rng.random((count, 14)) < 0.1).astype(np.uint8)
            labels[0] = 0  # at least one image without a finding
        else:
            labels = (np.arange(count) % 2).reshape(count, 1).astype(np.uint8)
        arrays[f"{split}_labels"] = labels
    path = npz_path(root, flag, size)
    np.savez(path, **arrays)
    return path, arrays


def test_file_names_follow_medmnist():
    assert npz_path("/d", "pneumoniamnist").name == "pneumoniamnist.npz"
    assert npz_path("/d", "pneumoniamnist", 224).name == "pneumoniamnist_224.npz"
    with pytest.raises(ValueError, match="flag='organmnist3d'"):
        npz_path("/d", "organmnist3d")
    with pytest.raises(ValueError, match="size=32"):
        npz_path("/d", "pathmnist", 32)


def test_missing_file_names_the_path_and_never_downloads(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"pneumoniamnist_64\.npz.*never downloads"):
        load_medmnist(tmp_path, "pneumoniamnist", file_size=64)
    settings = R.preset("micro", data="medmnist", root=str(tmp_path), flag="pneumoniamnist")
    with pytest.raises(FileNotFoundError, match="pneumoniamnist.npz"):
        R.validate_settings(settings)


def test_grey_images_and_single_labels_are_read_scaled_and_resized(tmp_path):
    _, arrays = _write_npz(tmp_path, "pneumoniamnist")
    data = load_medmnist(tmp_path, "pneumoniamnist", size=32, limits={"train": 24})
    train = data.splits["train"]
    assert train.images.shape == (24, 1, 32, 32) and data.splits["val"].images.shape[0] == 16
    assert 0.0 <= float(train.images.min()) and float(train.images.max()) <= 1.0
    assert train.labels.tolist() == arrays["train_labels"][:24, 0].tolist()
    native = load_medmnist(tmp_path, "pneumoniamnist")
    expected = torch.from_numpy(arrays["test_images"][3].astype(np.float32) / 255)
    assert torch.equal(native.splits["test"].images[3, 0], expected)


def test_rgb_images_become_grey_and_multilabel_becomes_any_finding(tmp_path):
    _, arrays = _write_npz(tmp_path, "chestmnist", size=64, rgb=True, multilabel=True)
    data = load_medmnist(tmp_path, "chestmnist", file_size=64, size=32)
    assert data.class_names == ("no finding", "finding")
    labels = data.splits["train"].labels
    assert labels.tolist() == arrays["train_labels"].any(axis=1).astype(int).tolist()
    assert labels[0] == 0 and data.splits["train"].images.shape[1] == 1
    rgb = load_medmnist(tmp_path, "chestmnist", file_size=64, channels=3)
    assert rgb.splits["val"].images.shape == (16, 3, 64, 64)


def test_a_file_without_medmnist_keys_is_named(tmp_path):
    np.savez(tmp_path / "bloodmnist.npz", images=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="lacks train_images"):
        load_medmnist(tmp_path, "bloodmnist")


def test_heatmaps_from_a_folder(tmp_path):
    for i in range(3):
        np.save(tmp_path / f"val_{i}.npy", np.full((7, 7), i / 4, np.float32))
    heat = folder_heatmaps(tmp_path, "val", 3, 28)
    assert heat.shape == (3, 28, 28) and torch.allclose(heat[2], torch.full((28, 28), 0.5))
    with pytest.raises(FileNotFoundError, match="val_3.npy"):
        folder_heatmaps(tmp_path, "val", 4, 28)


@pytest.mark.slow
def test_the_benchmark_runs_on_a_medmnist_file(tmp_path):
    _write_npz(tmp_path, "pneumoniamnist", counts=(32, 32, 32))
    settings = R.preset("micro", data="medmnist", root=str(tmp_path), flag="pneumoniamnist",
                        configs=("none", "random-0.7", "mwm-0.8/0.4"))
    doc = R.run_ratios(settings, progress=False)
    rows = {r["config"]: r for r in doc["summary"]}
    assert set(rows) == {"none", "random-0.7", "mwm-0.8/0.4"}
    assert all(r["dataset"] == "pneumoniamnist" for r in doc["runs"])
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in doc["runs"])
    assert all(r["dice"] is None or np.isnan(r["dice"]) for r in doc["runs"])  # no masks
    assert rows["random-0.7"]["effective_ratio_mean"] == pytest.approx(11 / 16)


# --- heatmap sources of the phantoms ------------------------------------------------------------


def test_noisy_heatmaps_blend_boxes_and_a_deterministic_field():
    clean = torch.zeros(2, 32, 32)
    clean[:, 8:16, 8:16] = 0.9
    assert torch.equal(noisy_heatmaps(clean, 1.0, seed=0, start=0), clean)
    half = noisy_heatmaps(clean, 0.5, seed=0, start=5)
    field = torch.from_numpy(smooth_field((32, 32), 0, 6))
    assert torch.allclose(half[1], 0.5 * clean[1] + 0.5 * field)
    assert torch.equal(half, noisy_heatmaps(clean, 0.5, seed=0, start=5))
    assert not torch.equal(half[0], half[1])
    assert 0.0 <= float(half.min()) and float(half.max()) <= 1.0


def test_random_clip_heatmaps_come_from_the_grounding_pipeline():
    images = torch.rand(3, 1, 32, 32)
    heat = random_clip_heatmaps(images, "tumor", seed=0)
    assert heat.shape == (3, 32, 32)
    assert 0.0 <= float(heat.min()) and float(heat.max()) <= 1.0
    assert torch.equal(heat, random_clip_heatmaps(images, "tumor", seed=0))
    assert not torch.equal(heat, random_clip_heatmaps(images, "tumor", seed=1))
    # min-max normalized on the patch grid, then upsampled: every image spans most of [0, 1]
    spread = heat.flatten(1).amax(1) - heat.flatten(1).amin(1)
    assert bool((spread > 0.5).all())


def test_guidance_quality_moves_the_roi_away_from_the_lesion():
    def roi_quality(source, quality=0.5):
        s = R.preset("micro", heatmaps=source, heatmap_quality=quality, pretrain_samples=48)
        data = R.prepare_builtin("brain", s)
        lesion = PT.lesion_patches(data.pretrain.lesions, s.patch_size)
        import mwm

        scores = mwm.heatmap_to_patch_scores(data.pretrain.heatmaps, list(data.grid),
                                             reduction="max")
        roi = scores > 0.5
        recall = float((roi & lesion).sum() / lesion.sum().clamp_min(1))
        precision = float((roi & lesion).sum() / roi.sum().clamp_min(1))
        return recall, precision

    gt, noisy0 = roi_quality("gt"), roi_quality("noisy", 0.0)
    assert gt[0] == pytest.approx(1.0)  # error-free boxes cover every lesion patch
    assert noisy0[1] < 0.5 * gt[1]  # pure noise: the ROI is mostly not lesion
    with pytest.raises(ValueError, match="heatmap_quality=2"):
        R.validate_settings(R.preset("micro", heatmaps="noisy", heatmap_quality=2))
    with pytest.raises(ValueError, match="heatmaps='best'"):
        R.validate_settings(R.preset("micro", heatmaps="best"))
