"""How many L-BFGS iterations the harness's classifier probe needs (docs/harness-mae.md, "Ninth
round"): for each model, seed and configuration of the quick setting, the probe's training
objective and test accuracy with each L-BFGS stage capped at 100, 400 and 1000 iterations, and
the iterations every stage ran with a cap of 5000 (it stops earlier at L-BFGS's tolerance).

    python benchmarks/probe_convergence.py '{}'
    python benchmarks/probe_convergence.py '{"models": ["mae"], "seeds": [0, 1, 2, 3, 4]}'

The JSON may give "models" (default cnn and mae), "seeds" (default 0, 1 and 2), "configs"
(default none and random-0.6), "caps" and "preset" (default quick). One torch thread: deterministic.
"""

from __future__ import annotations

import json
import sys

import torch

from mwm.bench import distributed as bdist
from mwm.bench import pretraining as PT
from mwm.bench import probes as P
from mwm.bench import ratios as R


def iterations_per_stage(features, labels, num_classes, cap):
    """The L-BFGS iterations each stage of the probe's starts ran under `cap`."""
    counts = []
    step = torch.optim.LBFGS.step

    def counting_step(opt, closure):
        out = step(opt, closure)
        counts.append(opt.state[opt.param_groups[0]["params"][0]]["n_iter"])
        return out

    torch.optim.LBFGS.step = counting_step
    try:
        P.fit_positionwise_classifier(features, labels, num_classes, max_iter=cap)
    finally:
        torch.optim.LBFGS.step = step
    return counts


def main(argv):
    torch.set_num_threads(1)
    over = json.loads(argv[0]) if argv else {}
    models = over.get("models", ["cnn", "mae"])
    seeds = over.get("seeds", [0, 1, 2])
    configs = over.get("configs", ["none", "random-0.6"])
    caps = over.get("caps", [100, 400, 1000])
    cpu = torch.device("cpu")
    for kind in models:
        for seed in seeds:
            s = R.preset(over.get("preset", "quick"), models=(kind,), seeds=(seed,))
            data = R.prepare_builtin("brain", s)
            k = len(data.class_names)
            for name in configs:
                model = PT.initial_model(kind, data, s, seed)
                config = R.parse_config(name)
                if config.policy != "none":
                    masker = config.masker(data.grid, seed, s.thresholds, s.reduction)
                    PT.pretrain(model, data, masker, s, s.lr[kind], seed, bdist.DistContext(),
                                progress=False)
                train = P.extract_features(model, data.train.images, cpu).positions()
                test = P.extract_features(model, data.test.images, cpu).positions()
                a, b = P._standardize(train, test, dim=(0, 2))
                a, b = P._channels_last(a), P._channels_last(b)
                cells = []
                for cap in caps:
                    fit = P.fit_positionwise_classifier(a, data.train.labels, k, max_iter=cap)
                    with torch.no_grad():
                        predicted = P._pooled_logits(b, fit.weight, fit.bias).argmax(dim=1)
                    accuracy = float((predicted == data.test.labels).float().mean())
                    cells.append(f"cap {cap}: objective {fit.objective:.5f} "
                                 f"accuracy {100 * accuracy:.1f}")
                stages = iterations_per_stage(a, data.train.labels, k, 5000)
                print(kind, seed, name, " | ".join(cells), "| iterations per stage (cap 5000):",
                      stages, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
