"""Under torch.distributed (gloo, 2 processes) every global sample gets the mask it gets in one
process: masks depend only on (seed, global sample index)."""

import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import mwm

SAMPLES, BATCH, SEED = 16, 4, 21


def _heatmaps(indices):
    return torch.stack([torch.rand(56, 56, generator=torch.Generator().manual_seed(i))
                        for i in indices])


def _masks_of(indices):
    masker = mwm.TextGuidedMasker((7, 7), policy="per_region", seed=SEED)
    return masker(_heatmaps(indices), sample_index=torch.tensor(indices)).ids_shuffle


def _worker(rank, world, init_file, out_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        # DistributedSampler-style interleaved shards.
        mine = list(range(rank, SAMPLES, world))
        local = torch.cat([_masks_of(mine[i:i + BATCH]) for i in range(0, len(mine), BATCH)])
        gathered = [torch.empty_like(local) for _ in range(world)]
        dist.all_gather(gathered, local)
        if rank == 0:
            merged = torch.empty(SAMPLES, local.shape[1], dtype=local.dtype)
            for r, part in enumerate(gathered):
                merged[r::world] = part
            torch.save(merged, out_file)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_gloo_gives_single_process_masks():
    single = torch.cat([_masks_of(list(range(i, i + BATCH))) for i in range(0, SAMPLES, BATCH)])
    with tempfile.TemporaryDirectory() as tmp:
        init_file, out_file = os.path.join(tmp, "init"), os.path.join(tmp, "masks.pt")
        mp.spawn(_worker, args=(2, init_file, out_file), nprocs=2, join=True)
        distributed = torch.load(out_file)
    assert torch.equal(distributed, single)
