"""Tensors on different devices: every op checks its tensors' devices before it makes a device
current, so a mix gives mwm's "is on cpu but ... is on cuda" error, never an internal assert of
the CUDA guard; the small host arrays of the CUDA ops (thresholds, quantile counts, prompt
weights) travel by value, so the ops can be captured in a CUDA graph.

Without a GPU the checks are exercised on the CPU kernels with a `meta` tensor beside CPU ones:
the op entry that runs them is the one the CUDA kernels share (bindings/ops/<op>.h). The tests
marked `cuda` run where a CUDA device and the CUDA kernels are present."""

import pytest
import torch

import mwm
from mwm import _C

CPU_ONLY = torch._C.DispatchKeySet(torch._C.DispatchKey.CPU)
HAS_CUDA_KERNELS = torch._C._dispatch_has_kernel_for_dispatch_key("mwm::generate_masks", "CUDA")
requires_cuda = pytest.mark.skipif(not (torch.cuda.is_available() and HAS_CUDA_KERNELS),
                                   reason="needs a CUDA device and the CUDA build of mwm")


def _on_cpu_kernel(op, *args, **kwargs):
    # Straight to the CPU kernel, whatever devices the tensors are on (as the dispatcher does
    # for the CUDA kernel when one tensor of a mix is a CUDA tensor).
    return op.default.redispatch(CPU_ONLY, *args, **kwargs)


def _loss_inputs(device_of):
    pred = torch.rand(2, 4, 48, device=device_of("pred"))
    target = torch.rand(2, 3, 8, 8, device=device_of("target"))
    mask = torch.rand(2, 4, device=device_of("mask")) > 0.5
    return pred, target, mask


MIXES = {
    "loss target": (lambda meta: _on_cpu_kernel(
        torch.ops.mwm.masked_recon_loss,
        *_loss_inputs(lambda n: meta if n == "target" else "cpu"), None, [4, 4], "patch", False,
        "mse", "mean"), "target is on meta but pred is on cpu"),
    "loss mask": (lambda meta: _on_cpu_kernel(
        torch.ops.mwm.masked_recon_loss,
        *_loss_inputs(lambda n: meta if n == "mask" else "cpu"), None, [4, 4], "patch", False,
        "mse", "mean"), "mask is on meta but pred is on cpu"),
    "loss weight": (lambda meta: _on_cpu_kernel(
        torch.ops.mwm.masked_recon_loss, *_loss_inputs(lambda n: "cpu"),
        torch.ones(2, 4, device=meta), [4, 4], "patch", False, "mse", "mean"),
        "weight is on meta but pred is on cpu"),
    "loss backward grad": (lambda meta: _on_cpu_kernel(
        torch.ops.mwm._masked_recon_loss_backward, torch.ones((), device=meta),
        *_loss_inputs(lambda n: "cpu"), None, [4, 4], "patch", False, "mse", "mean"),
        "grad is on meta but pred is on cpu"),
    "masks regions": (lambda meta: _on_cpu_kernel(
        torch.ops.mwm.generate_masks, torch.arange(2), [4, 4],
        torch.zeros(2, 16, dtype=torch.int32, device=meta), None, 0, policy="per_region",
        region_ratios=[0.5]), "regions is on meta but sample_index is on cpu"),
    "masks scores": (lambda meta: _on_cpu_kernel(
        torch.ops.mwm.generate_masks, torch.arange(2), [4, 4], None,
        torch.rand(2, 16, device=meta), 0, policy="weighted"),
        "scores is on meta but sample_index is on cpu"),
    "gather ids": (lambda meta: _on_cpu_kernel(
        torch.ops.mwm.gather_tokens, torch.rand(2, 5, 3),
        torch.zeros(2, 2, dtype=torch.int64, device=meta)),
        "ids_keep is on meta but x is on cpu"),
    "restore mask_token": (lambda meta: _on_cpu_kernel(
        torch.ops.mwm.restore_tokens, torch.rand(2, 2, 3), torch.zeros(2, 4, dtype=torch.int64),
        torch.rand(3, device=meta), None), "mask_token is on meta but x_vis is on cpu"),
    "restore num_visible": (lambda meta: _on_cpu_kernel(
        torch.ops.mwm.restore_tokens, torch.rand(2, 2, 3), torch.zeros(2, 4, dtype=torch.int64),
        torch.rand(3), torch.ones(2, dtype=torch.int64, device=meta)),
        "num_visible is on meta but x_vis is on cpu"),
    "coral y": (lambda meta: _on_cpu_kernel(
        torch.ops.mwm.coral_loss, torch.rand(4, 3, dtype=torch.float64),
        torch.rand(4, 3, dtype=torch.float64, device=meta)), "y is on meta but x is on cpu"),
}


