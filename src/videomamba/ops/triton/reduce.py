"""Sums of partial results (the scan backward's dB/dC, dA, dD and dbias per block of channels or
segment): one kernel over contiguous (groups, parts, n) buffers."""

from __future__ import annotations

import torch

from .common import cdiv, next_power_of_2
from .settings import SCAN

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - triton ships with CUDA builds of torch
    triton = None

if triton is not None:

    @triton.jit
    def _sum_parts_kernel(src_ptr, dst_ptr, n_parts, part_stride, group_stride, n_inner, rows,
                          BLOCK: tl.constexpr, PARTS: tl.constexpr):
        """dst[o, i] = Σ_p src[o · group_stride + p · part_stride + i] for i < n_inner, written transposed
        where ``rows`` > 1 (i = r · n_inner / rows + c lands at c · rows + r). One program per (group o,
        BLOCK elements); PARTS parts are loaded at a time, so that their loads are in flight together."""
        pid_o, pid_i = tl.program_id(0), tl.program_id(1)
        i = pid_i * BLOCK + tl.arange(0, BLOCK)
        mask = i < n_inner
        src = src_ptr + pid_o * group_stride + i[None, :]
        acc = tl.zeros((BLOCK,), tl.float32)
        for p0 in range(0, n_parts, PARTS):
            p = p0 + tl.arange(0, PARTS)[:, None]
            acc += tl.sum(tl.load(src + p * part_stride, mask=mask[None, :] & (p < n_parts), other=0.0), axis=0)
        cols = n_inner // rows
        tl.store(dst_ptr + pid_o * n_inner + (i % cols) * rows + i // cols, acc, mask=mask)


def sum_parts(parts: torch.Tensor, rows: int = 1) -> torch.Tensor:
    """(groups, n) fp32 sums of contiguous (groups, parts, n) partial sums (``_sum_parts_kernel``). The
    backward's dB/dC, dA and dD/dbias sums, faster than torch's sums and dA's transposed copy on an H100
    (docs/benchmarks.md). ``rows`` > 1:
    each group's n = rows x cols sums stored transposed, (cols, rows)."""
    groups, n_parts, n_inner = parts.shape
    out = torch.empty(groups, n_inner, device=parts.device, dtype=torch.float32)
    # small sums (dA, dD, dbias: tens of parts of a few thousand elements) take narrower programs, more of
    # them, each with all its parts' loads in flight at once: they are latency-bound
    small = groups * n_inner < 64 * SCAN.sum_block
    block, together = (128, min(32, next_power_of_2(n_parts))) if small else (SCAN.sum_block, SCAN.sum_parts)
    _sum_parts_kernel[(groups, cdiv(n_inner, block))](
        parts, out, n_parts, parts.stride(1), parts.stride(0), n_inner, rows, BLOCK=block, PARTS=together,
        num_warps=SCAN.sum_warps)
    return out
