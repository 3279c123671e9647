"""`mwm-bench ratios`: models, loss, probes, the micro pipeline end to end, and DDP masks."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mwm
from mwm.bench import pretraining as PT
from mwm.bench import ratios as R
from mwm.bench.models import SparseCNN, TinyMAE, reconstruction_loss
from mwm.bench.probes import dice_scores, linear_probe
from mwm.bench.references import mae_forward_loss, patchify, unpatchify
from mwm.bench.report import write_results

PYTHON_DIR = Path(mwm.__file__).resolve().parent.parent


def _guided(grid, heat, offset=0, high=0.8, low=0.4):
    masker = mwm.TextGuidedMasker(grid=grid, thresholds=[0.5], region_ratios=[low, high],
                                  policy="per_region", seed=3, reduction="max")
    return masker(heat, offset=offset)


# --- patches and loss ------------------------------------------------------------------------


def test_patchify_orders_channel_fastest_and_round_trips():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    p = patchify(x, 2)
    assert p.shape == (2, 4, 12)
    # Patch 1 is grid row 0, column 1; its first pixel (0, 2) in channels 0, 1, 2, then (0, 3).
    assert p[0, 1, :6].tolist() == [x[0, c, 0, w].item() for w in (2, 3) for c in range(3)]
    assert torch.equal(unpatchify(p, 2, x.shape), x)
    v = torch.randn(1, 2, 4, 4, 4)
    assert torch.equal(unpatchify(patchify(v, 2), 2, v.shape), v)


def test_reconstruction_loss_counts_masked_patches_only():
    torch.manual_seed(0)
    target = torch.randn(2, 1, 8, 8)
    pred = torch.randn(2, 4, 16)
    mask = torch.tensor([[True, False, False, True], [False, False, True, False]])
    loss = reconstruction_loss(pred, target, mask, norm_pix=False)
    err = (pred - patchify(target, 4)).pow(2).mean(-1)
    assert torch.allclose(loss, err[mask].mean())
    changed = pred.clone()
    changed[~mask] += 5.0  # visible patches are not reconstructed
    assert torch.allclose(reconstruction_loss(changed, target, mask, norm_pix=False), loss)
    # Normalized target: per-patch mean 0 and unbiased variance 1 (eps 1e-6), MAE's norm_pix.
    t = patchify(target, 4)
    normed = (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True) + 1e-6).sqrt()
    expected = (pred - normed).pow(2).mean(-1)[mask].mean()
    assert torch.allclose(reconstruction_loss(pred, target, mask, norm_pix=True), expected)
    # Image-layout predictions are patchified the same way.
    image_pred = unpatchify(pred, 4, target.shape)
    assert torch.allclose(reconstruction_loss(image_pred, target, mask, norm_pix=True), expected)
    with pytest.raises(ValueError, match="pred must be"):
        reconstruction_loss(torch.randn(2, 4, 15), target, mask)


@pytest.mark.parametrize("norm_pix", [False, True])
def test_reconstruction_loss_matches_mae_forward_loss_with_gradients(norm_pix):
    # reconstruction_loss is mwm.masked_recon_loss behind its own checks: MAE's forward_loss
    # written in plain PyTorch must give the same value and gradient.
    torch.manual_seed(1)
    target = torch.randn(3, 2, 8, 8)
    mask = torch.rand(3, 4) < 0.6
    mask[0, 0] = True
    pred_a = torch.randn(3, 4, 32, requires_grad=True)
    pred_b = pred_a.detach().clone().requires_grad_()
    dispatched = reconstruction_loss(pred_a, target, mask, norm_pix)
    plain = mae_forward_loss(target, pred_b, mask.float(), 4, norm_pix)
    dispatched.backward()
    plain.backward()
    assert torch.allclose(dispatched, plain, atol=1e-6)
    assert torch.allclose(pred_a.grad, pred_b.grad, atol=1e-6)


# --- models ----------------------------------------------------------------------------------


def test_sparse_cnn_never_sees_masked_pixels():
    torch.manual_seed(0)
    model = SparseCNN(1, widths=(8, 16), stem=4).eval()
    heat = torch.zeros(2, 32, 32)
    heat[:, 8:16, 8:16] = 1.0
    masks = _guided((4, 4), heat)
    images = torch.randn(2, 1, 32, 32)
    pixel_mask = masks.pixel_mask(8)
    noisy = torch.where(pixel_mask, torch.randn_like(images) * 10, images)
    active = masks.active()
    feats_a, feats_b = model.encode(images, active), model.encode(noisy, active)
    for a, b in zip(feats_a, feats_b):
        assert torch.allclose(a, b, atol=1e-5)
        hidden = ~torch.nn.functional.interpolate(active.float(), size=a.shape[2:]).bool()
        assert (a * hidden).abs().max() == 0  # masked positions stay zero at every scale


def test_tiny_mae_pads_variable_visible_counts_correctly():
    torch.manual_seed(0)
    model = TinyMAE(32, 1, patch_size=8, dim=32, depth=2, heads=2, decoder_dim=32).eval()
    heat = torch.zeros(3, 32, 32)
    heat[0, :16, :16] = 1.0  # different ROI sizes -> different visible counts per sample
    heat[1, :8, :8] = 1.0
    images = torch.randn(3, 1, 32, 32)
    batch = _guided((4, 4), heat)
    assert len(set(batch.num_masked.tolist())) > 1
    with torch.no_grad():
        joint = model(images, batch)
        singles = [model(images[b : b + 1], _guided((4, 4), heat[b : b + 1], offset=b))
                   for b in range(3)]
    weights = batch.num_masked.float()
    assert torch.allclose(joint, (torch.stack(singles) * weights).sum() / weights.sum(), atol=1e-5)


def test_models_train_a_step_in_3d():
    torch.manual_seed(0)
    heat = torch.zeros(2, 16, 16, 16)
    heat[:, 4:8, 4:8, 4:8] = 1.0
    masks = _guided((2, 2, 2), heat)
    for model in (SparseCNN(1, (4, 8), stem=4, ndim=3), TinyMAE(16, 1, 8, ndim=3, dim=24, depth=1,
                                                                   heads=2, decoder_dim=24)):
        loss = model(torch.randn(2, 1, 16, 16, 16), masks)
        loss.backward()
        assert torch.isfinite(loss)
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


# --- probes ----------------------------------------------------------------------------------


def test_linear_probe_learns_a_separable_problem():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=gen)
    y = (x[:, 0] > 0).long()
    assert linear_probe(x[:100], y[:100], x[100:], y[100:], num_classes=2) > 0.9
    assert linear_probe(x[:100], y[:100].flip(0), x[100:], y[100:], num_classes=2) < 0.75


def test_dice_scores():
    a = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    b = torch.tensor([[1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    d = dice_scores(a, b)
    assert d[0].item() == pytest.approx(2 / 3) and torch.isnan(d[1])


# --- configs ---------------------------------------------------------------------------------


def test_config_names_parse_and_bad_ones_are_named():
    assert R.parse_config("mwm-0.8/0.4") == R.MaskConfig("mwm-0.8/0.4", "per_region",
                                                        region_ratios=(0.4, 0.8))
    assert R.parse_config("random-0.6").ratio == 0.6
    assert R.parse_config("fixed-0.4").policy == "fixed_total"
    for name in R.DEFAULT_CONFIGS:
        R.parse_config(name)
    with pytest.raises(ValueError, match="config='random-1.5'"):
        R.parse_config("random-1.5")
    with pytest.raises(ValueError, match="batch_size=9"):
        R.run_ratios(R.preset("micro", batch_size=9), R.bdist.DistContext(world_size=2))


# --- the MAE's pretraining translation ------------------------------------------------------


def test_translate_moves_each_sample_by_its_own_shift_and_replicates_the_border():
    x = torch.zeros(2, 1, 8, 8)
    x[0, 0, 3, 4] = 1.0
    x[1, 0, :, 0] = 0.5  # the left border column
    x[1, 0, 5, 5] = 2.0
    out = PT.translate(x, torch.tensor([[1, -2], [0, 3]]), reach=3)
    assert out.shape == x.shape
    # out[p] = x[p + shift]: the content moves by minus the shift.
    assert out[0, 0, 2, 6] == 1.0 and out[0].sum() == 1.0
    assert out[1, 0, 5, 2] == 2.0
    assert torch.equal(PT.translate(x, torch.zeros(2, 2, dtype=torch.long), reach=3), x)
    # A shift towards the left border fills the space with that border, not with zeros.
    left = PT.translate(x[1:], torch.tensor([[0, -2]]), reach=2)
    assert torch.equal(left[0, 0, :, :3], torch.full((8, 3), 0.5))
    volume = torch.zeros(1, 1, 4, 4, 4)
    volume[0, 0, 1, 2, 3] = 1.0
    assert PT.translate(volume, torch.tensor([[1, 0, 2]]), reach=2)[0, 0, 0, 2, 1] == 1.0


def test_shifts_are_drawn_per_global_batch_within_the_reach():
    a = PT.draw_shifts(seed=3, batch_start=64, batch=64, ndim=2, reach=8)
    assert a.shape == (64, 2) and a.abs().max() <= 8 and a.abs().max() == 8
    assert torch.equal(a, PT.draw_shifts(3, 64, 64, 2, 8))
    assert not torch.equal(a, PT.draw_shifts(3, 128, 64, 2, 8))
    assert not torch.equal(a, PT.draw_shifts(4, 64, 64, 2, 8))


class _Recorder(torch.nn.Module):
    """Records the images pretraining feeds it; its loss only has to have a gradient."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(2, 2))
        self.seen = []

    def forward(self, images, masks):
        self.seen.append(images.clone())
        return (self.w ** 2).sum()