@pytest.mark.parametrize("case", sorted(MIXES))
def test_a_tensor_on_another_device_is_named_before_any_kernel_runs(case):
    call, message = MIXES[case]
    with pytest.raises(RuntimeError, match=f"mwm: {message}"):
        call("meta")


def test_built_with_cuda_tells_whether_the_cuda_kernels_are_registered():
    assert _C.built_with_cuda() == HAS_CUDA_KERNELS
    if not torch.version.cuda:  # a CPU build of torch cannot have built the CUDA kernels
        assert _C.built_with_cuda() is False


# ------------------------------------------------------------------ on a CUDA device

def _cuda_mixes():
    cpu, gpu = "cpu", "cuda"
    return {
        "loss target": (lambda: mwm.masked_recon_loss(
            torch.rand(2, 4, 48, device=gpu), torch.rand(2, 3, 8, 8), torch.rand(2, 4) > 0.5,
            patch_size=4), "target is on cpu but pred is on cuda"),
        "loss pred": (lambda: mwm.masked_recon_loss(
            torch.rand(2, 4, 48), torch.rand(2, 3, 8, 8, device=gpu),
            torch.rand(2, 4, device=gpu) > 0.5, patch_size=4),
            "target is on cuda:0 but pred is on cpu"),
        "masks": (lambda: mwm.generate_masks(
            (4, 4), policy="weighted", scores=torch.rand(2, 16, device=gpu),
            sample_index=torch.arange(2, device=cpu)),
            "scores is on cuda:0 but sample_index is on cpu"),
        "gather": (lambda: mwm.gather_tokens(
            torch.rand(2, 5, 3), torch.zeros(2, 2, dtype=torch.int64, device=gpu)),
            "ids_keep is on cuda:0 but x is on cpu"),
    }


@pytest.mark.parametrize("case", sorted(_cuda_mixes()))
@pytest.mark.cuda
@requires_cuda
def test_a_cpu_tensor_beside_cuda_tensors_gives_mwms_device_error(case):
    call, message = _cuda_mixes()[case]
    with pytest.raises(RuntimeError, match=f"mwm: {message}") as error:
        call()
    assert "INTERNAL ASSERT" not in str(error.value)


@pytest.mark.parametrize("heatmaps_on,weights_on", [("cpu", "cuda"), ("cuda", "cpu"),
                                                    ("cuda", "cuda")])
@pytest.mark.cuda
@requires_cuda
def test_patch_scores_takes_prompt_weights_on_either_device(heatmaps_on, weights_on):
    heatmaps = torch.rand(2, 3, 16, 16)
    weights = torch.tensor([0.2, 0.3, 0.5])
    expected = torch.ops.mwm.patch_scores(heatmaps, [4, 4], "mean", 0.5, "weighted_sum", weights,
                                          "error")
    ours = torch.ops.mwm.patch_scores(heatmaps.to(heatmaps_on), [4, 4], "mean", 0.5,
                                      "weighted_sum", weights.to(weights_on), "error")
    assert ours.device.type == heatmaps_on
    torch.testing.assert_close(ours.cpu(), expected)


@pytest.mark.cuda
@requires_cuda
def test_ops_with_host_arrays_are_captured_in_a_cuda_graph():
    scores = torch.rand(4, 64, device="cuda")
    heatmaps = torch.rand(4, 2, 32, 32, device="cuda")
    weights = torch.tensor([0.25, 0.75])  # on the host: passed by value, no copy

    def step():
        return (torch.ops.mwm.regions_from_thresholds(scores, [0.3, 0.6], "error"),
                torch.ops.mwm.regions_from_quantiles(scores, [0.5, 0.25], "error"),
                torch.ops.mwm.patch_scores(heatmaps, [8, 8], "mean", 0.5, "weighted_sum",
                                           weights, "error"))

    expected = step()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = step()
    scores.copy_(torch.rand(4, 64))
    heatmaps.copy_(torch.rand(4, 2, 32, 32))
    expected = step()
    graph.replay()
    torch.cuda.synchronize()
    for ours, theirs in zip(captured, expected):
        assert torch.equal(ours, theirs)
