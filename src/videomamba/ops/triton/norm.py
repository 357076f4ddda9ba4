"""The pre-norm blocks' residual add fused with the RMSNorm that follows it: one pass each way.

Forward: total = residual + branch (fp32), normed = total · rsqrt(mean(total²) + eps) · weight, stored in
the dtype the mixer computes in (bf16 under autocast). Backward: the gradient at total (the normed
output's, through the norm, plus the one total receives from the next block) stored for both inputs,
fp32 for the residual and in the branch's dtype for the branch, and the weight's gradient as partial
sums per program. Rows are the (batch x tokens) positions, each ``D`` wide and contiguous.
"""

from __future__ import annotations

import torch

from .common import cdiv, next_power_of_2
from .settings import NORM

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - triton ships with CUDA builds of torch
    triton = None

if triton is not None:

    @triton.jit
    def _add_rms_norm_fwd_kernel(residual_ptr, branch_ptr, weight_ptr, total_ptr, normed_ptr, rows, D, eps,
                                 BLOCK_ROWS: tl.constexpr, BLOCK_D: tl.constexpr, HAS_BRANCH: tl.constexpr):
        """total = residual + branch (stored with HAS_BRANCH; without, total is the residual and is not
        written again), normed = RMSNorm(total) · weight. One program per BLOCK_ROWS rows."""
        row = (tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS))[:, None].to(tl.int64)
        col = tl.arange(0, BLOCK_D)[None, :]
        mask = (row < rows) & (col < D)
        at = row * D + col
        total = tl.load(residual_ptr + at, mask=mask, other=0.0).to(tl.float32)
        if HAS_BRANCH:
            total += tl.load(branch_ptr + at, mask=mask, other=0.0).to(tl.float32)
            tl.store(total_ptr + at, total, mask=mask)
        rstd = 1.0 / tl.sqrt(tl.sum(total * total, axis=1) / D + eps)
        weight = tl.load(weight_ptr + col, mask=col < D, other=0.0).to(tl.float32)
        tl.store(normed_ptr + at, (total * rstd[:, None] * weight).to(normed_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _add_rms_norm_bwd_kernel(total_ptr, weight_ptr, dnormed_ptr, dtotal_ptr, dresidual_ptr, dbranch_ptr,
                                 dweight_ptr, rows, D, eps, BLOCK_ROWS: tl.constexpr, BLOCK_D: tl.constexpr,
                                 HAS_DTOTAL: tl.constexpr, HAS_BRANCH: tl.constexpr):
        """d total = rstd · (g - total · rstd² · mean(g · total)) with g = dnormed · weight, plus the gradient
        total receives downstream (HAS_DTOTAL); written fp32 for the residual and, with HAS_BRANCH, in the
        branch's dtype. Each program takes every num_programs-th block of rows and writes its share of the
        weight's gradient, Σ dnormed · total · rstd over its rows, as row ``program_id`` of dweight."""
        col = tl.arange(0, BLOCK_D)[None, :]
        weight = tl.load(weight_ptr + col, mask=col < D, other=0.0).to(tl.float32)
        dweight = tl.zeros((BLOCK_D,), tl.float32)
        for first in range(tl.program_id(0) * BLOCK_ROWS, rows, tl.num_programs(0) * BLOCK_ROWS):
            row = (first + tl.arange(0, BLOCK_ROWS))[:, None].to(tl.int64)
            mask = (row < rows) & (col < D)
            at = row * D + col
            total = tl.load(total_ptr + at, mask=mask, other=0.0).to(tl.float32)
            dnormed = tl.load(dnormed_ptr + at, mask=mask, other=0.0).to(tl.float32)
            rstd = (1.0 / tl.sqrt(tl.sum(total * total, axis=1) / D + eps))[:, None]
            g = dnormed * weight
            mean_gx = (tl.sum(g * total, axis=1) / D)[:, None]
            dtotal = rstd * (g - total * (rstd * rstd * mean_gx))
            if HAS_DTOTAL:
                dtotal += tl.load(dtotal_ptr + at, mask=mask, other=0.0).to(tl.float32)
            tl.store(dresidual_ptr + at, dtotal, mask=mask)
            if HAS_BRANCH:
                tl.store(dbranch_ptr + at, dtotal.to(dbranch_ptr.dtype.element_ty), mask=mask)
            dweight += tl.sum(dnormed * total * rstd, axis=0)
        tl.store(dweight_ptr + tl.program_id(0) * D + col, dweight[None, :], mask=col < D)


def _rows(t: torch.Tensor) -> int:
    return t.numel() // t.shape[-1]


def _block_rows(width: int) -> int:
    """Rows a program: NORM.block_elements elements in all, at least one row."""
    return max(1, NORM.block_elements // next_power_of_2(width))


def add_rms_norm_forward(residual: torch.Tensor, branch: torch.Tensor | None, weight: torch.Tensor, eps: float,
                         out_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(total, normed): total = residual + branch in fp32 (the residual itself without a branch), normed =
    RMSNorm(total) · weight in ``out_dtype``; contiguous tensors of one (..., D) shape."""
    width, rows = residual.shape[-1], _rows(residual)
    total = torch.empty_like(residual, dtype=torch.float32) if branch is not None else residual
    normed = torch.empty_like(residual, dtype=out_dtype)
    block_rows = _block_rows(width)
    _add_rms_norm_fwd_kernel[(cdiv(rows, block_rows),)](
        residual, branch if branch is not None else residual, weight, total, normed, rows, width, eps,
        BLOCK_ROWS=block_rows, BLOCK_D=next_power_of_2(width), HAS_BRANCH=branch is not None,
        num_warps=NORM.num_warps)
    return total, normed


def add_rms_norm_backward(dnormed: torch.Tensor, dtotal: torch.Tensor | None, total: torch.Tensor,
                          weight: torch.Tensor, eps: float, branch_dtype: torch.dtype | None
                          ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """(d residual fp32, d branch in ``branch_dtype`` (None without a branch), d weight) from the normed
    output's gradient and the gradient ``total`` receives downstream (None: zero); contiguous inputs."""
    width, rows = total.shape[-1], _rows(total)
    block_rows = _block_rows(width)
    programs = min(cdiv(rows, block_rows), NORM.backward_programs)
    dresidual = torch.empty_like(total, dtype=torch.float32)
    dbranch = torch.empty_like(total, dtype=branch_dtype) if branch_dtype is not None else None
    parts = torch.empty(programs, width, device=total.device, dtype=torch.float32)
    _add_rms_norm_bwd_kernel[(programs,)](
        total, weight, dnormed, dtotal if dtotal is not None else dnormed, dresidual,
        dbranch if dbranch is not None else dresidual, parts, rows, width, eps, BLOCK_ROWS=block_rows,
        BLOCK_D=next_power_of_2(width), HAS_DTOTAL=dtotal is not None, HAS_BRANCH=dbranch is not None,
        num_warps=NORM.num_warps)
    return dresidual, dbranch, parts.sum(0).to(weight.dtype)
