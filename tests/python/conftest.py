import os
import sys

import torch

# Tests import the plain-Python references next to them.
sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _make_torchvision_importable():
    """transformers, timm and open_clip import torchvision. The torchvision wheel next to the CPU
    build of torch is a CUDA build whose ops library cannot load, and it then fails to import on
    its fake-kernel registration for nms. Declaring the two op schemas it registers lets it
    import; nothing here calls them. Does nothing where torchvision imports as it should."""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        return
    except RuntimeError as exc:
        if "torchvision::nms does not exist" not in str(exc):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        library = torch.library.Library("torchvision", "FRAGMENT")
        library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _make_torchvision_importable.library = library  # keep the definitions alive
        import torchvision  # noqa: F401


_make_torchvision_importable()


# --- devices --------------------------------------------------------------------------------
# Tests that take the `device` fixture run once per device, as torchvision's tests do: on the
# CPU always, and on CUDA when a device is present. The CUDA variants carry the `cuda` marker
# (pyproject.toml), so `pytest -m cuda` runs the GPU part alone; without a device they are
# collected and skipped with the reason "no CUDA device". Use DEVICES with
# pytest.mark.parametrize where a fixture does not fit.
import pytest  # noqa: E402

CUDA_SKIP_REASON = "no CUDA device"

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda",
                 marks=[pytest.mark.cuda,
                        pytest.mark.skipif(not torch.cuda.is_available(),
                                           reason=CUDA_SKIP_REASON)]),
]


@pytest.fixture(params=DEVICES)
def device(request):
    """"cpu", then "cuda" (marked `cuda`, skipped without a device)."""
    return request.param
