"""Built-in data of `mwm-bench ratios`: procedural phantoms and the simulated grounding model."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from mwm.bench.grounding_sim import SimulatedGrounder, boxes_to_heatmap, structure_boxes
from mwm.bench.phantoms import CLASS_NAMES, PhantomDataset, generate


@pytest.mark.parametrize("kind,size", [("brain", 64), ("chest", 64), ("brain3d", 24)])
def test_same_seed_and_index_give_the_same_phantom(kind, size):
    a, b = generate(kind, 7, seed=3, size=size), generate(kind, 7, seed=3, size=size)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.lesion, b.lesion)
    assert a.label == b.label
    assert not np.array_equal(a.image, generate(kind, 7, seed=4, size=size).image)
    assert not np.array_equal(a.image, generate(kind, 11, seed=3, size=size).image)
    spatial = (size,) * (3 if kind == "brain3d" else 2)
    assert a.image.shape == (1, *spatial) and a.image.dtype == np.float32
    assert a.lesion.shape == spatial and a.lesion.dtype == bool


@pytest.mark.parametrize("kind,organ",
                         [("brain", "brain"), ("chest", "lungs"), ("brain3d", "brain")])
def test_lesions_are_small_inside_the_organ_and_only_in_lesion_classes(kind, organ):
    size = 24 if kind == "brain3d" else 64
    for i in range(12):
        s = generate(kind, i, seed=0, size=size)
        assert s.lesion.any() == (s.label != 0), (kind, i, s.label)
        assert s.lesion.mean() < 0.1  # small: a few percent of the image
        assert not (s.lesion & ~s.anatomy[organ]).any()


def _lesion_features(sample):
    img, lesion = sample.image[0], sample.lesion
    if not lesion.any():
        return np.zeros(4)
    ring = ndimage.binary_dilation(lesion, iterations=3) & ~lesion
    inner = ndimage.binary_erosion(lesion)
    core = img[inner].mean() if inner.any() else img[lesion].mean()
    return np.array([img[lesion].mean() - img[ring].mean(), img[lesion].std(),
                     core - img[lesion].mean(), np.sqrt(lesion.sum())])


def _nearest_centroid_accuracy(train_x, train_y, test_x, test_y):
    mean, std = train_x.mean(0), train_x.std(0) + 1e-9
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    centroids = np.stack([train_x[train_y == k].mean(0) for k in np.unique(train_y)])
    predicted = ((test_x[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
    return (predicted == test_y).mean()


@pytest.mark.parametrize("kind", ["brain", "chest"])
def test_the_class_is_in_the_lesion_not_in_global_intensity(kind):
    train = [generate(kind, i, seed=0, size=64) for i in range(120)]
    test = [generate(kind, i, seed=0, size=64) for i in range(120, 240)]
    y, yt = np.array([s.label for s in train]), np.array([s.label for s in test])
    lesion_acc = _nearest_centroid_accuracy(np.stack([_lesion_features(s) for s in train]), y,
                                            np.stack([_lesion_features(s) for s in test]), yt)
    def whole(s):
        return [s.image.mean(), s.image.std()]

    global_acc = _nearest_centroid_accuracy(np.array([whole(s) for s in train]), y,
                                            np.array([whole(s) for s in test]), yt)
    assert lesion_acc > 0.9, lesion_acc  # four classes: chance is 0.25
    assert global_acc < 0.45, global_acc


def test_dataset_is_balanced_and_stacks():
    data = PhantomDataset("chest", 16, size=32, seed=1, start=100)
    item = data[0]
    assert item["image"].shape == (1, 32, 32) and item["index"] == 100
    stacked = data.stacked()
    assert stacked["image"].shape == (16, 1, 32, 32)
    assert torch.bincount(stacked["label"], minlength=4).tolist() == [4, 4, 4, 4]
    assert data.class_names == CLASS_NAMES["chest"]


@pytest.mark.parametrize("call,match", [
    (lambda: generate("knee", 0), "kind='knee'"),
    (lambda: generate("brain", 0, size=8), "size=8"),
    (lambda: generate("brain", -1), "index=-1"),
    (lambda: PhantomDataset("brain", 0), "length=0"),
])
def test_bad_phantom_arguments_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- simulated grounding -------------------------------------------------------------------


def _lesion_samples(n, kind="brain"):
    return [s for s in (generate(kind, i, seed=0, size=64) for i in range(n)) if s.label]


def test_perfect_grounder_boxes_the_lesion_exactly():
    g = SimulatedGrounder(jitter=0.0, miss_rate=0.0, fp_rate=0.0, expand_ratio=1.0)
    for s in _lesion_samples(12):
        boxes = g.boxes(s, "tumor")
        truth = structure_boxes(s.lesion)
        assert len(boxes) == len(truth)
        for box, (lo, hi) in zip(boxes, truth):
            assert box.is_true and np.allclose(box.lo, lo) and np.allclose(box.hi, hi)
        heat = g.heatmap(s, "tumor")
        assert heat.shape == s.lesion.shape and (heat[s.lesion] >= 0.6).all()
        assert heat.sum() > 0 and (heat > 0).sum() >= s.lesion.sum()


def test_grounder_miss_and_false_positive_rates_match_the_settings():
    samples = _lesion_samples(480)  # 360 lesion images
    g = SimulatedGrounder(jitter=0.1, miss_rate=0.3, fp_rate=0.5, seed=5)
    true_total = found = fps = 0
    for s in samples:
        boxes = g.boxes(s, "tumor")
        true_total += len(structure_boxes(s.lesion))
        found += sum(b.is_true for b in boxes)
        fps += sum(not b.is_true for b in boxes)
    miss = 1 - found / true_total
    assert abs(miss - 0.3) < 0.06, miss
    assert abs(fps / len(samples) - 0.5) < 0.1, fps / len(samples)


def test_grounder_jitter_matches_the_setting():
    jitter = 0.2
    g = SimulatedGrounder(jitter=jitter, miss_rate=0.0, fp_rate=0.0, expand_ratio=1.0, seed=2)
    shifts = []
    for s in _lesion_samples(300, kind="chest"):
        truth = structure_boxes(s.lesion)
        boxes = g.boxes(s, "lesion")
        if len(truth) != 1 or len(boxes) != 1:
            continue
        lo, hi = truth[0]
        box = boxes[0]
        inside = np.all(np.asarray(box.lo) > 0) and np.all(np.asarray(box.hi) < 64)
        if inside:  # clipping at the border would bias the shift
            shifts.extend(((box.centre - (lo + hi) / 2) / (hi - lo)).tolist())
    measured = np.std(shifts)
    assert len(shifts) > 300
    assert abs(measured - jitter) < 0.04, measured


def test_grounder_is_deterministic_and_seeded():
    s = _lesion_samples(4)[0]
    a = SimulatedGrounder(jitter=0.3, fp_rate=2.0, seed=1).heatmap(s, "tumor")
    b = SimulatedGrounder(jitter=0.3, fp_rate=2.0, seed=1).heatmap(s, "tumor")
    c = SimulatedGrounder(jitter=0.3, fp_rate=2.0, seed=2).heatmap(s, "tumor")
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_anatomy_prompts_box_the_organs():
    g = SimulatedGrounder(jitter=0.0, miss_rate=0.0, fp_rate=0.0, expand_ratio=1.0)
    chest = generate("chest", 0, size=64)
    assert len(g.boxes(chest, "lungs")) == 2
    brain = generate("brain3d", 1, size=24)
    heat = g.heatmap(brain, "brain")
    assert heat.shape == (24, 24, 24) and (heat[brain.anatomy["brain"]] > 0).all()
    with pytest.raises(ValueError, match="prompt='lungs'"):
        g.boxes(brain, "lungs")


def test_boxes_to_heatmap_covers_pixel_centres():
    from mwm.bench.grounding_sim import Box

    heat = boxes_to_heatmap([Box((1.0, 2.4), (3.0, 4.6), 0.7, True)], (6, 6))
    # Pixel i is inside when its centre i + 0.5 lies in [lo, hi): rows 1-2, columns 2-4.
    rows, cols = np.nonzero(heat)
    assert set(rows.tolist()) == {1, 2} and set(cols.tolist()) == {2, 3, 4}
    assert len(rows) == 6 and np.allclose(heat[heat > 0], 0.7)


@pytest.mark.parametrize("kwargs,match", [
    ({"miss_rate": 1.5}, "miss_rate=1.5"),
    ({"jitter": -0.1}, "jitter=-0.1"),
    ({"fp_rate": float("nan")}, "fp_rate=nan"),
    ({"expand_ratio": 0.0}, "expand_ratio=0"),
])
def test_bad_grounder_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SimulatedGrounder(**kwargs)
