"""Selective scan in pure PyTorch, by a two-level (chunked) linear scan, for CPU and GPU.

The recurrence h_t = a_t * h_{t-1} + b_t is split into chunks of K steps. All chunks are scanned
at once from a zero state (K steps over (b, d, L/K, n) slices), then the chunk carries are
propagated (L/K steps), then each position adds its chunk's carry times the running product of
its decays. That is K + L/K Python steps instead of L, and it is exact: only products of decays
in (0, 1] appear, never their inverses, so nothing overflows (the cumulative-sum formulation
divides by decays and needs clamping). The backward is the same scan run in reverse for the
adjoint state, with the forward states recomputed instead of saved. Autograd wiring lives in
selective_scan.py (one custom op for every compiled backend).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def linear_scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """All states of h_t = a_t h_{t-1} + b_t along dim 2 of (B, D, L, N) tensors, h_{-1} = h0."""
    batch, channels, length, n = a.shape
    chunk = max(1, int(math.isqrt(length)))
    n_chunks = -(-length // chunk)
    pad = n_chunks * chunk - length
    if pad:
        a = F.pad(a, (0, 0, 0, pad), value=1.0)
        b = F.pad(b, (0, 0, 0, pad), value=0.0)
    a = a.view(batch, channels, n_chunks, chunk, n)
    b = b.view(batch, channels, n_chunks, chunk, n)
    local = torch.empty_like(b)
    decay_prod = torch.empty_like(a)
    h = torch.zeros_like(b[:, :, :, 0])
    p = torch.ones_like(a[:, :, :, 0])
    for k in range(chunk):
        h = a[:, :, :, k] * h + b[:, :, :, k]
        p = p * a[:, :, :, k]
        local[:, :, :, k] = h
        decay_prod[:, :, :, k] = p
    carry = torch.zeros_like(h[:, :, 0]) if h0 is None else h0
    carries = []
    for c in range(n_chunks):
        carries.append(carry)
        carry = decay_prod[:, :, c, -1] * carry + local[:, :, c, -1]
    states = local + decay_prod * torch.stack(carries, dim=2).unsqueeze(3)
    return states.view(batch, channels, n_chunks * chunk, n)[:, :, :length]


def _prepare(u, delta, A, B, delta_bias, delta_softplus):
    raw = delta if delta_bias is None else delta + delta_bias[:, None]
    dt = F.softplus(raw) if delta_softplus else raw
    decay = torch.exp(dt.unsqueeze(-1) * A[:, None, :])  # (b, d, L, n)
    drive = (dt * u).unsqueeze(-1) * B.transpose(1, 2).unsqueeze(1)  # (b, d, L, n)
    return raw, dt, decay, drive


def chunked_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    """(out, last state) by the chunked scan; inputs already in the compute dtype."""
    _, _, decay, drive = _prepare(u, delta, A, B, delta_bias, delta_softplus)
    states = linear_scan(decay, drive)
    y = torch.einsum("bdln,bnl->bdl", states, C)
    if D is not None:
        y = y + u * D[:, None]
    out = y * F.silu(z) if z is not None else y
    return out, states[:, :, -1].clone()


def chunked_backward(dout, dlast, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    """Gradients (du, ddelta, dA, dB, dC, dD, dz, dbias), None where an input is absent; the
    states are recomputed and the adjoint state g_t = dy_t C_t + a_{t+1} g_{t+1} is scanned from
    the end (starting from dlast)."""
    raw, dt, decay, drive = _prepare(u, delta, A, B, delta_bias, delta_softplus)
    states = linear_scan(decay, drive)
    dz = None
    if z is not None:
        y = torch.einsum("bdln,bnl->bdl", states, C)
        if D is not None:
            y = y + u * D[:, None]
        sig = torch.sigmoid(z)
        dz = dout * y * sig * (1 + z * (1 - sig))
        dy = dout * z * sig
    else:
        dy = dout
    shifted = torch.cat([decay[:, :, 1:], torch.ones_like(decay[:, :, :1])], dim=2)
    source = dy.unsqueeze(-1) * C.transpose(1, 2).unsqueeze(1)
    g = linear_scan(shifted.flip(2), source.flip(2), dlast).flip(2)
    prev = torch.cat([torch.zeros_like(states[:, :, :1]), states[:, :, :-1]], dim=2)
    g_decay_prev = g * decay * prev
    Bt = B.transpose(1, 2).unsqueeze(1)
    dC = torch.einsum("bdl,bdln->bnl", dy, states)
    dB = torch.einsum("bdln,bdl->bnl", g, dt * u)
    g_dot_b = (g * Bt).sum(-1)
    du = g_dot_b * dt
    ddt = g_dot_b * u + torch.einsum("bdln,dn->bdl", g_decay_prev, A)
    dA = torch.einsum("bdln,bdl->dn", g_decay_prev, dt)
    dD = None
    if D is not None:
        du = du + dy * D[:, None]
        dD = (dy * u).sum(dim=(0, 2))
    if delta_softplus:
        ddt = ddt * torch.sigmoid(raw)
    dbias = ddt.sum(dim=(0, 2)) if delta_bias is not None else None
    return du, ddt, dA, dB, dC, dD, dz, dbias
