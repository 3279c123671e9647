"""Property-based tests of mwm.generate_masks: random grids (2D and 3D), ratios, region layouts,
policies, seeds and batch splits; every drawn request must give exact counts, valid
permutations, noise that sorts to ids_shuffle, and masks that depend only on the global sample
index."""

import math

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mwm
from mwm.masking import POLICIES

PROPERTY_SETTINGS = settings(max_examples=40, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])
ROUNDINGS = ("floor", "round", "ceil_mask", "floor_mask")
SCORE_POLICIES = ("weighted", "loss_guided", "attention_guided")
REGION_POLICIES = ("per_region", "fixed_total")

grids = st.one_of(
    st.tuples(st.integers(1, 12), st.integers(1, 12)),
    st.tuples(st.integers(1, 5), st.integers(1, 6), st.integers(1, 6)),
)
ratios = st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def requests(draw, policies=POLICIES):
    """Keyword arguments of one valid generate_masks call (regions/scores drawn to fit)."""
    grid = draw(grids)
    n = math.prod(grid)
    batch = draw(st.integers(1, 5))
    policy = draw(st.sampled_from(policies))
    kwargs = dict(grid=list(grid), batch_size=batch, policy=policy, ratio=draw(ratios),
                  seed=draw(st.integers(0, 2**64 - 1)), offset=draw(st.integers(0, 10**6)),
                  rounding=draw(st.sampled_from(ROUNDINGS)),
                  order=draw(st.sampled_from(("random", "sorted"))))
    if policy in REGION_POLICIES:
        region_count = draw(st.integers(1, 4))
        kwargs["region_ratios"] = draw(st.lists(ratios, min_size=region_count,
                                                max_size=region_count))
        layout = draw(st.lists(st.integers(0, region_count - 1), min_size=batch * n,
                               max_size=batch * n))
        kwargs["regions"] = torch.tensor(layout, dtype=torch.int32).view(batch, n)
    if policy in SCORE_POLICIES:
        values = draw(st.lists(st.floats(0.0, 1.0, allow_nan=False, width=32),
                               min_size=batch * n, max_size=batch * n))
        kwargs["scores"] = torch.tensor(values, dtype=torch.float32).view(batch, n)
    if policy == "attention_guided":
        kwargs["attention_mode"] = draw(st.sampled_from(("high", "low", "hint")))
        # Hints are revealed from inside the masked set, so their shares stay below the ratio.
        pool = draw(st.floats(0.0, kwargs["ratio"]))
        kwargs["hint_pool_share"] = pool
        kwargs["hint_share"] = draw(st.floats(0.0, pool))
    if policy == "coarse":
        kwargs["coarse_factor"] = draw(st.sampled_from([f for f in (1, 2, 3)
                                                         if all(g % f == 0 for g in grid)]))
    if policy == "block":
        kwargs["block_min_patches"] = draw(st.integers(1, max(1, n // 4)))
    return kwargs


def _check_permutations(result, n):
    shuffle, restore = result.ids_shuffle, result.ids_restore
    expected = torch.arange(n).expand_as(shuffle)
    assert torch.equal(shuffle.sort(dim=1).values, expected)
    assert torch.equal(torch.gather(restore, 1, shuffle), expected)
    visible = n - result.num_masked
    for b in range(shuffle.shape[0]):
        v = int(visible[b])
        # The first `visible` entries of ids_shuffle are exactly the unmasked patches.
        assert not result.mask[b, shuffle[b, :v]].any()
        assert result.mask[b, shuffle[b, v:]].all()
        keep = result.ids_keep[b]
        assert torch.equal(keep[:v].sort().values, shuffle[b, :v].sort().values)
        assert (keep[v:] == -1).all()
        masked = result.ids_masked[b]
        count = int(result.num_masked[b])
        assert torch.equal(masked[:count].sort().values, shuffle[b, v:].sort().values)
        assert (masked[count:] == -1).all()


@PROPERTY_SETTINGS
@given(requests())
def test_outputs_are_consistent_permutations(kwargs):
    result = mwm.generate_masks(**kwargs)
    n = math.prod(kwargs["grid"])
    assert torch.equal(result.mask.sum(dim=1), result.num_masked)
    _check_permutations(result, n)
    # argsort(noise) reproduces ids_shuffle (stable, so ties resolve by patch index).
    assert torch.equal(torch.argsort(result.noise, dim=1, stable=True), result.ids_shuffle)


@PROPERTY_SETTINGS
@given(requests(policies=("random", "fixed_total", "weighted", "block", "loss_guided")))
def test_fixed_total_policies_mask_the_exact_count(kwargs):
    result = mwm.generate_masks(**kwargs)
    n = math.prod(kwargs["grid"])
    keep = mwm.keep_count(n, kwargs["ratio"], kwargs["rounding"])
    assert (result.num_masked == n - keep).all()


@PROPERTY_SETTINGS
@given(requests(policies=("per_region",)))
def test_per_region_masks_each_region_at_its_ratio(kwargs):
    result = mwm.generate_masks(**kwargs)
    regions = kwargs["regions"]
    for r, ratio in enumerate(kwargs["region_ratios"]):
        in_region = regions == r
        sizes = in_region.sum(dim=1)
        masked = (result.mask & in_region).sum(dim=1)
        for size, got in zip(sizes.tolist(), masked.tolist()):
            assert got == size - mwm.keep_count(size, ratio, kwargs["rounding"])


@PROPERTY_SETTINGS
@given(requests())
def test_same_request_gives_same_masks(kwargs):
    first = mwm.generate_masks(**kwargs)
    second = mwm.generate_masks(**kwargs)
    for name in ("mask", "ids_shuffle", "ids_keep", "ids_masked", "noise"):
        assert torch.equal(getattr(first, name), getattr(second, name)), name


@PROPERTY_SETTINGS
@given(requests(), st.data())
def test_batch_split_gives_same_masks_as_whole_batch(kwargs, data):
    whole = mwm.generate_masks(**kwargs)
    batch = kwargs["batch_size"]
    split = data.draw(st.integers(0, batch))
    parts = []
    for begin, end in ((0, split), (split, batch)):
        if begin == end:
            continue
        part = dict(kwargs, batch_size=end - begin, offset=kwargs["offset"] + begin)
        for name in ("regions", "scores"):
            if name in part:
                part[name] = part[name][begin:end]
        parts.append(mwm.generate_masks(**part))
    for name in ("mask", "ids_shuffle", "noise", "num_masked"):
        joined = torch.cat([getattr(p, name) for p in parts])
        assert torch.equal(joined, getattr(whole, name)), name


@PROPERTY_SETTINGS
@given(requests(), st.data())
def test_sample_index_order_does_not_change_a_sample(kwargs, data):
    """A sample keyed by index i gets the same mask whatever batch position it sits at."""
    whole = mwm.generate_masks(**kwargs)
    batch = kwargs["batch_size"]
    order = data.draw(st.permutations(range(batch)))
    index = torch.tensor(order, dtype=torch.int64)
    moved = dict(kwargs, sample_index=index + kwargs["offset"])
    del moved["batch_size"], moved["offset"]
    for name in ("regions", "scores"):
        if name in moved:
            moved[name] = moved[name][index]
    result = mwm.generate_masks(**moved)
    assert torch.equal(result.ids_shuffle, whole.ids_shuffle[index])
    assert torch.equal(result.mask, whole.mask[index])
