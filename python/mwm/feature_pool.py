"""CORN's Dynamic Feature Pool of labeled voxel features, and confidence filtering of unlabeled
features.

:class:`DynamicFeaturePool` keeps, for every labeled sample ("slot") and class, the features of
the voxels where *every* branch predicts the ground truth — CORN's guard against "sample
selection bias": a labeled voxel the networks still get wrong is not a trustworthy reference.
A slot's features are blended into what it held with an exponential moving average
(``momentum * old + (1 - momentum) * new``, CORN's 0.9) or replaced. Storage is a fixed
``(slots, classes, slot_capacity, d)`` buffer, so memory never grows with training.
:meth:`DynamicFeaturePool.sample` draws a fixed number of features per class with the pool's own
``torch.Generator``, which makes runs reproducible from ``seed`` (and the state saveable).

:func:`confidence_filter` picks, per predicted class, the most and/or least confident unlabeled
voxels (CORN keeps a quarter of its budget from each end).
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import torch

__all__ = ["DynamicFeaturePool", "confidence_filter"]

UPDATE_RULES = ("ema", "replace")


def _require_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"mwm: {name} = {value!r}: must be an integer >= {minimum}")
    return value


def _require_share(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"mwm: {name} = {value!r}: must be a share in [0, 1]")
    return float(value)


def confidence_filter(predicted: torch.Tensor, confidence: torch.Tensor, num_classes: int, *,
                      top: float = 0.25, bottom: float = 0.25,
                      max_per_side: Optional[int] = None) -> List[torch.Tensor]:
    """Indices of the unlabeled features to keep, one int64 tensor per class.

    For every class ``c``, among the ``n_c`` entries with ``predicted == c``: the
    ``floor(top * n_c)`` most confident and the ``floor(bottom * n_c)`` least confident, each
    side capped at ``max_per_side`` (all ``n_c`` when the two sides together reach ``n_c``).
    Both sides cut one ranking — descending confidence, ties by lower index first — so they never
    overlap and the result is deterministic. Indices come in that ranking's order.
    """
    if not isinstance(predicted, torch.Tensor) or not isinstance(confidence, torch.Tensor):
        raise TypeError("mwm: predicted and confidence must be torch.Tensors")
    if predicted.dim() != 1 or confidence.shape != predicted.shape:
        raise ValueError(f"mwm: predicted {tuple(predicted.shape)} and confidence "
                         f"{tuple(confidence.shape)} must be 1-D of the same length")
    if predicted.dtype.is_floating_point or predicted.dtype == torch.bool:
        raise TypeError(f"mwm: predicted must hold integer class indices, got {predicted.dtype}")
    if not confidence.dtype.is_floating_point:
        raise TypeError(f"mwm: confidence must be floating point, got {confidence.dtype}")
    _require_int(num_classes, "num_classes", 1)
    top = _require_share(top, "top")
    bottom = _require_share(bottom, "bottom")
    if top == 0.0 and bottom == 0.0:
        raise ValueError("mwm: top = bottom = 0 would keep nothing")
    if max_per_side is not None:
        _require_int(max_per_side, "max_per_side", 1)
    if predicted.numel() and (int(predicted.min()) < 0 or int(predicted.max()) >= num_classes):
        raise ValueError(f"mwm: predicted holds classes in [{int(predicted.min())}, "
                         f"{int(predicted.max())}]: must lie in [0, {num_classes})")
    if not bool(torch.isfinite(confidence).all()):
        raise ValueError("mwm: confidence contains NaN or Inf")
    kept = []
    for c in range(num_classes):
        members = torch.nonzero(predicted == c).flatten()
        n_c = members.numel()
        k_top = math.floor(top * n_c)
        k_bottom = math.floor(bottom * n_c)
        if max_per_side is not None:
            k_top, k_bottom = min(k_top, max_per_side), min(k_bottom, max_per_side)
        # A stable sort of the index-ordered members breaks confidence ties by index.
        ranking = members[torch.sort(confidence[members], descending=True, stable=True).indices]
        if k_top + k_bottom >= n_c:
            kept.append(ranking)
        else:
            kept.append(torch.cat([ranking[:k_top], ranking[n_c - k_bottom:]]))
    return kept


class DynamicFeaturePool:
    """CORN's Dynamic Feature Pool: per labeled sample slot and class, up to ``slot_capacity``
    features of correctly predicted voxels.

    Args:
        num_slots: number of labeled samples (slot ``k`` holds labeled sample ``k``).
        num_classes: segmentation classes (background included).
        feature_dim: feature width ``d``.
        slot_capacity: features kept per slot and class; the per-class capacity is
            ``num_slots * slot_capacity`` and the buffer never grows.
        momentum: EMA weight of what a slot already holds (CORN: 0.9).
        update: ``"ema"`` — blend when the slot already holds as many features of that class
            as arrive (CORN's rule; features pair up in voxel order), otherwise replace;
            ``"replace"`` — always replace.
        seed: seeds the pool's ``torch.Generator`` (sampling only).
        dtype, device: of the stored features.
    """

    def __init__(self, num_slots: int, num_classes: int, feature_dim: int, *,
                 slot_capacity: int = 256, momentum: float = 0.9, update: str = "ema",
                 seed: int = 0, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu"):
        self.num_slots = _require_int(num_slots, "num_slots", 1)
        self.num_classes = _require_int(num_classes, "num_classes", 1)
        self.feature_dim = _require_int(feature_dim, "feature_dim", 1)
        self.slot_capacity = _require_int(slot_capacity, "slot_capacity", 1)
        self.momentum = _require_share(momentum, "momentum")
        if update not in UPDATE_RULES:
            raise ValueError(f"mwm: update = {update!r}: must be one of {', '.join(UPDATE_RULES)}")
        self.update_rule = update
        if dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
            raise TypeError(f"mwm: dtype = {dtype}: must be a floating point dtype")
        self.seed = _require_int(seed, "seed", 0)
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(self.seed)
        self.features = torch.zeros(num_slots, num_classes, slot_capacity, feature_dim,
                                    dtype=dtype, device=device)
        self.counts = torch.zeros(num_slots, num_classes, dtype=torch.int64)

    # -- sizes -------------------------------------------------------------------------------

    @property
    def capacity_per_class(self) -> int:
        return self.num_slots * self.slot_capacity

    @property
    def nbytes(self) -> int:
        """Bytes held by the pool's buffers (constant over its life)."""
        return (self.features.numel() * self.features.element_size()
                + self.counts.numel() * self.counts.element_size())

    def stored_per_class(self) -> torch.Tensor:
        """Number of stored features of each class, ``(num_classes,)`` int64."""
        return self.counts.sum(dim=0)

    def stored(self, cls: int) -> torch.Tensor:
        """All stored features of class ``cls`` ``(N, d)``, slot by slot."""
        self._check_class(cls)
        return torch.cat([self.features[s, cls, :int(self.counts[s, cls])]
                          for s in range(self.num_slots)])

    # -- updates -----------------------------------------------------------------------------

    def update(self, slots, features: torch.Tensor, labels: torch.Tensor,
               predictions: Sequence[torch.Tensor]) -> None:
        """Refreshes the slots of a labeled batch.

        ``slots (B,)`` labeled-sample indices; ``features (B, d, *spatial)`` (a branch's
        features, or the branches' mean as in CORN); ``labels (B, *spatial)`` ground truth;
        ``predictions``: one ``(B, *spatial)`` class map per branch. A voxel's feature is kept
        only when every branch predicts its label.
        """
        slots = torch.as_tensor(slots).flatten()
        if not isinstance(features, torch.Tensor) or features.dim() < 2:
            raise ValueError("mwm: features must be a (B, d, *spatial) tensor")
        batch = features.shape[0]
        if slots.numel() != batch:
            raise ValueError(f"mwm: {slots.numel()} slots for a batch of {batch} features")
        if features.shape[1] != self.feature_dim:
            raise ValueError(f"mwm: features has shape {tuple(features.shape)}: dimension 1 must "
                             f"equal feature_dim = {self.feature_dim}")
        spatial = tuple(features.shape[2:])
        if tuple(labels.shape) != (batch, *spatial):
            raise ValueError(f"mwm: labels has shape {tuple(labels.shape)}: expected "
                             f"{(batch, *spatial)} to match features")
        if len(predictions) == 0:
            raise ValueError("mwm: predictions is empty: pass one class map per branch")
        correct = torch.ones_like(labels, dtype=torch.bool)
        for k, prediction in enumerate(predictions):
            if tuple(prediction.shape) != tuple(labels.shape):
                raise ValueError(f"mwm: predictions[{k}] has shape {tuple(prediction.shape)}: "
                                 f"expected {tuple(labels.shape)}")
            correct &= prediction == labels
        with torch.no_grad():
            voxels = features.detach().flatten(2).transpose(1, 2)  # (B, voxels, d)
            for b in range(batch):
                keep = correct[b].flatten()
                self.update_slot(int(slots[b]), voxels[b][keep], labels[b].flatten()[keep])

    def update_slot(self, slot: int, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Refreshes one slot from ``features (n, d)`` with class ``labels (n,)``, features the
        caller has already restricted to trustworthy voxels, in voxel order.

        Per class: more than ``slot_capacity`` features are thinned to ``slot_capacity`` evenly
        spaced ones (voxel order kept, so successive EMA updates pair nearby voxels); a class
        with no feature now is emptied in this slot (stale features are not kept).
        """
        if isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot < self.num_slots:
            raise ValueError(f"mwm: slot = {slot!r}: must be an integer in [0, {self.num_slots})")
        if features.dim() != 2 or features.shape[1] != self.feature_dim:
            raise ValueError(f"mwm: features has shape {tuple(features.shape)}: expected "
                             f"(n, {self.feature_dim})")
        if labels.shape != features.shape[:1]:
            raise ValueError(f"mwm: labels has shape {tuple(labels.shape)}: expected "
                             f"({features.shape[0]},)")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(f"mwm: labels hold classes in [{int(labels.min())}, "
                             f"{int(labels.max())}]: must lie in [0, {self.num_classes})")
        if not bool(torch.isfinite(features).all()):
            raise ValueError(f"mwm: features for slot {slot} contain NaN or Inf")
        features = features.detach().to(dtype=self.features.dtype, device=self.features.device)
        labels = labels.to(self.features.device)
        for c in range(self.num_classes):
            mine = features[labels == c]
            n = mine.shape[0]
            if n > self.slot_capacity:
                spread = torch.arange(self.slot_capacity, device=mine.device) * n
                mine = mine[torch.div(spread, self.slot_capacity, rounding_mode="floor")]
                n = self.slot_capacity
            held = int(self.counts[slot, c])
            target = self.features[slot, c, :n]
            if self.update_rule == "ema" and held == n and n > 0:
                target.mul_(self.momentum).add_(mine, alpha=1.0 - self.momentum)
            else:
                target.copy_(mine)
                self.features[slot, c, n:held].zero_()
                self.counts[slot, c] = n

    # -- sampling ----------------------------------------------------------------------------

    def sample(self, num_per_class: int) -> List[Optional[torch.Tensor]]:
        """``num_per_class`` stored features of every class, drawn without replacement with the
        pool's generator; ``None`` for a class with fewer stored features (CORN's rule)."""
        _require_int(num_per_class, "num_per_class", 1)
        drawn: List[Optional[torch.Tensor]] = []
        for c in range(self.num_classes):
            stored = self.stored(c)
            if stored.shape[0] < num_per_class:
                drawn.append(None)
                continue
            order = torch.randperm(stored.shape[0], generator=self.generator)[:num_per_class]
            drawn.append(stored[order.to(stored.device)])
        return drawn

    # -- persistence -------------------------------------------------------------------------

    def _config(self) -> Dict[str, object]:
        return {"num_slots": self.num_slots, "num_classes": self.num_classes,
                "feature_dim": self.feature_dim, "slot_capacity": self.slot_capacity,
                "momentum": self.momentum, "update": self.update_rule, "seed": self.seed}

    def state_dict(self) -> Dict[str, object]:
        """Everything needed to continue exactly: buffers, counts, generator state, settings."""
        return {"config": self._config(), "features": self.features.clone(),
                "counts": self.counts.clone(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: Dict[str, object]) -> None:
        """Restores a :meth:`state_dict`; the pool's shape settings must match."""
        missing = {"config", "features", "counts", "generator"} - set(state)
        if missing:
            raise KeyError(f"mwm: pool state is missing {sorted(missing)}")
        config = dict(state["config"])
        mine = self._config()
        for key in ("num_slots", "num_classes", "feature_dim", "slot_capacity"):
            if config.get(key) != mine[key]:
                raise ValueError(f"mwm: pool state has {key} = {config.get(key)!r}, this pool "
                                 f"{mine[key]!r}")
        features, counts = state["features"], state["counts"]
        if tuple(features.shape) != tuple(self.features.shape) or \
                tuple(counts.shape) != tuple(self.counts.shape):
            raise ValueError("mwm: pool state buffers do not match the pool's shape")
        if int(counts.min()) < 0 or int(counts.max()) > self.slot_capacity:
            raise ValueError(f"mwm: pool state counts must lie in [0, {self.slot_capacity}]")
        self.features.copy_(features)
        self.counts.copy_(counts)
        self.momentum = _require_share(config["momentum"], "momentum")
        if config["update"] not in UPDATE_RULES:
            raise ValueError(f"mwm: pool state update = {config['update']!r}")
        self.update_rule = config["update"]
        self.seed = config["seed"]
        self.generator.set_state(state["generator"])

    def _check_class(self, cls) -> None:
        if isinstance(cls, bool) or not isinstance(cls, int) or not 0 <= cls < self.num_classes:
            raise ValueError(f"mwm: class = {cls!r}: must be an integer in [0, {self.num_classes})")
