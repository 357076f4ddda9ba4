"""Host-side helpers every Triton launcher uses: whether Triton is there, the (b, d, L) memory orders
the kernels read and write, and output buffers in them."""

from __future__ import annotations

import torch

try:
    import triton
except ImportError:  # pragma: no cover - triton ships with CUDA builds of torch
    triton = None

from .settings import SCAN


def cdiv(a: int, b: int) -> int:
    """ceil(a / b) for host-side grid sizes: ``triton.cdiv`` is a constexpr function in recent Triton, whose
    call costs dozens of integer divisions, and a model's step sizes hundreds of grids."""
    return -(-a // b)


def next_power_of_2(n: int) -> int:
    """The smallest power of two at least ``n`` (``triton.next_power_of_2`` without its call overhead)."""
    return 1 << max(0, n - 1).bit_length()


def nvidia(device: torch.device) -> bool:
    """Whether ``device`` is an NVIDIA GPU (not ROCm): where the PTX-only paths apply."""
    return device.type == "cuda" and torch.version.hip is None


def available() -> bool:
    """Whether Triton imports (kernels then run on CUDA tensors, or anywhere under TRITON_INTERPRET=1)."""
    return triton is not None


def is_channels_last(t: torch.Tensor) -> bool:
    """Whether a (b, d, L) tensor has its channels fastest in memory ((b, L, d) rows, as a linear layer
    writes them, possibly a slice of wider rows)."""
    return t.stride(1) == 1 and t.stride(2) != 1 and t.shape[1] > 1


def poisoned(t: torch.Tensor) -> torch.Tensor:
    """``t`` filled with NaN where ``SCAN.poison_outputs`` asks for it (correctness checks), else as is."""
    return t.fill_(float("nan")) if SCAN.poison_outputs and t.is_floating_point() else t


def empty_like_layout(like: torch.Tensor, dtype: torch.dtype, batch: int | None = None) -> torch.Tensor:
    """An empty (b, d, L) tensor in ``like``'s memory order: channels last ((b, L, d) in memory, as a
    linear layer writes it) when ``like`` is, else contiguous. ``batch``: another batch size than like's
    (the directions x batch results of a paired scan)."""
    _, channels, length = like.shape
    batch = like.shape[0] if batch is None else batch
    if is_channels_last(like):
        return poisoned(torch.empty_strided((batch, channels, length), (length * channels, 1, channels),
                                            device=like.device, dtype=dtype))
    return poisoned(torch.empty(batch, channels, length, device=like.device, dtype=dtype))


def strides(*tensors: torch.Tensor) -> list[int]:
    """The strides of every tensor, flattened: how the kernels take them."""
    return [s for t in tensors for s in t.stride()]
