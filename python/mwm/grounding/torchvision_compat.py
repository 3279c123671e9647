"""Makes torchvision importable where its wheel was built for another torch.

transformers (CLIP, SAM) and open_clip import torchvision when it is installed. The torchvision
wheel pip picks beside a CPU build of torch can be a CUDA build whose ops library does not load;
it then fails to import at its fake-kernel registration for ``nms``, and with it every CLIP and
SAM model. Declaring the two op schemas torchvision registers lets it import. The grounding code
never calls them (an accidental call raises torch's "no kernel" error, not a wrong result).
Nothing changes where torchvision imports as it should.
"""

from __future__ import annotations

import sys

import torch

_LIBRARY = None  # keeps the declared schemas alive


def ensure_torchvision_importable() -> None:
    """Imports torchvision, declaring ``torchvision::nms`` / ``qnms`` first when its own ops
    library failed to define them; does nothing when torchvision is absent or imports."""
    global _LIBRARY
    try:
        import torchvision  # noqa: F401
    except ImportError:
        return
    except RuntimeError as exc:
        if "torchvision::nms does not exist" not in str(exc):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        if _LIBRARY is None:
            _LIBRARY = torch.library.Library("torchvision", "FRAGMENT")
            _LIBRARY.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            _LIBRARY.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        import torchvision  # noqa: F401
