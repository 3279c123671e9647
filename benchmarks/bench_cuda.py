#!/usr/bin/env python
"""The CUDA path of mwm against references measured in the same run, at docs/design.md's sizes.

    python benchmarks/bench_cuda.py [--repeats 20] [--device cuda:0] [--json out.json]

Rows (median milliseconds; ratio = mwm / reference, below 1 means mwm is faster):
- masks, every policy at B=256 14x14, B=128 7x7 and B=8 8x8x8: mwm on the GPU against MAE's
  random_masking on the GPU (argsort of uniform noise), and against mwm's CPU path; each row also
  says whether the GPU outputs equal the CPU outputs bit for bit (they must);
- loss, B=64 3x224x224 and B=8 1x128^3, patch 16: the fused forward + backward against MAE's loss
  in eager PyTorch, with peak memory and the share of the measured copy bandwidth;
- tokens, B=256 N=196 C=768 (ViT-B/16 at 75% masking): gather and restore forwards alone, with
  the share of the measured copy bandwidth they reach (docs/cuda.md expects at least 80%), and
  gather + restore with their backward, against torch.gather / MAE's decoder unshuffle.

Without a CUDA device (or without an mwm extension built with CUDA) it prints why and exits 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, List, Optional

import torch

MASK_SIZES = [(256, (14, 14)), (128, (7, 7)), (8, (8, 8, 8))]
POLICIES = ["random", "per_region", "fixed_total", "weighted", "block", "coarse", "loss_guided",
            "attention_guided"]
LOSS_SIZES = [(64, (3, 224, 224), (16, 16)), (8, (1, 128, 128, 128), (16, 16, 16))]


def cuda_unavailable_reason(device: torch.device) -> Optional[str]:
    if device.type != "cuda":
        return f"--device {device} is not a CUDA device"
    if not torch.cuda.is_available():
        return (f"no CUDA device (torch {torch.__version__}, torch.version.cuda = "
                f"{torch.version.cuda}, torch.cuda.is_available() is False)")
    import mwm  # noqa: F401  (loads the extension)
    if not torch._C._dispatch_has_kernel_for_dispatch_key("mwm::generate_masks", "CUDA"):
        return "the mwm extension was built without CUDA (no CUDA kernel for mwm::generate_masks)"
    return None


def timed(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    from mwm.bench.timing import median_time
    return median_time(fn, repeats=repeats, warmup=2, device=device).median_ms


def mae_random_masking(batch: int, n: int, ratio: float, device: torch.device):
    """MAE's random_masking without the gather: the index work a trainer needs."""
    len_keep = int(n * (1 - ratio))
    noise = torch.rand(batch, n, device=device)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    mask = torch.ones(batch, n, device=device)
    mask[:, :len_keep] = 0
    return torch.gather(mask, 1, ids_restore), ids_shuffle[:, :len_keep]


def policy_inputs(policy: str, batch: int, n: int, device: torch.device) -> dict:
    gen = torch.Generator().manual_seed(batch * 1000 + n)
    kwargs: dict = {}
    if policy in ("per_region", "fixed_total"):
        kwargs["regions"] = (torch.rand(batch, n, generator=gen) > 0.7).to(torch.int32).to(device)
        kwargs["region_ratios"] = (0.4, 0.8)
    if policy in ("weighted", "loss_guided", "attention_guided"):
        kwargs["scores"] = torch.rand(batch, n, generator=gen).to(device)
    if policy == "block":
        kwargs["block_min_patches"] = 4 if n < 100 else 16
    return kwargs


