"""DynamicFeaturePool (CORN's labeled feature pool) and confidence filtering."""

import io

import pytest
import torch

import mwm
from mwm.feature_pool import DynamicFeaturePool, confidence_filter

# --- confidence filtering --------------------------------------------------------------------

def test_confidence_filter_keeps_both_ends_per_class():
    predicted = torch.tensor([0, 1, 0, 0, 1, 0, 0, 1, 0, 0])
    confidence = torch.tensor([0.9, 0.8, 0.1, 0.5, 0.6, 0.7, 0.3, 0.99, 0.95, 0.2])
    kept = confidence_filter(predicted, confidence, 2, top=0.25, bottom=0.25)
    # Class 0: indices 0,2,3,5,6,8,9 (n=7) -> floor(1.75) = 1 from each end.
    assert kept[0].tolist() == [8, 2]
    # Class 1: n = 3 -> floor(0.75) = 0 each: nothing.
    assert kept[1].tolist() == []
    kept = confidence_filter(predicted, confidence, 2, top=0.5, bottom=0.0)
    assert kept[0].tolist() == [8, 0, 5]
    assert kept[1].tolist() == [7]
    kept = confidence_filter(predicted, confidence, 2, top=0.0, bottom=0.5)
    assert kept[0].tolist() == [6, 9, 2]


def test_confidence_filter_caps_ties_and_full_classes():
    predicted = torch.zeros(8, dtype=torch.int64)
    confidence = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.9, 0.1, 0.5, 0.5])
    kept = confidence_filter(predicted, confidence, 1, top=0.5, bottom=0.5, max_per_side=2)
    # One ranking: 4, then the ties 0,1,2,3,6,7 in index order, then 5; never a duplicate.
    assert kept[0].tolist() == [4, 0, 7, 5]
    all_equal = torch.full((6,), 0.3)
    kept = confidence_filter(torch.zeros(6, dtype=torch.int64), all_equal, 1, top=0.34, bottom=0.34)
    assert kept[0].tolist() == [0, 1, 4, 5]
    kept = confidence_filter(predicted, confidence, 3, top=0.6, bottom=0.5)
    assert sorted(kept[0].tolist()) == list(range(8))
    assert kept[1].numel() == 0 and kept[2].numel() == 0


@pytest.mark.parametrize("kwargs,error,pattern", [
    (dict(top=1.5), ValueError, r"top = 1.5: must be a share in \[0, 1\]"),
    (dict(bottom=-0.1), ValueError, r"bottom = -0.1"),
    (dict(top=0.0, bottom=0.0), ValueError, "would keep nothing"),
    (dict(max_per_side=0), ValueError, "max_per_side = 0"),
    (dict(num_classes=2), ValueError, r"predicted holds classes in \[0, 2\]: must lie in \[0, 2\)"),
])
def test_confidence_filter_rejects_bad_arguments(kwargs, error, pattern):
    args = dict(num_classes=3)
    args.update(kwargs)
    with pytest.raises(error, match=pattern):
        confidence_filter(torch.tensor([0, 2, 1]), torch.tensor([0.5, 0.2, 0.9]), **args)


def test_confidence_filter_rejects_bad_tensors():
    with pytest.raises(ValueError, match="must be 1-D of the same length"):
        confidence_filter(torch.tensor([0, 1]), torch.tensor([0.5]), 2)
    with pytest.raises(TypeError, match="integer class indices"):
        confidence_filter(torch.tensor([0.0, 1.0]), torch.tensor([0.5, 0.4]), 2)
    with pytest.raises(ValueError, match="NaN or Inf"):
        confidence_filter(torch.tensor([0, 1]), torch.tensor([0.5, float("nan")]), 2)


# --- the pool --------------------------------------------------------------------------------

def _volume_batch(batch, d, size, seed):
    """Features whose first channel encodes (sample, voxel) so tests can tell which were kept."""
    g = torch.Generator().manual_seed(seed)
    voxels = size ** 3
    features = torch.randn(batch, d, size, size, size, generator=g)
    features[:, 0] = (torch.arange(batch * voxels, dtype=torch.float32)
                      .view(batch, size, size, size))
    labels = torch.randint(0, 2, (batch, size, size, size), generator=g)
    return features, labels


