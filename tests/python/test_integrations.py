"""Drop-in integrations: MAE, HF transformers ViTMAE, SparK, lightly, data loaders."""

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import mwm
from mwm.bench import references as ref
from mwm.integrations import (
    MaskingCollate,
    MaskingTransform,
    lightly_token_indices,
    random_masking,
    spark_active_masks,
    vitmae_noise,
)
from mwm.integrations.mae import apply_mae_masks


def test_mae_random_masking_contract_matches_mae_given_the_same_noise():
    x = torch.randn(4, 196, 32)
    x_masked, mask, ids_restore = random_masking(x, 0.75, seed=2, offset=4)
    noise = mwm.generate_masks((14, 14), 4, ratio=0.75, seed=2, offset=4).noise
    expected = ref.mae_random_masking_with_noise(x, 0.75, noise)
    assert torch.equal(x_masked, expected[0])
    assert torch.equal(mask, expected[1])
    assert torch.equal(ids_restore, expected[2])


def test_mae_random_masking_with_heatmaps_masks_roi_more():
    x = torch.randn(8, 49, 16)
    heat = torch.zeros(8, 224, 224)
    heat[:, :96, :96] = 1.0  # a 3x3 patch ROI in the corner
    x_masked, mask, ids_restore = random_masking(x, 0.5, heatmaps=heat)
    len_keep = int(49 * (1 - 0.5))  # MAE's count: 24 visible, 25 masked
    assert x_masked.shape == (8, len_keep, 16)
    assert mask.sum(1).unique().tolist() == [49 - len_keep]
    # The visible tokens are the rows of x that the mask leaves unmasked, in ids_restore's order.
    ids_keep = ids_restore.argsort(1)[:, :len_keep]
    assert torch.equal(x_masked, torch.gather(x, 1, ids_keep[..., None].expand(-1, -1, 16)))
    assert not bool(mask.gather(1, ids_keep).any())
    roi = torch.zeros(7, 7, dtype=torch.bool)
    roi[:3, :3] = True
    roi = roi.flatten()
    assert mask[:, roi].mean() > mask[:, ~roi].mean()
    with pytest.raises(ValueError, match="per_region"):
        random_masking(x, 0.5, heatmaps=heat, masker=mwm.TextGuidedMasker((7, 7)))


def test_mae_masks_refuse_a_result_whose_visible_count_varies():
    regions = torch.zeros(2, 49, dtype=torch.int32)
    regions[0, :20] = 1
    result = mwm.generate_masks((7, 7), 2, policy="per_region", regions=regions,
                                region_ratios=(0.2, 0.9), seed=1)
    assert result.num_visible[0] != result.num_visible[1]  # so ids_keep carries -1 padding
    with pytest.raises(ValueError, match=r"visible counts \[\d+, \d+\] per sample"):
        apply_mae_masks(torch.randn(2, 49, 8), result)


def test_hf_vitmae_keeps_exactly_mwm_visible_set():
    import transformers  # a test dependency (requirements-dev.txt): missing it is a failure
    config = transformers.ViTMAEConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=64, image_size=32, patch_size=8,
                                       num_channels=3, mask_ratio=0.5)
    torch.manual_seed(0)
    model = transformers.ViTMAEModel(config).eval()
    heat = torch.rand(3, 32, 32)
    masker = mwm.TextGuidedMasker((4, 4), policy="fixed_total", ratio=0.5, seed=9)
    result = masker(heat)
    with torch.no_grad():
        out = model(pixel_values=torch.randn(3, 3, 32, 32), noise=vitmae_noise(result, 0.5))
    assert torch.equal(out.mask.bool(), result.mask)
    assert torch.equal(out.ids_restore, result.ids_restore)
    with pytest.raises(ValueError, match="mask_ratio"):
        vitmae_noise(result, 0.75)


def test_spark_active_masks_and_pyramid():
    result = mwm.generate_masks((7, 7), 2, ratio=0.6, rounding="round")
    active = spark_active_masks(result)
    assert active.shape == (2, 1, 7, 7) and active.dtype == torch.bool
    assert active.flatten(1).sum(1).tolist() == [round(49 * 0.4)] * 2
    levels = spark_active_masks(result, scales=[1, 2, 4, 8, 16])
    assert [tuple(level.shape[-2:]) for level in levels] == [(7, 7), (14, 14), (28, 28),
                                                             (56, 56), (112, 112)]
    for level, scale in zip(levels, [1, 2, 4, 8, 16]):
        pooled = torch.nn.functional.max_pool2d(level.float(), scale)
        assert torch.equal(pooled.bool(), active)


