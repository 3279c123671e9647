"""mwm — Mask What Matters: text-guided patch masks for masked image modeling.

The ops are registered as ``torch.ops.mwm.*`` by the compiled extension; this package holds the
functional API over them, the masker object, integrations, grounding, viz and the benchmark
harness.

The top-level names are those of each public module's ``__all__`` (a new function listed there
is exported here without an edit to this file).
"""

from . import budget, coral, device_errors, feature_pool, loss, masker, masking, tokens
from ._version import __version__ as __version__
from .budget import *  # noqa: F403
from .coral import *  # noqa: F403
from .device_errors import *  # noqa: F403
from .feature_pool import *  # noqa: F403
from .loss import *  # noqa: F403
from .masker import *  # noqa: F403
from .masking import *  # noqa: F403
from .tokens import *  # noqa: F403

__all__ = []
__all__ += budget.__all__
__all__ += coral.__all__
__all__ += device_errors.__all__
__all__ += feature_pool.__all__
__all__ += loss.__all__
__all__ += masker.__all__
__all__ += masking.__all__
__all__ += tokens.__all__
