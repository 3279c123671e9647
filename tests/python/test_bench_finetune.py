"""The fine-tuning protocol of the MAE ablations (mwm.bench.finetune)."""

import pytest
import torch

from mwm.bench import finetune as FT
from mwm.bench import pretraining as PT
from mwm.bench import ratios as R
from mwm.bench.models import SparseCNN, TinyMAE


def _toy_data(n=32, size=16, seed=0):
    """Two classes told apart by a bright 4x4 square at a random place (class 1) or none."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 1, size, size, generator=gen) * 0.1
    labels = torch.arange(n) % 2
    for i in range(n):
        if labels[i]:
            y, x = torch.randint(0, size - 4, (2,), generator=gen).tolist()
            images[i, 0, y:y + 4, x:x + 4] += 2.0
    return images, labels


def _models():
    torch.manual_seed(0)
    return {"mae": TinyMAE(16, 1, 4, dim=32, depth=1, heads=1, decoder_dim=32, decoder_heads=1),
            "cnn": SparseCNN(1, (8, 16), stem=2)}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mae", "cnn"])
def test_finetune_updates_a_copy_of_the_encoder_and_leaves_the_model_alone(kind):
    model = _models()[kind]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images, labels = _toy_data()
    recipe = FT.FinetuneRecipe(epochs=2, batch_size=8)
    encoder, head = FT.finetune(model, images, labels, 2, seed=0, recipe=recipe)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), f"fine-tuning changed the caller's {key}"
    tuned = dict(encoder.named_parameters())
    # Every encoder parameter that reaches the features moves (the decoder's do not).
    reached = [name for name, _ in model.named_parameters()
               if name.startswith(("patch_embed", "blocks", "norm.", "stem", "stages"))]
    assert reached
    for name in reached:
        assert not torch.equal(tuned[name].detach(), before[name]), f"{name} did not move"
    assert head.linear.weight.abs().sum() > 0


@pytest.mark.slow
def test_finetune_is_deterministic_per_seed_and_the_order_depends_on_the_seed_only():
    images, labels = _toy_data()
    recipe = FT.FinetuneRecipe(epochs=2, batch_size=8)
    runs = [FT.finetune(_models()["mae"], images, labels, 2, seed=3, recipe=recipe)
            for _ in range(2)]
    for (a, _), (b, _) in zip(runs, runs[1:]):
        for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
            assert torch.equal(pa, pb), name
    first, again, other = (FT.batch_order(32, s, 3) for s in (3, 3, 4))
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    assert not all(torch.equal(x, y) for x, y in zip(first, other))
    assert all(sorted(o.tolist()) == list(range(32)) for o in first)


@pytest.mark.slow
def test_every_configuration_of_a_seed_is_fine_tuned_from_the_same_start():
    """The head starts from zeros and the encoder from `initial_model`: two configurations of
    one seed that pretrain nothing end fine-tuning with the same weights."""
    s = R.preset("micro", models=("mae",))
    data = R.prepare_builtin("brain", s)
    recipe = FT.FinetuneRecipe(epochs=1, batch_size=8)
    tuned = [FT.finetune(PT.initial_model("mae", data, s, seed=1), data.train.images,
                         data.train.labels, 4, seed=1, recipe=recipe) for _ in range(2)]
    for (name, pa), (_, pb) in zip(tuned[0][0].named_parameters(), tuned[1][0].named_parameters()):
        assert torch.equal(pa, pb), name
    assert torch.equal(tuned[0][1].linear.weight, tuned[1][1].linear.weight)
    head = FT.PositionwiseHead([8, 16], 4, 2)
    assert head.linear.weight.abs().sum() == 0 and head.linear.bias.abs().sum() == 0


@pytest.mark.slow
def test_finetuning_learns_a_separable_problem():
    images, labels = _toy_data(n=64)
    test_images, test_labels = _toy_data(n=64, seed=1)
    acc = FT.finetune_accuracy(_models()["cnn"], images, labels, test_images, test_labels, 2,
                               seed=0, recipe=FT.FinetuneRecipe(epochs=10, batch_size=16,
                                                                lr=3e-3))
    assert acc >= 0.9


def test_the_head_pools_positions_with_a_smooth_maximum():
    head = FT.PositionwiseHead([1], 2, 2).eval()
    with torch.no_grad():
        head.linear.weight.zero_()
        head.linear.weight[1, 0] = 1.0
    quiet = torch.zeros(1, 1, 4, 4)
    one_spot = quiet.clone()
    one_spot[0, 0, 2, 1] = 5.0
    # One strong position lifts class 1's pooled logit far more than spreading it would.
    spread = torch.full((1, 1, 4, 4), 5.0 / 16)
    gap = lambda x: float((head([x])[0, 1] - head([x])[0, 0]).detach())  # noqa: E731
    assert gap(one_spot) > gap(spread) + 1.5


@pytest.mark.parametrize("field,value", [("epochs", 0), ("batch_size", 0), ("lr", 0.0),
                                         ("weight_decay", -1.0), ("warmup_share", 1.0)])
def test_bad_recipes_are_named(field, value):
    images, labels = _toy_data(n=8)
    with pytest.raises(ValueError, match=field):
        FT.finetune(_models()["mae"], images, labels, 2, seed=0,
                    recipe=FT.FinetuneRecipe(**{field: value}))


def test_mismatched_images_and_labels_are_named():
    images, labels = _toy_data(n=8)
    with pytest.raises(ValueError, match="labels"):
        FT.finetune(_models()["mae"], images, labels[:4], 2, seed=0)
    with pytest.raises(ValueError, match="num_classes"):
        FT.PositionwiseHead([4], 1, 2)