def test_lightly_indices_keep_the_class_token():
    result = mwm.generate_masks((4, 4), 3, ratio=0.75)
    idx_keep, idx_mask = lightly_token_indices(result)
    assert idx_keep.shape == (3, 1 + 4) and idx_mask.shape == (3, 12)
    assert bool((idx_keep[:, 0] == 0).all())
    tokens = torch.cat([idx_keep, idx_mask], 1).sort(1).values
    assert torch.equal(tokens, torch.arange(17).expand(3, -1))
    assert torch.equal(idx_keep[:, 1:] - 1, result.ids_keep)


class _HeatmapDataset(Dataset):
    def __len__(self):
        return 12

    def __getitem__(self, index):
        g = torch.Generator().manual_seed(index)
        return {"heatmap": torch.rand(28, 28, generator=g), "index": index}


def test_collate_in_worker_processes_is_deterministic_by_sample_index():
    masker = mwm.TextGuidedMasker((7, 7), policy="fixed_total", ratio=0.4, seed=5)
    collate = MaskingCollate(masker)
    dataset = _HeatmapDataset()
    batches = list(DataLoader(dataset, batch_size=4, collate_fn=collate, num_workers=2,
                              shuffle=False))
    reshuffled = list(DataLoader(dataset, batch_size=3, collate_fn=collate, num_workers=0,
                                 sampler=list(reversed(range(12)))))
    by_index = {}
    for batch in batches:
        for row, index in enumerate(batch["index"].tolist()):
            by_index[index] = batch["ids_keep"][row]
    for batch in reshuffled:
        for row, index in enumerate(batch["index"].tolist()):
            assert torch.equal(batch["ids_keep"][row], by_index[index])
    with pytest.raises(ValueError, match="heatmap"):
        collate([{"image": torch.zeros(1)}])


class _TransformedDataset(_HeatmapDataset):
    def __init__(self, transform):
        self.transform = transform

    def __getitem__(self, index):
        return self.transform(super().__getitem__(index))


@pytest.mark.parametrize("policy,kwargs", [("fixed_total", dict(ratio=0.4)),
                                           ("per_region", dict(region_ratios=(0.3, 0.9)))])
def test_transform_in_worker_processes_equals_the_collate(policy, kwargs):
    masker = mwm.TextGuidedMasker((7, 7), policy=policy, seed=11, **kwargs)
    loaded = list(DataLoader(_TransformedDataset(MaskingTransform(masker)), batch_size=5,
                             num_workers=2, shuffle=False))
    assert masker.offset == 0  # the transform does not advance the masker
    expected = MaskingCollate(masker)([_HeatmapDataset()[i] for i in range(12)])
    for key in ("mask", "ids_keep", "ids_restore", "noise", "num_masked"):
        got = torch.cat([batch[key] for batch in loaded])
        assert torch.equal(got, expected[key]), key
    # Keyed by the sample's index alone: sample 7 on its own equals its row in the batch.
    alone = MaskingTransform(masker)(_HeatmapDataset()[7])
    assert torch.equal(alone["ids_keep"], expected["ids_keep"][7])
    assert torch.equal(alone["heatmap"], _HeatmapDataset()[7]["heatmap"])  # keys are kept


def test_transform_errors_name_the_argument():
    transform = MaskingTransform(mwm.TextGuidedMasker((7, 7)))
    with pytest.raises(ValueError,
                       match=r"keys 'heatmap' and 'index', got dict with keys \['image'\]"):
        transform({"image": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"index = -1: must be a non-negative integer"):
        transform({"heatmap": torch.rand(28, 28), "index": -1})
    with pytest.raises(ValueError, match=r"index = 1.5: must be a non-negative integer"):
        transform({"heatmap": torch.rand(28, 28), "index": 1.5})
    with pytest.raises(ValueError,
                       match=r"index must be one integer, got a tensor of shape \(2,\)"):
        transform({"heatmap": torch.rand(28, 28), "index": torch.tensor([1, 2])})
