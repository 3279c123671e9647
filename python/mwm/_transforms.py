"""torch.func support for ops whose autograd is registered with ``torch.library``.

The autograd.Function that ``torch.library.register_autograd`` generates has no
``setup_context`` staticmethod, and torch.func's transforms (``grad``, ``jacrev``, ``vjp``)
refuse every autograd.Function without one (pytorch/pytorch#168393, #170834). Under an active
transform the wrappers call the op through an autograd.Function built here from the same
``setup_context`` and ``backward`` functions the op registers, so the formula exists once.
Outside a transform nothing changes: the op is called directly, as ``torch.compile`` and
plain autograd expect. ``vmap`` (and ``jacrev``, ``vmap(grad(...))`` for per-sample gradients)
runs the op once per batch entry through functorch's fallback, which warns that the op has no
batching rule. ``torch.compile`` of a torch.func transform over these ops does not trace
(dynamo cannot inline the autograd.Function's context here); compile the loss and call
``.backward()`` instead.
"""
from typing import Callable


def transform_ready(op, setup_context: Callable, backward: Callable) -> Callable:
    """A callable that runs ``op(*args)``, through a torch.func-compatible autograd.Function
    with ``setup_context`` / ``backward`` when a torch.func transform is active."""
    import torch

    def forward(*args):
        return op(*args)

    function = type(f"TransformReady_{op._schema.name.replace('::', '_')}",
                    (torch.autograd.Function,),
                    {"generate_vmap_rule": True,
                     "forward": staticmethod(forward),
                     "setup_context": staticmethod(setup_context),
                     "backward": staticmethod(backward)})

    def call(*args):
        if torch._C._are_functorch_transforms_active():
            return function.apply(*args)
        return op(*args)

    return call
