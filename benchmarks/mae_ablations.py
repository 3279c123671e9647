"""One-seed ablations of the benchmark's MAE ViT (docs/harness.md, "Why the MAE ViT does not
learn here"): pretrain with one configuration, then probe the frozen encoder three ways.

    python benchmarks/mae_ablations.py '{}'                       # the quick setting
    python benchmarks/mae_ablations.py '{"lr": 3e-3, "configs": ["random-0.6"]}'
    python benchmarks/mae_ablations.py '{"epochs": 16, "lr": 2e-3}'
    python benchmarks/mae_ablations.py '{"norm_pix": false, "configs": ["random-0.6"]}'
    python benchmarks/mae_ablations.py '{"norm_pix": false, "epochs": 16, "lr": 2e-3,
                                         "configs": ["random-0.6"]}'
    python benchmarks/mae_ablations.py '{"norm_pix": false, "epochs": 8, "lr": 1.5e-3,
                                         "configs": ["random-0.75"]}'
    python benchmarks/mae_ablations.py '{"patch_size": 4}'
    # second round: the decoder, and fine-tuning instead of the frozen probe
    python benchmarks/mae_ablations.py '{"decoder_depth": 4, "configs": ["random-0.6"]}'
    python benchmarks/mae_ablations.py '{"decoder_depth": 4, "epochs": 8, "lr": 1.5e-3}'
    python benchmarks/mae_ablations.py '{"decoder_depth": 4, "epochs": 8, "lr": 1.5e-3, "seed": 1}'
    python benchmarks/mae_ablations.py '{"decoder_depth": 4, "epochs": 8, "lr": 1.5e-3, "seed": 2}'
    python benchmarks/mae_ablations.py '{"decoder_depth": 4, "decoder_dim": 128, "epochs": 8,
                                         "lr": 1.5e-3, "configs": ["random-0.6"]}'
    python benchmarks/mae_ablations.py '{"decoder_depth": 4, "epochs": 16, "lr": 2e-3,
                                         "configs": ["random-0.6"]}'
    python benchmarks/mae_ablations.py '{"finetune": [{"epochs": 8}, {"epochs": 8, "lr": 3e-3},
                                                      {"epochs": 20}]}'
    python benchmarks/mae_ablations.py '{"epochs": 16, "lr": 2e-3, "configs": ["random-0.6"],
                                         "finetune": [{"epochs": 20}]}'
    python benchmarks/mae_ablations.py '{"model": "cnn", "finetune": [{"epochs": 20}]}'

The JSON holds `Settings` overrides of the quick preset (brain, seed 0 unless "seed" is given)
plus "model" ("mae", or "cnn" for the SparK CNN under the same protocols: the harness's probe
and the fine-tunings only), "configs", "norm_pix" (default true), "decoder_depth" (default
1), "decoder_dim" (default the encoder's) and "finetune" (a list of
`mwm.bench.finetune.FinetuneRecipe` fields; each adds the test accuracy after fine-tuning the
whole encoder with that recipe). Prints, per
configuration, the harness's position-wise probe on the last layer ("last"), on the patch
embedding and every block's output concatenated ("all"), a linear probe on mean-pooled last-layer
features ("meanpool"), the fine-tuned accuracies, and the final pretraining loss. One torch
thread: deterministic.
"""

from __future__ import annotations

import json
import sys

import torch

from mwm.bench import distributed as bdist
from mwm.bench import finetune as FT
from mwm.bench import models as M
from mwm.bench import pretraining as PT
from mwm.bench import probes as P
from mwm.bench import ratios as R


def layer_maps(model: M.TinyMAE, images: torch.Tensor):
    """The patch embedding and every block's output (the last one normalized), as maps."""
    x = model._tokens(images)  # standardizes the pixels first
    outs = [x]
    for blk in model.blocks:
        x = blk(x)
        outs.append(x)
    outs[-1] = model.norm(x)
    return [o.transpose(1, 2).reshape(o.shape[0], o.shape[2], *model.grid) for o in outs]


