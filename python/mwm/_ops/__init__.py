"""Fake (meta) kernels and autograd formulas of the mask and loss ops, imported once by
``mwm._extension`` after the extension has defined the ops. The other ops keep theirs in the
module that defines their public function (``mwm.tokens``, ``mwm.coral``)."""

from . import loss, masking  # noqa: F401
