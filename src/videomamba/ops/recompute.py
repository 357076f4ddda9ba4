"""Activations recomputed in the backward pass instead of stored: mamba_ssm's checkpoint levels, for any op.

Inside a ``Recompute`` scope, ``recompute.run(fn, *inputs)`` calls ``fn`` as usual (the autograd graph is the
same) and remembers how its outputs were made. When a later op saves one of those outputs for its backward
(``ctx.save_for_backward``, a matmul's input, a view of either), the scope's saved-tensor hook keeps the
recipe instead of the tensor; the backward reruns ``fn`` under ``no_grad`` and the autocast state of the
forward, once per recipe, and hands each saved view back with its shape, strides and offset. What a recipe
holds (its inputs) is kept alive: choose as recipes ops whose inputs are saved anyway and whose outputs are
large and cheap to make again (a conv, a small projection, a split GEMM). An input made by another recipe is
held as that recipe, so chains cost nothing to keep.

Ops whose results are deterministic for the same inputs give bit-identical gradients (tested).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Callable

import torch


class _Recipe:
    """How to make a tuple of tensors again: ``fn(*inputs)`` under the forward's autocast state."""

    __slots__ = ("fn", "inputs", "autocast", "_value")

    def __init__(self, fn: Callable, inputs: tuple, autocast: tuple[str, torch.dtype] | None):
        self.fn, self.inputs, self.autocast, self._value = fn, inputs, autocast, None

    def value(self) -> tuple[torch.Tensor, ...]:
        if self._value is None:
            inputs = tuple(i.value_of() if isinstance(i, _Output) else i for i in self.inputs)
            amp = torch.autocast(self.autocast[0], dtype=self.autocast[1]) if self.autocast else nullcontext()
            with torch.no_grad(), amp:
                self._value = tuple(_tensors(self.fn(*inputs)))
        return self._value


class _Output:
    """One output of a recipe, standing in for a tensor: as a saved activation, or as another recipe's input."""

    __slots__ = ("recipe", "index", "size", "stride", "offset", "nbytes")

    def __init__(self, recipe: _Recipe, index: int, tensor: torch.Tensor):
        self.recipe, self.index = recipe, index
        self.size, self.stride, self.offset = tensor.shape, tensor.stride(), tensor.storage_offset()
        self.nbytes = tensor.untyped_storage().nbytes()

    def value_of(self) -> torch.Tensor:
        made = self.recipe.value()[self.index]
        storage = made.untyped_storage()
        if storage.nbytes() != self.nbytes:
            raise RuntimeError(f"recomputed activation has {storage.nbytes()} bytes of storage, the forward's had "
                               f"{self.nbytes}: the recipe {getattr(self.recipe.fn, '__name__', self.recipe.fn)} "
                               "does not allocate its outputs the same way twice")
        return made.new_empty(0).set_(storage, self.offset, self.size, self.stride)


def _tensors(out: Any) -> list[torch.Tensor]:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _storage_key(t: torch.Tensor) -> tuple:
    storage = t.untyped_storage()
    return t.device, storage.data_ptr(), storage.nbytes()


class Recompute:
    """A scope in which the outputs of ``run`` are not stored for the backward but recomputed there.

    ``enabled=False`` makes ``run`` a plain call and the scope a no-op, so a module writes its forward once.
    The scope must close while the outputs of ``run`` are still referenced (a module's locals), so that no
    other tensor can take over their memory while it is open. ``dropped_bytes`` counts the storage that was
    not saved (each storage once).
    """

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.dropped_bytes = 0
        self._outputs: dict[tuple, _Output] = {}
        self._dropped: set[tuple] = set()
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, _unpack) if enabled else nullcontext()

    def __enter__(self) -> "Recompute":
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)
        self._outputs.clear()  # the recipes live on in the graph's saved slots only

    def run(self, fn: Callable, *inputs: Any) -> Any:
        """``fn(*inputs)``, whose tensor outputs are recomputed in the backward where an op saved them.
        ``fn`` must be deterministic, allocate its outputs the same way each time, and not write to its inputs."""
        out = fn(*inputs)
        self.made_by(out, fn, *inputs)
        return out

    def made_by(self, out: Any, fn: Callable, *inputs: Any) -> None:
        """Declare that ``fn(*inputs)`` makes ``out`` (a tensor or a tuple of them, as ``fn`` returns) again,
        for an ``out`` that some other op made, with what ``run`` asks of ``fn``."""
        if not self.enabled:
            return
        device = next((t.device for t in _tensors(out) if isinstance(t, torch.Tensor)), None)
        autocast = None
        if device is not None and torch.is_autocast_enabled(device.type):
            autocast = (device.type, torch.get_autocast_dtype(device.type))
        recipe = _Recipe(fn, tuple(self._held(i) for i in inputs), autocast)
        for index, tensor in enumerate(_tensors(out)):
            if isinstance(tensor, torch.Tensor) and tensor.untyped_storage().nbytes():
                self._outputs.setdefault(_storage_key(tensor), _Output(recipe, index, tensor))

    def _held(self, value: Any) -> Any:
        """What a recipe keeps of an input: the recipe that made it (with the input's view), else the input."""
        output = self._outputs.get(_storage_key(value)) if isinstance(value, torch.Tensor) else None
        return value if output is None else _Output(output.recipe, output.index, value)

    def _pack(self, tensor: torch.Tensor) -> Any:
        key = _storage_key(tensor)
        output = self._outputs.get(key)
        if output is None:
            return tensor
        if key not in self._dropped:
            self._dropped.add(key)
            self.dropped_bytes += output.nbytes
        return _Output(output.recipe, output.index, tensor)


def _unpack(packed: Any) -> torch.Tensor:
    return packed.value_of() if isinstance(packed, _Output) else packed