def test_update_keeps_only_voxels_every_branch_gets_right():
    features, labels = _volume_batch(2, 3, 4, 0)
    wrong_a = torch.zeros_like(labels, dtype=torch.bool)
    wrong_a[0, 0, 0, :3] = True
    wrong_b = torch.zeros_like(labels, dtype=torch.bool)
    wrong_b[1, 2, :, 1] = True
    pred_a = torch.where(wrong_a, 1 - labels, labels)
    pred_b = torch.where(wrong_b, 1 - labels, labels)
    pool = DynamicFeaturePool(num_slots=5, num_classes=2, feature_dim=3, slot_capacity=64)
    pool.update(torch.tensor([3, 1]), features, labels, [pred_a, pred_b])
    correct = ~(wrong_a | wrong_b)
    for b, slot in ((0, 3), (1, 1)):
        for c in range(2):
            keep = (correct[b] & (labels[b] == c)).flatten()
            expected = features[b].flatten(1).T[keep]
            n = int(pool.counts[slot, c])
            assert n == expected.shape[0]
            torch.testing.assert_close(pool.features[slot, c, :n], expected, rtol=0, atol=0)
    assert pool.counts[[0, 2, 4]].sum() == 0


def test_ema_blends_when_counts_match_and_replaces_otherwise():
    pool = DynamicFeaturePool(2, 2, 4, slot_capacity=8, momentum=0.9)
    first = torch.randn(5, 4)
    second = torch.randn(5, 4)
    labels = torch.tensor([0, 0, 1, 0, 1])
    pool.update_slot(0, first, labels)
    pool.update_slot(0, second, labels)
    torch.testing.assert_close(pool.features[0, 0, :3],
                               0.9 * first[labels == 0] + 0.1 * second[labels == 0])
    torch.testing.assert_close(pool.features[0, 1, :2],
                               0.9 * first[labels == 1] + 0.1 * second[labels == 1])
    # A different number of class-0 features: replaced, and the stale tail cleared.
    third = torch.randn(3, 4)
    pool.update_slot(0, third, torch.tensor([0, 0, 1]))
    assert pool.counts[0].tolist() == [2, 1]
    torch.testing.assert_close(pool.features[0, 0, :2], third[:2])
    assert pool.features[0, 0, 2:].abs().sum() == 0
    # A class with no trustworthy voxel now is emptied in that slot.
    pool.update_slot(0, torch.randn(2, 4), torch.tensor([1, 1]))
    assert pool.counts[0].tolist() == [0, 2]
    replace = DynamicFeaturePool(1, 2, 4, slot_capacity=8, update="replace")
    replace.update_slot(0, first, labels)
    replace.update_slot(0, second, labels)
    torch.testing.assert_close(replace.features[0, 0, :3], second[labels == 0])


def test_thinning_keeps_evenly_spaced_features_in_voxel_order():
    pool = DynamicFeaturePool(1, 1, 1, slot_capacity=4)
    values = torch.arange(10, dtype=torch.float32).unsqueeze(1)
    pool.update_slot(0, values, torch.zeros(10, dtype=torch.int64))
    assert pool.features[0, 0, :, 0].tolist() == [0.0, 2.0, 5.0, 7.0]


def test_memory_is_bounded_by_the_capacity():
    pool = DynamicFeaturePool(num_slots=3, num_classes=2, feature_dim=8, slot_capacity=50)
    size_before = pool.nbytes
    shape_before = tuple(pool.features.shape)
    for step in range(12):
        features, labels = _volume_batch(3, 8, 8, step)  # 512 voxels per sample
        pool.update(torch.tensor([0, 1, 2]), features, labels, [labels])
        assert pool.counts.max() <= 50
        assert bool((pool.stored_per_class() <= pool.capacity_per_class).all())
    assert pool.nbytes == size_before
    assert tuple(pool.features.shape) == shape_before == (3, 2, 50, 8)
    assert pool.stored_per_class().tolist() == [150, 150]
    assert pool.capacity_per_class == 150


def _filled_pool(seed=7):
    pool = DynamicFeaturePool(4, 2, 3, slot_capacity=20, seed=seed)
    for slot in range(4):
        g = torch.Generator().manual_seed(100 + slot)
        pool.update_slot(slot, torch.randn(25, 3, generator=g),
                         (torch.arange(25) % 3 == 0).long())
    return pool


def test_sample_draws_distinct_stored_features_per_class():
    pool = _filled_pool()
    stored = [pool.stored(c) for c in range(2)]
    assert [s.shape[0] for s in stored] == [4 * 16, 4 * 9]
    drawn = pool.sample(30)
    assert drawn[0].shape == (30, 3)
    assert drawn[1].shape == (30, 3)
    for c in range(2):
        rows = {tuple(r.tolist()) for r in drawn[c]}
        assert len(rows) == 30
        assert rows <= {tuple(r.tolist()) for r in stored[c]}
    assert pool.sample(40)[1] is None  # class 1 holds 36
    assert pool.sample(40)[0].shape == (40, 3)


