"""The package version.

It is written in one place, ``include/mwm/config.hpp`` (``MWM_VERSION_MAJOR/MINOR/PATCH``):
CMake's ``project()`` and scikit-build-core's version provider read it there, a wheel carries it
in ``mwm/_build_version.py`` (generated at build time), and a source checkout reads the header.
"""

from __future__ import annotations

import re
from pathlib import Path


def version_from_header(header: Path) -> str:
    """``MAJOR.MINOR.PATCH`` from the ``MWM_VERSION_*`` macros of ``config.hpp``."""
    text = header.read_text()
    parts = []
    for part in ("MAJOR", "MINOR", "PATCH"):
        found = re.search(rf"#define\s+MWM_VERSION_{part}\s+(\d+)", text)
        if found is None:
            raise ImportError(f"mwm: {header} defines no MWM_VERSION_{part}")
        parts.append(found.group(1))
    return ".".join(parts)


try:
    from ._build_version import version as __version__
except ImportError:
    _HEADER = Path(__file__).resolve().parents[2] / "include" / "mwm" / "config.hpp"
    if not _HEADER.is_file():
        raise ImportError(f"mwm: no version: neither mwm/_build_version.py (written when the "
                          f"wheel is built) nor the source checkout's {_HEADER}") from None
    __version__ = version_from_header(_HEADER)
