"""The SiLU(z) gate of a bidirectional mixer's two scan directions, applied once to their sum (it is
linear in the scan's output): out = (y_0 + y_1) · silu(z), and its backward."""

from __future__ import annotations

import torch

from .common import cdiv, empty_like_layout, strides
from .settings import SCAN

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - triton ships with CUDA builds of torch
    triton = None

if triton is not None:

    @triton.jit
    def _pair_gate_fwd_kernel(y_ptr, z_ptr, sum_ptr, out_ptr, batch, Dm, L, sy_b, sy_d, sy_l, sz_b, sz_d, sz_l,
                              so_b, so_d, so_l, BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr, SUMMED: tl.constexpr,
                              STORE_SUM: tl.constexpr):
        """A paired scan's gate, once for both directions: out = (y_0 + y_1) · silu(z) from the directions'
        ungated outputs y (directions x b, d, L), and y_0 + y_1 (the backward's dz needs it). With SUMMED, y
        is that stored sum (b, d, L) and only out is written: the same out, bit for bit, since out is made
        from the sum as stored (rounded to its dtype). STORE_SUM False: the sum is rounded the same way but
        not written (no backward will read it). One program per (batch, block of steps, block of channels)."""
        pid_b, pid_l, pid_d = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        steps = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)[:, None]
        d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)[None, :]
        mask = (steps < L) & (d < Dm)
        at_y = pid_b * sy_b + d * sy_d + steps * sy_l
        at = pid_b * so_b + d * so_d + steps * so_l
        if SUMMED:
            y = tl.load(y_ptr + at_y, mask=mask, other=0.0).to(tl.float32)
        else:
            y = (tl.load(y_ptr + at_y, mask=mask, other=0.0).to(tl.float32)
                 + tl.load(y_ptr + batch * sy_b + at_y, mask=mask, other=0.0).to(tl.float32))
            stored = y.to(sum_ptr.dtype.element_ty)
            if STORE_SUM:
                tl.store(sum_ptr + at, stored, mask=mask)
            y = stored.to(tl.float32)
        z = tl.load(z_ptr + pid_b * sz_b + d * sz_d + steps * sz_l, mask=mask, other=0.0).to(tl.float32)
        tl.store(out_ptr + at, (y * z * tl.sigmoid(z)).to(out_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _pair_gate_bwd_kernel(g_ptr, sum_ptr, z_ptr, dy_ptr, dz_ptr, Dm, L, sg_b, sg_d, sg_l, ss_b, ss_d, ss_l,
                              sz_b, sz_d, sz_l, so_b, so_d, so_l, BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr):
        """The gate's backward, once for both directions: the gradient at the ungated outputs, dy = g ·
        silu(z) (what the scan kernels then read as their output gradient, without z), and dz = g · (y_0 +
        y_1) · silu'(z)."""
        pid_b, pid_l, pid_d = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        steps = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)[:, None]
        d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)[None, :]
        mask = (steps < L) & (d < Dm)
        g = tl.load(g_ptr + pid_b * sg_b + d * sg_d + steps * sg_l, mask=mask, other=0.0).to(tl.float32)
        y = tl.load(sum_ptr + pid_b * ss_b + d * ss_d + steps * ss_l, mask=mask, other=0.0).to(tl.float32)
        z = tl.load(z_ptr + pid_b * sz_b + d * sz_d + steps * sz_l, mask=mask, other=0.0).to(tl.float32)
        sg = tl.sigmoid(z)
        at = pid_b * so_b + d * so_d + steps * so_l
        tl.store(dy_ptr + at, (g * z * sg).to(dy_ptr.dtype.element_ty), mask=mask)
        tl.store(dz_ptr + at, (g * y * sg * (1.0 + z * (1.0 - sg))).to(dz_ptr.dtype.element_ty), mask=mask)


def _gate_grid(like: torch.Tensor) -> tuple[int, int, int]:
    batch, channels, length = like.shape
    return batch, cdiv(length, SCAN.gate_block_l), cdiv(channels, SCAN.gate_block_d)


def gate_forward(y: torch.Tensor, z: torch.Tensor, keep_sum: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(out = (y_0 + y_1) · silu(z), y_0 + y_1) from the directions' ungated outputs y (2 x b, d, L), both in
    y's dtype and z's (b, d, L) shape, in y's memory order. ``keep_sum`` False: the sum is not written (None)."""
    batch = z.shape[0]
    out = empty_like_layout(y[:batch], y.dtype)
    total = empty_like_layout(y[:batch], y.dtype) if keep_sum else None
    _pair_gate_fwd_kernel[_gate_grid(z)](y, z, total if keep_sum else out, out, batch, z.shape[1], z.shape[2],
                                         *strides(y, z, out), BLOCK_L=SCAN.gate_block_l, BLOCK_D=SCAN.gate_block_d,
                                         num_warps=SCAN.gate_warps, SUMMED=False, STORE_SUM=keep_sum)
    return out, total


def gate_output(total: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``gate_forward``'s out again from the sum it stored: total · silu(z), bit for bit (a recompute)."""
    out = empty_like_layout(total, total.dtype)
    _pair_gate_fwd_kernel[_gate_grid(z)](total, z, out, out, z.shape[0], z.shape[1], z.shape[2],
                                         *strides(total, z, out), BLOCK_L=SCAN.gate_block_l,
                                         BLOCK_D=SCAN.gate_block_d, num_warps=SCAN.gate_warps, SUMMED=True,
                                         STORE_SUM=False)
    return out


def gate_backward(dout: torch.Tensor, total: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(dy = dout · silu(z) in dout's dtype, dz = dout · (y_0 + y_1) · silu'(z) in z's dtype), in the memory
    order of ``total`` (the directions' summed ungated output)."""
    dy, dz = empty_like_layout(total, dout.dtype), empty_like_layout(total, z.dtype)  # the same strides
    _pair_gate_bwd_kernel[_gate_grid(z)](dout, total, z, dy, dz, z.shape[1], z.shape[2], *strides(dout, total, z, dy),
                                         BLOCK_L=SCAN.gate_block_l, BLOCK_D=SCAN.gate_block_d, num_warps=SCAN.gate_warps)
    return dy, dz