def test_sampling_is_deterministic_with_a_seed():
    a, b, other = _filled_pool(3), _filled_pool(3), _filled_pool(4)
    for _ in range(3):
        da, db, do = a.sample(10), b.sample(10), other.sample(10)
        assert torch.equal(da[0], db[0]) and torch.equal(da[1], db[1])
    assert not torch.equal(da[0], do[0])


def test_state_dict_round_trip_continues_identically():
    pool = _filled_pool(11)
    pool.sample(5)
    buffer = io.BytesIO()
    torch.save(pool.state_dict(), buffer)
    buffer.seek(0)
    restored = DynamicFeaturePool(4, 2, 3, slot_capacity=20, seed=999)
    restored.load_state_dict(torch.load(buffer))
    assert torch.equal(restored.features, pool.features)
    assert torch.equal(restored.counts, pool.counts)
    for _ in range(2):
        x, y = pool.sample(12), restored.sample(12)
        assert torch.equal(x[0], y[0]) and torch.equal(x[1], y[1])
    # Same updates afterwards give the same buffers.
    update = torch.randn(7, 3)
    labels = torch.tensor([0, 1, 0, 0, 1, 1, 0])
    pool.update_slot(2, update, labels)
    restored.update_slot(2, update, labels)
    assert torch.equal(restored.features, pool.features)


def test_load_state_dict_rejects_another_shape():
    state = _filled_pool().state_dict()
    with pytest.raises(ValueError, match="pool state has slot_capacity = 20, this pool 10"):
        DynamicFeaturePool(4, 2, 3, slot_capacity=10).load_state_dict(state)
    with pytest.raises(KeyError, match="missing"):
        DynamicFeaturePool(4, 2, 3, slot_capacity=20).load_state_dict({"config": {}})


@pytest.mark.parametrize("kwargs,pattern", [
    (dict(num_slots=0), "num_slots = 0"),
    (dict(feature_dim=2.5), "feature_dim = 2.5"),
    (dict(slot_capacity=0), "slot_capacity = 0"),
    (dict(momentum=1.2), "momentum = 1.2"),
    (dict(update="mean"), "update = 'mean': must be one of ema, replace"),
    (dict(seed=-1), "seed = -1"),
])
def test_pool_rejects_bad_settings(kwargs, pattern):
    args = dict(num_slots=2, num_classes=2, feature_dim=4)
    args.update(kwargs)
    with pytest.raises(ValueError, match=pattern):
        DynamicFeaturePool(**args)


def test_pool_rejects_bad_updates():
    pool = DynamicFeaturePool(2, 2, 4)
    with pytest.raises(ValueError, match=r"slot = 2: must be an integer in \[0, 2\)"):
        pool.update_slot(2, torch.randn(3, 4), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"labels hold classes in \[0, 5\]"):
        pool.update_slot(0, torch.randn(3, 4), torch.tensor([0, 5, 1]))
    with pytest.raises(ValueError, match=r"expected \(n, 4\)"):
        pool.update_slot(0, torch.randn(3, 5), torch.zeros(3, dtype=torch.int64))
    bad = torch.randn(3, 4)
    bad[1, 1] = float("nan")
    with pytest.raises(ValueError, match="contain NaN or Inf"):
        pool.update_slot(0, bad, torch.zeros(3, dtype=torch.int64))
    features, labels = _volume_batch(2, 4, 3, 0)
    with pytest.raises(ValueError, match="3 slots for a batch of 2"):
        pool.update(torch.tensor([0, 1, 1]), features, labels, [labels])
    with pytest.raises(ValueError, match=r"predictions\[1\] has shape"):
        pool.update(torch.tensor([0, 1]), features, labels, [labels, labels[:1]])
    with pytest.raises(ValueError, match="dimension 1 must equal feature_dim = 4"):
        pool.update(torch.tensor([0, 1]), features[:, :3], labels, [labels])
    with pytest.raises(ValueError, match="num_per_class = 0"):
        pool.sample(0)


def test_pool_and_class_wise_coral_work_together():
    pool = _filled_pool(5)
    g = torch.Generator().manual_seed(0)
    unlabeled = torch.randn(200, 3, generator=g, requires_grad=True)
    predicted = torch.randint(0, 2, (200,), generator=g)
    confidence = torch.rand(200, generator=g)
    groups = confidence_filter(predicted, confidence, 2, top=0.25, bottom=0.25)
    result = mwm.class_wise_coral([unlabeled[i] for i in groups], pool.sample(30))
    assert bool(result.valid.all())
    mwm.class_alignment(result).backward()
    assert unlabeled.grad.abs().sum() > 0
