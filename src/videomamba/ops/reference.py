"""The plain selective scan: a loop over time, differentiated by autograd.

This is the definition every fast path is tested against. It is slow (one small kernel per time
step, and autograd records every one of them), but it is short enough to check by eye against
the Mamba paper's equations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def selective_scan_reference(
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
):
    """Selective scan by a sequential loop over L (mamba_ssm's ``selective_scan_ref`` semantics).

    Shapes: u, delta, z (b, d, L); A (d, n); B, C (b, n, L); D, delta_bias (d,).
    Computes in float32 (float64 when the inputs are float64) and returns the output in u's dtype,
    plus the last state (b, d, n) when ``return_last_state``.
    """
    dtype_in = u.dtype
    compute = torch.float64 if u.dtype == torch.float64 else torch.float32
    u, delta, A, B, C = (t.to(compute) for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.to(compute)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    batch, d_inner, length = u.shape
    state = u.new_zeros(batch, d_inner, A.shape[1])
    decay = torch.exp(delta.unsqueeze(-1) * A[:, None, :])  # (b, d, L, n)
    drive = (delta * u).unsqueeze(-1) * B.transpose(1, 2).unsqueeze(1)  # (b, d, L, n)
    outputs = []
    for t in range(length):
        state = decay[:, :, t] * state + drive[:, :, t]
        outputs.append(torch.einsum("bdn,bn->bd", state, C[:, :, t]))
    y = torch.stack(outputs, dim=-1)
    if D is not None:
        y = y + u * D.to(compute)[:, None]
    if z is not None:
        y = y * F.silu(z.to(compute))
    y = y.to(dtype_in)
    return (y, state) if return_last_state else y
