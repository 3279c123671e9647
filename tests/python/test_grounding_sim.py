"""The benchmark's simulated grounder draws its boxes with mwm.grounding: the same pixels as the
pixel-centre rule it used before, in 2D and 3D."""

import numpy as np

from mwm.bench.grounding_sim import Box, SimulatedGrounder, boxes_to_heatmap
from mwm.bench.phantoms import PROMPT_TARGETS, generate


def centre_rule(boxes, shape):
    """Pixel i is covered when its centre i + 0.5 lies in [lo, hi); the highest score wins."""
    heat = np.zeros(shape, dtype=np.float32)
    for box in boxes:
        region = tuple(
            slice(int(np.ceil(lo - 0.5)), int(np.ceil(hi - 0.5))) for lo, hi in zip(box.lo, box.hi)
        )
        np.maximum(heat[region], box.score, out=heat[region])
    return heat


def random_boxes(rng, shape, count):
    boxes = []
    for _ in range(count):
        lo = rng.uniform(0, np.asarray(shape) * 0.8)
        hi = np.minimum(lo + rng.uniform(0, np.asarray(shape) * 0.5), shape)
        boxes.append(Box(tuple(lo), tuple(hi), float(rng.uniform(0.5, 1.0)), True))
    return boxes


def test_boxes_to_heatmap_matches_the_pixel_centre_rule():
    rng = np.random.default_rng(0)
    for shape in ((64, 48), (16, 20, 24)):
        for _ in range(50):
            boxes = random_boxes(rng, shape, int(rng.integers(0, 5)))
            assert np.array_equal(boxes_to_heatmap(boxes, shape), centre_rule(boxes, shape))
    integer = [Box((2.0, 3.0), (10.0, 7.0), 0.9, True), Box((5.0, 5.0), (12.0, 12.0), 0.7, True)]
    heat = boxes_to_heatmap(integer, (16, 16))
    assert heat[2:10, 3:7].min() == np.float32(0.9) and heat[10:12, 7:12].max() == np.float32(0.7)
    assert heat.sum() == np.float32(0.9) * 32 + np.float32(0.7) * (49 - 10)


def test_the_simulated_grounder_is_unchanged_on_phantoms():
    grounder = SimulatedGrounder(jitter=0.2, miss_rate=0.1, fp_rate=1.0, seed=3)
    checked = 0
    for kind in sorted(PROMPT_TARGETS):
        for index in range(3):
            sample = generate(kind, index, seed=1, size=32)
            for prompt in PROMPT_TARGETS[kind]:
                boxes = grounder.boxes(sample, prompt)
                assert np.array_equal(
                    grounder.heatmap(sample, prompt), centre_rule(boxes, sample.lesion.shape)
                )
                checked += len(boxes)
    assert checked > 0