def mask_rows(repeats: int, device: torch.device) -> List[dict]:
    import mwm
    rows = []
    for batch, grid in MASK_SIZES:
        n = 1
        for g in grid:
            n *= g
        size = f"B={batch} {'x'.join(map(str, grid))}"
        reference_ms = timed(lambda: mae_random_masking(batch, n, 0.75, device), repeats, device)
        for policy in POLICIES:
            gpu_inputs = policy_inputs(policy, batch, n, device)
            cpu_inputs = {k: (v.cpu() if torch.is_tensor(v) else v) for k, v in gpu_inputs.items()}
            if policy == "coarse" and any(g % 2 for g in grid):
                continue

            def run_gpu():
                return mwm.generate_masks(grid, batch, policy=policy, seed=7, device=device,
                                          **gpu_inputs)

            def run_cpu():
                return mwm.generate_masks(grid, batch, policy=policy, seed=7, device="cpu",
                                          **cpu_inputs)

            gpu_ms = timed(run_gpu, repeats, device)
            cpu_ms = timed(run_cpu, max(3, repeats // 4), torch.device("cpu"))
            gpu, cpu = run_gpu(), run_cpu()
            identical = all(torch.equal(getattr(gpu, name).cpu(), getattr(cpu, name))
                            for name in ("mask", "num_masked", "ids_shuffle", "ids_restore",
                                         "ids_keep", "ids_masked", "noise"))
            rows.append({"section": "masks", "case": policy, "size": size,
                         "ours_ms": gpu_ms, "reference": "MAE random_masking (GPU)",
                         "reference_ms": reference_ms, "ratio": gpu_ms / reference_ms,
                         "cpu_ms": cpu_ms, "gpu_over_cpu": gpu_ms / cpu_ms,
                         "identical_to_cpu": identical})
    return rows


def mae_loss_eager(pred: torch.Tensor, imgs: torch.Tensor, mask: torch.Tensor,
                   patch: tuple) -> torch.Tensor:
    """MAE's forward_loss with norm_pix_loss, patchify included (2D and 3D)."""
    b, c = imgs.shape[:2]
    spatial = imgs.shape[2:]
    grid = [s // p for s, p in zip(spatial, patch)]
    view = [b, c]
    for g, p in zip(grid, patch):
        view += [g, p]
    x = imgs.reshape(view)
    nd = len(patch)
    grid_axes = [2 + 2 * i for i in range(nd)]
    patch_axes = [3 + 2 * i for i in range(nd)]
    x = x.permute([0] + grid_axes + patch_axes + [1])
    target = x.reshape(b, -1, c * int(torch.tensor(patch).prod()))
    mean = target.mean(dim=-1, keepdim=True)
    var = target.var(dim=-1, keepdim=True)
    target = (target - mean) / (var + 1.0e-6) ** 0.5
    loss = ((pred - target) ** 2).mean(dim=-1)
    return (loss * mask).sum() / mask.sum()


def loss_rows(repeats: int, device: torch.device) -> List[dict]:
    import mwm
    from mwm.bench.timing import bandwidth_share, copy_bandwidth, peak_memory_bytes
    bandwidth = copy_bandwidth(256 << 20, device=device)
    rows = []
    for batch, image, patch in LOSS_SIZES:
        gen = torch.Generator(device=device).manual_seed(0)
        imgs = torch.randn(batch, *image, device=device, generator=gen)
        n = 1
        for s, p in zip(image[1:], patch):
            n *= s // p
        vector = image[0]
        for p in patch:
            vector *= p
        pred = torch.randn(batch, n, vector, device=device, generator=gen, requires_grad=True)
        mask = torch.rand(batch, n, device=device, generator=gen) < 0.75

        def ours():
            loss = mwm.masked_recon_loss(pred, imgs, mask, patch, norm_target=True)
            loss.backward()
            return loss

        def reference():
            loss = mae_loss_eager(pred, imgs, mask.float(), patch)
            loss.backward()
            return loss

        ours_ms = timed(ours, repeats, device)
        reference_ms = timed(reference, repeats, device)
        # Forward reads pred and target; backward reads them again and writes grad_pred.
        moved = 2 * (pred.numel() + imgs.numel()) * 4 + pred.numel() * 4
        rows.append({"section": "loss", "case": "masked_recon_loss fwd+bwd (norm_pix)",
                     "size": f"B={batch} {'x'.join(map(str, image))} patch {patch[0]}",
                     "ours_ms": ours_ms, "reference": "MAE loss, eager PyTorch",
                     "reference_ms": reference_ms, "ratio": ours_ms / reference_ms,
                     "ours_peak_mb": peak_memory_bytes(ours, device) / 2**20,
                     "reference_peak_mb": peak_memory_bytes(reference, device) / 2**20,
                     "bytes_moved": moved,
                     "bandwidth_share": bandwidth_share(moved, ours_ms / 1e3, bandwidth)})
    return rows


def token_rows(repeats: int, device: torch.device) -> List[dict]:
    import mwm
    from mwm.bench.timing import bandwidth_share, copy_bandwidth
    bandwidth = copy_bandwidth(256 << 20, device=device)
    batch, n, channels = 256, 196, 768
    keep = n // 4
    x = torch.randn(batch, n, channels, device=device, requires_grad=True)
    masks = mwm.generate_masks((14, 14), batch, policy="random", seed=1, device=device)
    ids_keep, ids_restore = masks.ids_keep, masks.ids_restore
    mask_token = torch.zeros(channels, device=device, requires_grad=True)
    size = f"B={batch} N={n} C={channels}"
    element = x.element_size()
    x_vis_detached = mwm.gather_tokens(x.detach(), ids_keep)

    def gather_only():
        return mwm.gather_tokens(x.detach(), ids_keep)

    def gather_reference():
        return torch.gather(x.detach(), 1, ids_keep.unsqueeze(-1).expand(-1, -1, channels))

    def restore_only():
        return mwm.restore_tokens(x_vis_detached, ids_restore, mask_token.detach())

    def restore_reference():
        tokens = mask_token.detach().expand(batch, n - keep, channels)
        full = torch.cat([x_vis_detached, tokens], dim=1)
        return torch.gather(full, 1, ids_restore.unsqueeze(-1).expand(-1, -1, channels))

    def ours():
        x_vis = mwm.gather_tokens(x, ids_keep)
        full = mwm.restore_tokens(x_vis, ids_restore, mask_token)
        full.sum().backward()

    def reference():
        index = ids_keep.unsqueeze(-1).expand(-1, -1, channels)
        x_vis = torch.gather(x, 1, index)
        tokens = mask_token.expand(batch, n - keep, channels)
        full = torch.cat([x_vis, tokens], dim=1)
        full = torch.gather(full, 1, ids_restore.unsqueeze(-1).expand(-1, -1, channels))
        full.sum().backward()

    rows = []
    # Bytes each forward must move at least: gather reads and writes B*K rows; restore reads
    # the B*K visible rows and writes B*N rows (the mask token stays in L2).
    for case, run, ref, moved in (
            ("gather_tokens fwd", gather_only, gather_reference, 2 * batch * keep * channels),
            ("restore_tokens fwd", restore_only, restore_reference,
             batch * (keep + n) * channels)):
        ours_ms = timed(run, repeats, device)
        reference_ms = timed(ref, repeats, device)
        rows.append({"section": "tokens", "case": case, "size": size, "ours_ms": ours_ms,
                     "reference": "torch.gather (+ cat)", "reference_ms": reference_ms,
                     "ratio": ours_ms / reference_ms,
                     "identical_to_reference": bool(torch.equal(run(), ref())),
                     "bytes_moved": moved * element,
                     "bandwidth_share": bandwidth_share(moved * element, ours_ms / 1e3,
                                                        bandwidth)})
    ours_ms = timed(ours, repeats, device)
    reference_ms = timed(reference, repeats, device)
    rows.append({"section": "tokens", "case": "gather + restore, fwd+bwd", "size": size,
                 "ours_ms": ours_ms, "reference": "torch.gather + cat (MAE)",
                 "reference_ms": reference_ms, "ratio": ours_ms / reference_ms})
    return rows


def format_rows(rows: List[dict]) -> str:
    lines = [f"{'section':8} {'case':38} {'size':32} {'mwm ms':>9} {'ref ms':>9} {'ratio':>6}  "
             "notes"]
    for r in rows:
        notes = []
        if "identical_to_cpu" in r:
            notes.append(f"CPU {r['cpu_ms']:.3f} ms, identical to CPU: "
                         f"{'yes' if r['identical_to_cpu'] else 'NO'}")
        if "ours_peak_mb" in r:
            notes.append(f"peak {r['ours_peak_mb']:.0f} vs {r['reference_peak_mb']:.0f} MiB")
        if "bandwidth_share" in r:
            notes.append(f"{100 * r['bandwidth_share']:.0f}% of copy bandwidth")
        if "identical_to_reference" in r:
            notes.append(f"identical to torch: {'yes' if r['identical_to_reference'] else 'NO'}")
        lines.append(f"{r['section']:8} {r['case']:38} {r['size']:32} {r['ours_ms']:9.3f} "
                     f"{r['reference_ms']:9.3f} {r['ratio']:6.2f}  {'; '.join(notes)}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed repetitions (median)")
    parser.add_argument("--device", default="cuda", help="CUDA device (default: cuda)")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args()
    device = torch.device(args.device)
    reason = cuda_unavailable_reason(device)
    if reason is not None:
        print(f"bench_cuda: skipped, nothing measured: {reason}")
        return 0
    from mwm.bench.timing import describe_machine, machine_info
    info = machine_info(device)
    print(describe_machine(info))
    rows = mask_rows(args.repeats, device) + loss_rows(args.repeats, device) + token_rows(
        args.repeats, device)
    print(format_rows(rows))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"machine": info, "rows": rows}, out, indent=2)
    mismatched = [f"{r['case']} {r['size']}" for r in rows
                  if r.get("identical_to_cpu") is False or r.get("identical_to_reference") is False]
    if mismatched:
        print(f"bench_cuda: GPU results differ from the CPU / torch for {', '.join(mismatched)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
