"""Autograd of the ops, registered once for plain autograd, torch.compile and torch.func.

The autograd.Function that ``torch.library.register_autograd`` generates has no
``setup_context`` staticmethod, and torch.func's transforms (``grad``, ``jacrev``, ``vjp``)
refuse every autograd.Function without one (pytorch/pytorch#168393, #170834). So
``register_autograd`` here registers the op's ``setup_context`` / ``backward`` with torch and
returns the callable the wrappers use: the op itself, or, under an active torch.func transform,
the op through an autograd.Function built from the same two functions. Outside a transform
nothing changes, as ``torch.compile`` and plain autograd expect. ``vmap`` (and ``jacrev``,
``vmap(grad(...))`` for per-sample gradients) runs the op once per batch entry through
functorch's fallback, which warns that the op has no batching rule. ``torch.compile`` of a
torch.func transform over these ops does not trace (dynamo cannot inline the custom op there);
compile the loss and call ``.backward()`` instead.
"""
from typing import Callable

import torch


def register_autograd(op: str, backward: Callable, *, setup_context: Callable) -> Callable:
    """``torch.library.register_autograd(op, backward, setup_context=...)``; returns the
    callable that runs the op (``"mwm::name"``), torch.func-ready."""
    torch.library.register_autograd(op, backward, setup_context=setup_context)
    namespace, name = op.split("::")
    overload = getattr(getattr(torch.ops, namespace), name).default

    def forward(*args):
        return overload(*args)

    function = type(f"TorchFuncReady_{namespace}_{name}", (torch.autograd.Function,),
                    {"generate_vmap_rule": True,
                     "forward": staticmethod(forward),
                     "setup_context": staticmethod(setup_context),
                     "backward": staticmethod(backward)})

    def call(*args):
        if torch._C._are_functorch_transforms_active():
            return function.apply(*args)
        return overload(*args)

    return call