@pytest.mark.parametrize("shift", [0, 3])
def test_pretraining_shifts_each_image_and_its_heatmap_alike(shift):
    s = R.preset("micro")
    data = R.prepare_builtin("brain", s)
    # The image is its heatmap: whatever moves one must move the other the same way.
    data.pretrain.images = data.pretrain.heatmaps[:, None].clone()
    heats = []
    masker = R.parse_config("random-0.7").masker(data.grid, 0, s.thresholds, s.reduction)

    def recording_masker(heat, offset):
        heats.append(heat.clone())
        return masker(heat, offset)

    model = _Recorder()
    stats = PT.pretrain(model, data, recording_masker, s, 1e-3, 0, R.bdist.DistContext(),
                       progress=False, shift=shift)
    assert len(model.seen) == len(heats) == s.epochs * (s.pretrain_samples // s.batch_size)
    for images, heat in zip(model.seen, heats):
        assert torch.equal(images[:, 0], heat)
    originals = {data.pretrain.heatmaps[i].numpy().tobytes()
                 for i in range(data.pretrain.heatmaps.shape[0])}
    moved = sum(h.numpy().tobytes() not in originals for batch in heats for h in batch)
    assert (moved > 0) == (shift > 0)
    assert stats.lesion_total > 0  # the lesion patches are counted where the lesions moved to


def test_pretraining_calls_after_epoch_once_per_epoch_in_training_mode():
    s = R.preset("micro", epochs=3)
    data = R.prepare_builtin("brain", s)
    masker = R.parse_config("random-0.7").masker(data.grid, 0, s.thresholds, s.reduction)
    model = _Recorder()
    calls = []

    def after_epoch(epochs_done, last_loss):
        calls.append((epochs_done, len(model.seen), last_loss))
        model.eval()  # a probe puts the model in eval mode; pretraining must go on training

    steps = s.pretrain_samples // s.batch_size
    PT.pretrain(model, data, masker, s, 1e-3, 0, R.bdist.DistContext(), progress=False,
               after_epoch=after_epoch)
    assert [(e, n) for e, n, _ in calls] == [(e, e * steps) for e in (1, 2, 3)]
    assert all(loss > 0 for _, _, loss in calls)
    assert model.training


class _DecayOnly(torch.nn.Module):
    """A loss without gradient: AdamW's decoupled weight decay is all that moves the weights."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(2, 2))
        self.b = torch.nn.Parameter(torch.ones(2))

    def forward(self, images, masks):
        return 0.0 * (self.w.sum() + self.b.sum())


@pytest.mark.parametrize("weight_decay", [0.0, 0.5])
def test_pretraining_decays_weight_matrices_by_the_settings_weight_decay(weight_decay):
    s = R.preset("micro", weight_decay=weight_decay)
    data = R.prepare_builtin("brain", s)
    masker = R.parse_config("random-0.7").masker(data.grid, 0, s.thresholds, s.reduction)
    model = _DecayOnly()
    lr = 0.1
    PT.pretrain(model, data, masker, s, lr, 0, R.bdist.DistContext(), progress=False)
    steps = s.epochs * (s.pretrain_samples // s.batch_size)
    warmup = max(1, int(s.warmup_share * steps))
    expected = math.prod(1 - PT._lr_at(k, steps, lr, warmup) * weight_decay for k in range(steps))
    assert torch.allclose(model.w, torch.full((2, 2), expected))
    assert (expected < 0.99) == (weight_decay > 0)
    assert torch.equal(model.b.detach(), torch.ones(2))  # biases and norms are never decayed


@pytest.mark.parametrize("field, value", [("warmup_share", 1.0), ("warmup_share", -0.1),
                                          ("weight_decay", -1e-3), ("weight_decay", math.nan),
                                          ("weight_decay", math.inf), ("probe_steps", 0),
                                          ("probe_random_starts", -1)])
def test_bad_schedule_settings_are_named(field, value):
    with pytest.raises(ValueError, match=f"{field}={value}"):
        R.validate_settings(R.preset("micro", **{field: value}))


@pytest.mark.parametrize("freeze", [True, False])
def test_the_mae_patch_embedding_keeps_its_random_start_only_when_frozen(freeze):
    s = R.preset("micro", models=("mae",), mae_freeze_patch_embed=freeze)
    data = R.prepare_builtin("brain", s)
    model = PT.initial_model("mae", data, s, 0)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    masker = R.parse_config("random-0.7").masker(data.grid, 0, s.thresholds, s.reduction)
    PT.pretrain(model, data, masker, s, 1e-3, 0, R.bdist.DistContext(), progress=False)
    after = model.state_dict()
    embed_kept = all(torch.equal(after[k], start[k]) for k in start if k.startswith("patch_embed"))
    assert embed_kept == freeze
    assert not torch.equal(after["blocks.0.qkv.weight"], start["blocks.0.qkv.weight"])
    groups = PT._param_groups(model, s.weight_decay)
    grouped = {id(p) for g in groups for p in g["params"]}
    assert (id(model.patch_embed.weight) in grouped) != freeze


def test_the_harness_mae_is_one_block_on_a_frozen_patch_embedding():
    s = R.preset("quick")
    assert (s.mae_depth, s.mae_freeze_patch_embed) == (1, True)


# --- the micro pipeline, one process and two --------------------------------------------------

MICRO_CONFIGS = ("none", "random-0.7", "mwm-0.8/0.4")


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ratios")
    settings = R.preset("micro", configs=MICRO_CONFIGS)
    doc = R.run_ratios(settings, progress=False, record_masks=True)
    paths = write_results(doc, out, "mwm-bench ratios --preset micro (test)")
    return doc, paths


@pytest.mark.slow
def test_micro_pipeline_writes_results_measured_from_the_masks(micro_run):
    doc, paths = micro_run
    for key in ("json", "markdown", "plot", "overlay_brain"):
        assert paths[key].is_file() and paths[key].stat().st_size > 0
    saved = json.loads(paths["json"].read_text())
    rows = {r["config"]: r for r in saved["summary"]}
    assert set(rows) == set(MICRO_CONFIGS)
    # random-0.7 on a 4x4 grid keeps round(16 * 0.3) = 5 patches: 11 / 16 masked, exactly.
    assert rows["random-0.7"]["effective_ratio_mean"] == pytest.approx(11 / 16)
    guided = rows["mwm-0.8/0.4"]
    assert guided["effective_ratio_mean"] < rows["random-0.7"]["effective_ratio_mean"]
    assert guided["lesion_ratio_mean"] > guided["background_ratio_mean"]
    assert rows["none"]["effective_ratio_mean"] is None
    for r in saved["runs"]:
        assert 0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["dice"] <= 1.0
    # The effective ratio is the mean over exactly the masks that were drawn.
    masks = doc["masks"]["brain/cnn/mwm-0.8/0.4/0"]
    import numpy as np

    drawn = np.stack([np.unpackbits(m)[:16] for m in masks.values()])
    assert drawn.mean() == pytest.approx(guided["effective_ratio_mean"])
    assert "| brain | cnn | mwm-0.8/0.4 |" in paths["markdown"].read_text()


@pytest.mark.slow
def test_micro_results_hold_paired_comparisons(micro_run):
    doc, paths = micro_run
    saved = json.loads(paths["json"].read_text())
    by_config = {r["config"]: r for r in saved["runs"]}
    rows = {(c["config"], c["baseline"], c["metric"]): c for c in saved["comparisons"]}
    assert set(rows) == {("mwm-0.8/0.4", "random-0.7", "accuracy"),
                         ("mwm-0.8/0.4", "random-0.7", "dice")}
    acc = rows[("mwm-0.8/0.4", "random-0.7", "accuracy")]
    assert acc["n_seeds"] == 1 and acc["ci95_low"] is None  # one seed: no interval
    expected = by_config["mwm-0.8/0.4"]["accuracy"] - by_config["random-0.7"]["accuracy"]
    assert acc["mean_diff"] == pytest.approx(expected)
    learning = saved["learning"][0]
    assert (learning["dataset"], learning["model"]) == ("brain", "cnn")
    assert learning["learned"] == (learning["gain"] >= 0.03)
    text = paths["markdown"].read_text()
    assert "| brain | cnn | mwm-0.8/0.4 | random-0.7 |" in text


def test_every_configuration_of_a_seed_starts_from_the_same_weights():
    settings = R.preset("micro")
    data = R.prepare_builtin("brain", settings)
    first = PT.initial_model("mae", data, settings, seed=3).state_dict()
    torch.manual_seed(123)  # whatever ran before
    again = PT.initial_model("mae", data, settings, seed=3).state_dict()
    other = PT.initial_model("mae", data, settings, seed=4).state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


@pytest.mark.slow
def test_worker_processes_give_the_one_process_numbers():
    settings = R.preset("micro", configs=("none", "mwm-0.8/0.4"), seeds=(0, 1))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        here = R.run_ratios(settings, progress=False)
    finally:
        torch.set_num_threads(threads)
    there = R.run_ratios(settings, progress=False, workers=2, worker_threads=1)
    assert [(r["config"], r["seed"]) for r in there["runs"]] == \
        [(r["config"], r["seed"]) for r in here["runs"]]
    for a, b in zip(here["runs"], there["runs"]):
        assert a["accuracy"] == b["accuracy"] and a["dice"] == b["dice"]
        assert a["final_loss"] == b["final_loss"]


@pytest.mark.slow
def test_torchrun_two_processes_draw_the_single_process_masks(micro_run, tmp_path):
    single = micro_run[0]["masks"]
    record = tmp_path / "masks.pt"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PYTHON_DIR), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "mwm.bench", "ratios", "--preset", "micro", "--configs", "random-0.7,mwm-0.8/0.4",
           "--device", "cpu", "--no-progress", "--plain", "--out", str(tmp_path / "out"),
           "--record-masks", str(record)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 process(es)" in done.stdout
    distributed = torch.load(record, weights_only=False)
    for key in ("brain/cnn/random-0.7/0", "brain/cnn/mwm-0.8/0.4/0"):
        one, two = single[key], distributed[key]
        assert sorted(one) == sorted(two) and len(one) == 32  # 1 epoch x 32 samples
        assert all((one[i] == two[i]).all() for i in one), key
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["world_size"] == 2


# --- a folder of the user's own images ----------------------------------------------------------


def _write_folder(root: Path, with_split=True):
    import numpy as np
    from PIL import Image

    (root / "heatmaps").mkdir(parents=True)
    rows = ["image,label" + (",split" if with_split else "")]
    for i in range(8):
        name = f"img{i}.png" if i % 2 else f"img{i}.npy"
        pixels = (np.random.default_rng(i).random((40, 48)) * 255).astype(np.uint8)
        if name.endswith(".png"):
            Image.fromarray(pixels).save(root / name)
        else:
            np.save(root / name, pixels.astype(np.float32) / 255)
        np.save(root / "heatmaps" / f"img{i}.npy", np.full((10, 12), i / 8, np.float32))
        split = ["pretrain", "train", "test"][i % 3]
        label = "tumor" if i % 2 else "normal"
        rows.append(f"{name},{label}" + (f",{split}" if with_split else ""))
    (root / "labels.csv").write_text("\n".join(rows) + "\n")


def test_folder_loader_reads_images_heatmaps_and_labels(tmp_path):
    from mwm.bench.folder import load_folder

    _write_folder(tmp_path)
    data = load_folder(tmp_path, size=32)
    assert data.images.shape == (8, 1, 32, 32) and data.heatmaps.shape == (8, 32, 32)
    assert data.class_names == ("normal", "tumor") and data.labels.tolist() == [0, 1] * 4
    assert 0.0 <= float(data.images.min()) and float(data.images.max()) <= 1.0
    assert data.heatmaps[3].unique().tolist() == [pytest.approx(3 / 8)]
    assert data.lesions is None and data.splits[:3] == ["pretrain", "train", "test"]
    prepared = R.prepare_folder(R.preset("micro", data="folder", folder=str(tmp_path)))
    assert prepared.pretrain.images.shape[0] == 6 and prepared.test.images.shape[0] == 2
    (tmp_path / "heatmaps" / "img5.npy").unlink()
    with pytest.raises(ValueError, match="img5.npy"):
        load_folder(tmp_path, size=32)
