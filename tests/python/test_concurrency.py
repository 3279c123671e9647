"""The ops release no shared state between calls: several Python threads calling them at once
(torch ops drop the GIL while the C++ core runs) get exactly what serial calls get."""

import threading

import torch

import mwm

THREADS = 6
ROUNDS = 5


def _mask_call(i):
    grid = (14, 14) if i % 2 == 0 else (4, 6, 6)
    n = 196 if i % 2 == 0 else 144
    generator = torch.Generator().manual_seed(i)
    regions = torch.randint(0, 3, (8, n), generator=generator, dtype=torch.int32)
    scores = torch.rand(8, n, generator=generator)
    policy = ("random", "per_region", "fixed_total", "weighted", "block", "coarse",
              "loss_guided", "attention_guided")[i % 8]
    kwargs = dict(policy=policy, ratio=0.6, seed=1000 + i, offset=37 * i)
    if policy in ("per_region", "fixed_total"):
        kwargs.update(regions=regions, region_ratios=(0.3, 0.6, 0.9))
    elif policy in ("weighted", "loss_guided", "attention_guided"):
        kwargs.update(scores=scores)
    else:
        kwargs.update(batch_size=8)
    result = mwm.generate_masks(grid, **kwargs)
    return (result.mask, result.ids_shuffle, result.ids_keep, result.noise)


def _scores_call(i):
    generator = torch.Generator().manual_seed(100 + i)
    heatmaps = torch.rand(4, 2, 64 + i, 48, generator=generator)
    reduction = ("mean", "max", "fraction", "nearest")[i % 4]
    return (mwm.heatmap_to_patch_scores(heatmaps, (14, 14), reduction=reduction,
                                        combine="weighted_sum", prompt_weights=(0.25, 0.75)),)


def _run_concurrently(calls):
    results = [None] * len(calls)
    errors = []
    start = threading.Barrier(len(calls))

    def worker(slot, call):
        try:
            start.wait()
            results[slot] = [call() for _ in range(ROUNDS)]
        except Exception as exc:  # surfaced in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(slot, call))
               for slot, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return results


def _assert_same(concurrent, serial):
    for round_outputs in concurrent:
        for got, expected in zip(round_outputs, serial):
            assert torch.equal(got, expected)


def test_generate_masks_from_threads_matches_serial_calls():
    calls = [lambda i=i: _mask_call(i) for i in range(THREADS + 2)]
    serial = [call() for call in calls]
    concurrent = _run_concurrently(calls)
    for slot in range(len(calls)):
        _assert_same(concurrent[slot], serial[slot])


def test_patch_scores_from_threads_match_serial_calls():
    calls = [lambda i=i: _scores_call(i) for i in range(THREADS)]
    serial = [call() for call in calls]
    concurrent = _run_concurrently(calls)
    for slot in range(len(calls)):
        _assert_same(concurrent[slot], serial[slot])


def test_mixed_ops_from_threads_match_serial_calls():
    calls = [lambda i=i: (_mask_call(i) if i % 2 else _scores_call(i)) for i in range(THREADS)]
    serial = [call() for call in calls]
    concurrent = _run_concurrently(calls)
    for slot in range(len(calls)):
        _assert_same(concurrent[slot], serial[slot])
