"""Fake (meta) kernels and autograd formulas of the mwm ops, one module per op family; imported
once by ``mwm._extension`` after the extension has defined the ops."""

from . import coral, loss, masking, pack_tokens, tokens  # noqa: F401
