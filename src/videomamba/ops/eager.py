"""Custom ops in plain eager mode without the dispatcher's Python cost.

The fast backends are ``torch.library.custom_op`` pairs (forward and backward) so that
``torch.compile`` traces them, fake tensors give their shapes and ``FlopCounterMode`` counts them.
In plain eager mode none of that is needed, and the custom-op machinery (argument defaults, the
redispatch through its autograd wrapper, once forward and once backward) cost about 0.8 ms of host
time per scan forward+backward on a CPU, more than the whole scan takes on a GPU at small shapes.
There the same bodies run through a ``torch.autograd.Function`` built from the op's own
``setup_context`` and backward.
"""

from __future__ import annotations

import functools
import inspect
from typing import Callable

import torch
from torch.utils import _python_dispatch


def custom_op_needed() -> bool:
    """Whether an op must go through the dispatcher: while torch.compile or torch.export traces, or
    under a torch-dispatch mode (FlopCounterMode, FakeTensorMode)."""
    return torch.compiler.is_compiling() or _python_dispatch.is_in_torch_dispatch_mode()


def eager_function(name: str, forward: Callable, setup_context: Callable, backward: Callable
                   ) -> type[torch.autograd.Function]:
    """A ``torch.autograd.Function`` that runs a custom op's body ``forward`` and differentiates it with
    the op's ``setup_context(ctx, inputs, output)`` and ``backward(ctx, *grads)``."""

    def run(ctx, *inputs):
        output = forward(*inputs)
        setup_context(ctx, inputs, output)
        return output

    return type(name, (torch.autograd.Function,), {"forward": staticmethod(run), "backward": staticmethod(backward),
                                                   "__doc__": f"Eager path of the {name} custom op."})


def distinct_outputs(body: Callable) -> Callable:
    """``body`` returning a list of tensors, as a custom op's implementation: a tensor sharing storage with
    an earlier one (views of one buffer that a reduction wrote at once, such as dB and dC) is copied,
    since a custom op's outputs may not alias each other. The eager path calls ``body`` itself and keeps
    the views."""

    @functools.wraps(body)
    def run(*args, **kwargs):
        seen, result = set(), []
        for t in body(*args, **kwargs):
            storage = t.untyped_storage().data_ptr() if t.numel() else None
            result.append(t.clone() if storage in seen else t)
            if storage is not None:
                seen.add(storage)
        return result

    # the schema is inferred from the signature: give it body's, its annotations evaluated in body's module
    run.__signature__ = inspect.signature(body, eval_str=True)
    return run
