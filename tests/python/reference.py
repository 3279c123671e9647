"""Independent plain-Python references of mwm's semantics (docs/design.md), for parity tests.

Written from the contracts, not from the C++ code: Philox4x32-10 from Salmon et al. (SC'11),
the mwm keying, the per-region / fixed-total counts, and the canonical order.
"""

from __future__ import annotations

import math

import torch

M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK32 = 0xFFFFFFFF


def philox4x32_10(counter, key):
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for r in range(10):
        if r:
            k0, k1 = (k0 + W0) & MASK32, (k1 + W1) & MASK32
        p0, p1 = M0 * c0, M1 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0) & MASK32, p1 & MASK32, \
            ((p0 >> 32) ^ c3 ^ k1) & MASK32, p0 & MASK32
    return c0, c1, c2, c3


def random_u32(seed, sample, patch, draw=0):
    counter = (sample & MASK32, patch, draw, (sample >> 32) & MASK32)
    return philox4x32_10(counter, (seed & MASK32, (seed >> 32) & MASK32))[0]


def random_key(seed, sample, patch):
    return (random_u32(seed, sample, patch) << 32) | patch


def keep_count(n, ratio, rounding="floor"):
    if rounding == "floor":
        return int(n * (1.0 - ratio))
    if rounding == "round":
        return int(round(n * (1.0 - ratio)))
    if rounding == "ceil_mask":
        return n - math.ceil(n * ratio)
    return n - int(n * ratio)


def canonical_order(keys_by_patch, visible, order="random"):
    """Visible patches first, then masked, each by key (random) or by index (sorted)."""
    sort = (lambda p: keys_by_patch[p]) if order == "random" else (lambda p: p)
    shown = sorted((p for p in range(len(keys_by_patch)) if visible[p]), key=sort)
    hidden = sorted((p for p in range(len(keys_by_patch)) if not visible[p]), key=sort)
    return shown + hidden, len(shown)


def select_by_groups(keys, groups, keep):
    visible = [False] * len(keys)
    for g, k in keep.items():
        members = sorted((p for p in range(len(keys)) if groups[p] == g), key=lambda p: keys[p])
        for p in members[:k]:
            visible[p] = True
    return visible


def random_masks(n, ratio, seed, sample, rounding="floor", order="random"):
    keys = [random_key(seed, sample, p) for p in range(n)]
    visible = select_by_groups(keys, [0] * n, {0: keep_count(n, ratio, rounding)})
    return canonical_order(keys, visible, order)


def per_region_masks(regions, ratios, seed, sample, order="random"):
    n = len(regions)
    keys = [random_key(seed, sample, p) for p in range(n)]
    keep = {r: keep_count(sum(1 for x in regions if x == r), ratio) for r, ratio in enumerate(ratios)}
    return canonical_order(keys, select_by_groups(keys, regions, keep), order)


def share_budget(counts, ratios, masked):
    """fixed_total's split: proportional to round(ratio * 65536) * n_r, capped, largest
    remainder with ties to the lower region."""
    q = [int(round(min(max(r, 0.0), 1.0) * 65536)) for r in ratios]
    masked = min(masked, sum(counts))
    capped = [c == 0 for c in counts]
    while True:
        left = masked - sum(c for c, cap in zip(counts, capped) if cap)
        weights = [0 if cap else qi * c for qi, c, cap in zip(q, counts, capped)]
        if sum(weights) == 0:
            weights = [0 if cap else c for c, cap in zip(counts, capped)]
        total = sum(weights)
        newly = [r for r in range(len(counts))
                 if not capped[r] and left * weights[r] >= counts[r] * total]
        if not newly:
            break
        for r in newly:
            capped[r] = True
    out, rem = [], []
    for r in range(len(counts)):
        if capped[r]:
            out.append(counts[r])
            rem.append(-1)
        else:
            out.append(left * weights[r] // total if total else 0)
            rem.append(left * weights[r] % total if total else 0)
    short = masked - sum(out)
    for r in sorted(range(len(counts)), key=lambda r: (-rem[r], r)):
        if short == 0:
            break
        if rem[r] >= 0 and out[r] < counts[r]:
            out[r] += 1
            short -= 1
    return out


def mae_random_masking(x, mask_ratio, noise):
    """MAE's random_masking (models_mae.py), written from the paper's description."""
    n, length, dim = x.shape
    len_keep = int(length * (1 - mask_ratio))
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    x_masked = torch.gather(x, 1, ids_keep.unsqueeze(-1).repeat(1, 1, dim))
    mask = torch.ones(n, length)
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return x_masked, mask, ids_restore
