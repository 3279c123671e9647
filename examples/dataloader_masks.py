"""Masks in DataLoader workers, deterministic by global sample index.

Two ways: ``MaskingCollate`` computes the masks of a whole batch in ``collate_fn``;
``MaskingTransform`` computes one sample's mask in ``__getitem__``. Both key sample ``i`` by its
dataset index (fold the epoch in with ``index = epoch * len(dataset) + i`` to get new masks each
epoch), so the masks are the same whatever the worker count, batch size, shuffling or DDP rank.

    python examples/dataloader_masks.py
"""

import torch
from torch.utils.data import DataLoader, Dataset

import mwm
from mwm.integrations import MaskingCollate, MaskingTransform


class Scans(Dataset):
    """Stand-in for a dataset that returns an image and its grounding heatmap."""

    def __init__(self, size: int = 16, epoch: int = 0, transform=None) -> None:
        self.size, self.epoch, self.transform = size, epoch, transform

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        heatmap = torch.zeros(224, 224)
        y, x = torch.randint(0, 128, (2,), generator=g).tolist()
        heatmap[y:y + 96, x:x + 96] = 1.0
        sample = {"image": torch.randn(1, 224, 224, generator=g), "heatmap": heatmap,
                  "index": self.epoch * self.size + i}
        return sample if self.transform is None else self.transform(sample)


def by_index(batches) -> dict:
    return {int(i): row for batch in batches for i, row in zip(batch["index"], batch["ids_keep"])}


def main() -> None:
    masker = mwm.TextGuidedMasker.from_preset((7, 7), "default", seed=0)
    collated = list(DataLoader(Scans(), batch_size=4, num_workers=2,
                               collate_fn=MaskingCollate(masker)))
    shuffled = list(DataLoader(Scans(), batch_size=3, shuffle=True, num_workers=0,
                               generator=torch.Generator().manual_seed(1),
                               collate_fn=MaskingCollate(masker)))
    transformed = list(DataLoader(Scans(transform=MaskingTransform(masker)), batch_size=5,
                                  num_workers=2))
    a, b, c = by_index(collated), by_index(shuffled), by_index(transformed)
    assert all(torch.equal(a[i], b[i]) and torch.equal(a[i], c[i]) for i in range(16))
    next_epoch = by_index(DataLoader(Scans(epoch=1), batch_size=4,
                                     collate_fn=MaskingCollate(masker)))
    changed = sum(not torch.equal(a[i], next_epoch[16 + i]) for i in range(16))
    batch = collated[0]
    print(f"batch keys {sorted(batch)}; masked per sample {batch['num_masked'].tolist()} of 49")
    print("2 workers, shuffled batches of 3 and per-sample transforms give the same 16 masks; "
          f"epoch 1 changes {changed} of 16")


if __name__ == "__main__":
    main()