def finetuned(model, data, seed, finetunes) -> dict:
    return {"finetune " + json.dumps(recipe, sort_keys=True): FT.finetune_accuracy(
        model, data.train.images, data.train.labels, data.test.images, data.test.labels,
        len(data.class_names), seed, FT.FinetuneRecipe(**recipe)) for recipe in finetunes}


def cnn_row(name, config, data, s, seed, finetunes, ctx) -> None:
    """The SparK CNN under the same protocols: the harness's probe and the fine-tunings."""
    model = PT.initial_model("cnn", data, s, seed)
    loss = None
    if config.policy != "none":
        masker = config.masker(data.grid, seed, s.thresholds, s.reduction)
        loss = PT.pretrain(model, data, masker, s, s.lr["cnn"], seed, ctx, progress=False)
        loss = loss.final_loss
    accuracy, _ = R.evaluate(model, data, s, seed, torch.device("cpu"), progress=False)
    result = {"probe": accuracy, **finetuned(model, data, seed, finetunes)}
    print("cnn", name, {k: round(v, 3) for k, v in result.items()}, "loss", loss, flush=True)


def main(argv):
    torch.set_num_threads(1)
    over = json.loads(argv[0]) if argv else {}
    configs = over.pop("configs", ["none", "random-0.6"])
    norm_pix = over.pop("norm_pix", True)
    decoder_depth = over.pop("decoder_depth", 1)
    decoder_dim = over.pop("decoder_dim", None)
    finetunes = over.pop("finetune", [])
    seed = over.pop("seed", 0)
    kind = over.pop("model", "mae")
    lr = over.pop("lr", None)
    s = R.preset("quick", models=(kind,), seeds=(seed,), **over)
    lr = lr or s.lr[kind]
    s.lr = dict(s.lr, **{kind: lr})
    data = R.prepare_builtin("brain", s)
    ctx = bdist.DistContext()
    for name in configs:
        config = R.parse_config(name)
        if kind == "cnn":
            cnn_row(name, config, data, s, seed, finetunes, ctx)
            continue
        pixel_mean, pixel_std = PT.pixel_statistics(data.pretrain.images)
        torch.manual_seed(seed)
        model = M.TinyMAE(data.image_size, 1, s.patch_size, dim=s.mae_dim, depth=s.mae_depth,
                          heads=max(1, s.mae_dim // 32), decoder_dim=decoder_dim or s.mae_dim,
                          decoder_depth=decoder_depth,
                          decoder_heads=max(1, (decoder_dim or s.mae_dim) // 32),
                          pixel_mean=pixel_mean, pixel_std=pixel_std)
        model.forward.__func__.__defaults__ = (norm_pix,)  # the loss's target normalization
        loss = None
        if config.policy != "none":
            masker = config.masker(data.grid, seed, s.thresholds, s.reduction)
            loss = PT.pretrain(model, data, masker, s, lr, seed, ctx, progress=False).final_loss
        model.eval()
        with torch.no_grad():
            train = [torch.cat(m) for m in zip(*[layer_maps(model, data.train.images[i:i + 128])
                                                 for i in range(0, len(data.train.images), 128)])]
            test = [torch.cat(m) for m in zip(*[layer_maps(model, data.test.images[i:i + 128])
                                                for i in range(0, len(data.test.images), 128)])]
        result = {}
        for key, picks in (("last", [-1]), ("all", list(range(len(train))))):
            a = P.Features([train[i] for i in picks]).positions()
            b = P.Features([test[i] for i in picks]).positions()
            result[key] = P.linear_probe(a, data.train.labels, b, data.test.labels, 4,
                                         max_iter=s.probe_steps)
        result["meanpool"] = P.linear_probe(train[-1].mean((2, 3)), data.train.labels,
                                            test[-1].mean((2, 3)), data.test.labels, 4,
                                            max_iter=s.probe_steps)
        result.update(finetuned(model, data, seed, finetunes))
        print(name, {k: round(v, 3) for k, v in result.items()}, "loss", loss, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
