"""Loads the compiled extension ``mwm._C`` once and checks that it was built from this package's
version. The Python side of each op (fake kernel, autograd) is registered by the module that
defines its public function (``mwm.masking``, ``mwm.loss``, ``mwm.tokens``, ``mwm.coral``).

``MWM_EXTENSION`` names a built ``_C`` library to load instead of the installed one (a build
folder while developing). Either way the module is ``mwm._C``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType

import torch  # noqa: F401  (loads libtorch, which the extension links against)

from ._version import __version__


def _import_extension() -> ModuleType:
    path = os.environ.get("MWM_EXTENSION")
    if not path:
        try:
            from . import _C
        except ImportError as exc:
            raise ImportError(
                "mwm: the compiled extension mwm._C is missing; install the package with "
                "`pip install --no-build-isolation .` (or set MWM_EXTENSION to a built _C "
                "library)") from exc
        return _C
    spec = importlib.util.spec_from_file_location("mwm._C", path)
    if spec is None or not os.path.isfile(path):
        raise ImportError(f"mwm: MWM_EXTENSION = {path!r}: no such extension library")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["mwm._C"] = module
    sys.modules[__package__]._C = module  # as importing a submodule does
    return module


def check_version(extension_version: str, package_version: str, origin: str) -> None:
    """Raises ImportError unless the extension and the Python package have the same version."""
    if extension_version != package_version:
        raise ImportError(
            f"mwm: the compiled extension {origin} is version {extension_version} but the mwm "
            f"Python package is version {package_version}; rebuild the extension from the same "
            f"source (pip install --no-build-isolation .), or point MWM_EXTENSION at a build of "
            f"version {package_version}")


extension = _import_extension()
check_version(extension.version(), __version__, extension.__file__)
