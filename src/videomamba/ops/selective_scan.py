"""``selective_scan``: one function, several backends chosen by device, dtype and size.

Backends:
  ``reference``  a loop over time differentiated by autograd (the definition; slow)
  ``chunked``    the two-level chunked scan in PyTorch (CPU and GPU; exact; custom backward)
  ``cpu``        the compiled C kernel (CPU; built at first use; custom backward)
Set ``backend=`` or the environment variable ``VIDEOMAMBA_SCAN_BACKEND`` to force one.
"""

from __future__ import annotations

import os
from typing import Callable

import torch

from . import cpu_kernel
from .chunked import selective_scan_chunked
from .reference import selective_scan_reference

BACKENDS: dict[str, Callable] = {
    "reference": selective_scan_reference,
    "chunked": selective_scan_chunked,
    "cpu": cpu_kernel.selective_scan_cpu,
}


def _check_shapes(u, delta, A, B, C, D, z, delta_bias) -> None:
    if u.dim() != 3:
        raise ValueError(f"selective_scan: u must be (b, d, L), got shape {tuple(u.shape)}")
    batch, d_inner, length = u.shape
    n = A.shape[-1] if A.dim() == 2 else -1
    expected = {
        "delta": (delta, (batch, d_inner, length)),
        "A": (A, (d_inner, n)),
        "B": (B, (batch, n, length)),
        "C": (C, (batch, n, length)),
        "D": (D, (d_inner,)),
        "z": (z, (batch, d_inner, length)),
        "delta_bias": (delta_bias, (d_inner,)),
    }
    for name, (tensor, shape) in expected.items():
        if tensor is not None and tuple(tensor.shape) != shape:
            raise ValueError(f"selective_scan: {name} must have shape {shape} "
                             f"(u is {tuple(u.shape)}, A is {tuple(A.shape)}), got {tuple(tensor.shape)}")


def choose_backend(u: torch.Tensor) -> str:
    """The backend ``selective_scan`` runs for this input when none is forced."""
    forced = os.environ.get("VIDEOMAMBA_SCAN_BACKEND")
    if forced:
        return forced
    if u.device.type == "cpu" and cpu_kernel.available():
        return "cpu"
    return "chunked"


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    backend: str | None = None,
):
    """Mamba-1 selective scan with mamba_ssm's ``selective_scan_fn`` semantics.

    h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t u_t;  y_t = C_t·h_t + D u_t;  out = y * silu(z),
    with Δ = softplus(delta + delta_bias) when ``delta_softplus`` (else delta + delta_bias).

    Shapes: u, delta, z (b, d, L); A (d, n); B, C (b, n, L); D, delta_bias (d,). Returns out
    (b, d, L) in u's dtype, and the last state (b, d, n) in float32 (float64 for float64 inputs)
    when ``return_last_state``. Differentiable in every input. State and accumulation are float32
    at least, whatever the input dtype.
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    name = backend or choose_backend(u)
    if name not in BACKENDS:
        raise ValueError(f"selective_scan: unknown backend {name!r}; choose from {sorted(BACKENDS)}")
    if name == "cpu" and u.device.type != "cpu":
        raise ValueError(f"selective_scan: backend 'cpu' needs CPU tensors, got {u.device}")
    return BACKENDS[name](u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias,
                          delta_softplus=delta_softplus, return_last_state=return_last_state)
