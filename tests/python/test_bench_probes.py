"""The frozen-encoder classifier probe (mwm.bench.probes) and the MAE's input scaling."""

import math

import pytest
import torch

from mwm.bench import pretraining as PT
from mwm.bench import probes as P
from mwm.bench import ratios as R
from mwm.bench.models import TinyMAE


def _lesion_features(n=160, channels=6, positions=16, seed=0):
    """(L, C, P) features whose class k > 0 lifts channel k - 1 at one random position, over a
    position-dependent offset shared by every sample (as a position embedding leaves)."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    x = 0.3 * torch.randn(n, channels, positions, generator=gen)
    x += 0.5 * torch.randn(1, channels, positions, generator=gen)
    where = torch.randint(0, positions, (n,), generator=gen)
    for i in range(n):
        if labels[i] > 0:
            x[i, labels[i] - 1, where[i]] += 3.0
    return x, labels


def _split(x, y):
    half = x.shape[0] // 2
    return x[:half], y[:half], x[half:], y[half:]


def test_probe_learns_position_wise_evidence():
    train_x, train_y, test_x, test_y = _split(*_lesion_features())
    assert P.linear_probe(train_x, train_y, test_x, test_y, num_classes=3) > 0.9


def test_probe_does_not_depend_on_a_features_scale_or_offset():
    train_x, train_y, test_x, test_y = _split(*_lesion_features())
    reference = P.linear_probe(train_x, train_y, test_x, test_y, num_classes=3)
    scale = torch.tensor([1e3, 1.0, 1e-3, 7.0, 1.0, 0.2])[None, :, None]
    shift = torch.tensor([5.0, -40.0, 0.0, 1e2, 3.0, 0.0])[None, :, None]
    rescaled = P.linear_probe(train_x * scale + shift, train_y, test_x * scale + shift, test_y,
                              num_classes=3)
    assert rescaled == pytest.approx(reference, abs=1.5 / test_y.numel())


def test_probe_standardizes_with_training_statistics_only():
    train_x, train_y, test_x, test_y = _split(*_lesion_features())
    reference = P.linear_probe(train_x, train_y, test_x, test_y, num_classes=3)
    # Statistics taken from the test set would undo this shift; training statistics keep it,
    # and a shift of every test feature by 50 training standard deviations ruins the probe.
    shifted = test_x + 50 * train_x.std(dim=(0, 2), keepdim=True)
    assert P.linear_probe(train_x, train_y, shifted, test_y, num_classes=3) < reference - 0.2


def test_probe_keeps_the_start_with_the_lowest_training_objective():
    x, y = _lesion_features(seed=3)
    z, _ = P._standardize(x, x, dim=(0, 2))
    z = P._channels_last(z)
    starts = P.probe_starts(z.shape[2], 3)
    assert len(starts) == len(P.PROBE_SCHEDULES) + P.PROBE_RANDOM_STARTS
    objectives = []
    for start, sched in starts:
        weight, bias = start.clone().requires_grad_(), torch.zeros(3, requires_grad=True)
        objectives.append(P._fit_from(z, y, weight, bias, sched, 1e-2, P.PROBE_MAX_ITER))
    chosen = P.fit_positionwise_classifier(z, y, 3)
    assert chosen.objective == min(objectives)
    assert chosen.start == objectives.index(min(objectives))
    assert chosen.schedule == starts[chosen.start][1]
    # The random starts differ from each other and from zero; the draws repeat in every call.
    drawn = [w for w, _ in starts[len(P.PROBE_SCHEDULES):]]
    assert all(w.abs().sum() > 0 for w in drawn) and not torch.equal(drawn[0], drawn[1])
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(starts, P.probe_starts(z.shape[2], 3)))
    # The zero start alone is the probe before several starts: the same fit bit for bit.
    again = P.fit_positionwise_classifier(z, y, 3, schedules=((1.0,),), random_starts=0)
    weight = torch.zeros(z.shape[2], 3, requires_grad=True)
    bias = torch.zeros(3, requires_grad=True)
    P._fit_from(z, y, weight, bias, (1.0,), 1e-2, P.PROBE_MAX_ITER)
    assert torch.equal(again.weight, weight.detach())


def test_probe_names_a_negative_count_of_random_starts():
    x, y = _lesion_features(n=12)
    with pytest.raises(ValueError, match="random_starts=-1"):
        P.linear_probe(x, y, x, y, num_classes=3, random_starts=-1)


def test_probes_default_cap_lets_lbfgs_converge_where_100_iterations_stop_short():
    # Correlated channels slow L-BFGS down, as the features of a trained encoder do.
    gen = torch.Generator().manual_seed(0)
    n, channels, positions, k = 256, 48, 16, 4
    x = torch.randn(n, channels, positions, generator=gen)
    mix = 0.3 * torch.randn(channels, channels, generator=gen) + torch.eye(channels)
    x = torch.einsum("lcp,dc->ldp", x, mix)
    y = torch.randint(0, k, (n,), generator=gen)
    where = torch.randint(0, positions, (n,), generator=gen)
    x[torch.arange(n), :k, where] += 1.5 * torch.nn.functional.one_hot(y, k).float()
    z, _ = P._standardize(x, x, dim=(0, 2))
    z = P._channels_last(z)
    capped = P.fit_positionwise_classifier(z, y, k, max_iter=100, random_starts=0)
    default = P.fit_positionwise_classifier(z, y, k, random_starts=0)
    longer = P.fit_positionwise_classifier(z, y, k, max_iter=5 * P.PROBE_MAX_ITER,
                                           random_starts=0)
    assert default.objective == pytest.approx(longer.objective, abs=1e-6)
    assert capped.objective > default.objective + 1e-4
    assert R.Settings().probe_steps == P.PROBE_MAX_ITER


def test_probe_is_deterministic():
    train_x, train_y, test_x, test_y = _split(*_lesion_features(seed=1))
    first = P.linear_probe(train_x, train_y, test_x, test_y, num_classes=3)
    assert P.linear_probe(train_x, train_y, test_x, test_y, num_classes=3) == first


@pytest.mark.parametrize("schedules", [(), ((4.0,),), ((2.0, 0.0, 1.0),)])
def test_probe_names_bad_schedules(schedules):
    x, y = _lesion_features(n=12)
    with pytest.raises(ValueError, match="schedule"):
        P.linear_probe(x, y, x, y, num_classes=3, schedules=schedules)


# --- the MAE's input scaling and patch embedding ---------------------------------------------


def test_tiny_mae_standardizes_its_input():
    torch.manual_seed(0)
    scaled = TinyMAE(16, 1, 4, dim=32, depth=1, heads=1, decoder_dim=32, decoder_heads=1,
                     pixel_mean=0.3, pixel_std=0.25).eval()
    plain = TinyMAE(16, 1, 4, dim=32, depth=1, heads=1, decoder_dim=32, decoder_heads=1).eval()
    plain.load_state_dict(scaled.state_dict())  # the pixel statistics are not in the state
    images = 0.3 + 0.25 * torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        a = scaled.features(images)[0]
        b = plain.features((images - 0.3) / 0.25)[0]
    assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("mean,std", [(0.0, 0.0), (0.0, -1.0), (float("nan"), 1.0),
                                      (0.0, float("inf"))])
def test_tiny_mae_names_bad_pixel_statistics(mean, std):
    with pytest.raises(ValueError, match="pixel_"):
        TinyMAE(16, 1, 4, dim=32, depth=1, heads=1, pixel_mean=mean, pixel_std=std)


def test_tiny_mae_patch_embedding_is_initialized_like_a_linear_layer():
    torch.manual_seed(0)
    model = TinyMAE(64, 1, 8, dim=64, depth=1, heads=2, decoder_dim=64)
    kernel = model.patch_embed.weight.detach().flatten(1)  # (64, 64): fan_in 64, fan_out 64
    bound = math.sqrt(6.0 / (kernel.shape[0] + kernel.shape[1]))
    assert float(kernel.abs().max()) <= bound
    # Xavier-uniform's std is bound / sqrt(3), about twice a convolution's default here.
    assert float(kernel.std()) == pytest.approx(bound / math.sqrt(3), rel=0.05)
    assert torch.count_nonzero(model.patch_embed.bias) == 0


def test_benchmark_mae_takes_the_pretraining_set_pixel_statistics():
    settings = R.preset("micro", models=("mae",))
    data = R.prepare_builtin("brain", settings)
    model = PT.build_model("mae", data, settings)
    pixels = data.pretrain.images.double()
    assert float(model.pixel_mean) == pytest.approx(float(pixels.mean()), rel=1e-6)
    assert float(model.pixel_std) == pytest.approx(float(pixels.std()), rel=1e-6)


def test_pixel_statistics_match_a_float64_mean_and_std_in_chunks():
    images = 0.4 + 0.2 * torch.randn(130, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    mean, std = PT.pixel_statistics(images, chunk=7)  # chunks that do not divide the set
    as64 = images.double()
    assert mean == pytest.approx(float(as64.mean()), rel=1e-12)
    assert std == pytest.approx(float(as64.std()), rel=1e-12)
    with pytest.raises(ValueError, match="too few pixels"):
        PT.pixel_statistics(torch.zeros(1, 1, 1, 1))
