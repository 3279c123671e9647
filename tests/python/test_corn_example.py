"""Smoke test of examples/corn_left_atrium.py at a micro setting, and of its phantom generator."""

import pytest
import torch

from mwm.examples_data.left_atrium import left_atrium_dataset, left_atrium_phantom


def test_phantoms_are_deterministic_and_left_atrium_like():
    image, label = left_atrium_phantom(5, seed=3, size=24)
    again, label_again = left_atrium_phantom(5, seed=3, size=24)
    assert image.shape == (1, 24, 24, 24) and label.shape == (24, 24, 24)
    assert torch.equal(image, again) and torch.equal(label, label_again)
    assert not torch.equal(left_atrium_phantom(6, seed=3, size=24)[1], label)
    share = label.float().mean().item()
    assert 0.02 < share < 0.4
    # Brighter inside the atrium than outside, on a standardized volume.
    assert image[0][label == 1].mean() > image[0][label == 0].mean() + 1.0
    assert abs(image.mean().item()) < 1e-4
    images, labels = left_atrium_dataset(3, seed=3, size=24, first_index=4)
    assert torch.equal(images[1], image) and torch.equal(labels[1], label)
    with pytest.raises(ValueError, match="size = 8"):
        left_atrium_phantom(0, size=8)


def test_micro_training_runs_both_settings(repo_script):
    example = repo_script("examples/corn_left_atrium.py")
    config = example.Config(size=16, train_volumes=6, test_volumes=1, steps=5, rampup_steps=2,
                            labeled_per_batch=1, unlabeled_per_batch=1, width=4, pool_sample=16,
                            filter_per_side=32, pool_slot_capacity=64, label_share=0.34)
    data = example.load_data(config)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: a second thread only adds synchronization
    try:
        without = example.train(example.dataclasses.replace(config, coral=False), data)
        with_coral = example.train(config, data)
    finally:
        torch.set_num_threads(threads)
    for result in (without, with_coral):
        assert 0.0 <= result["dice"] <= 1.0
        assert result["labeled"] == 2
    assert without["coral_steps"] == 0 and "coral" not in without["last_losses"]
    assert with_coral["coral_steps"] > 0
    assert torch.isfinite(torch.tensor(with_coral["last_losses"]["coral"]))
