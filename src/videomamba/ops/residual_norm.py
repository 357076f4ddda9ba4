"""A pre-norm block's residual add and the RMSNorm after it: (residual + branch, RMSNorm(residual + branch)).

The residual stream stays fp32 while the mixer computes in bf16 under autocast. In PyTorch that takes a
cast of the branch, the add, the norm in fp32, a cast of its output and, backwards, the same again plus a
separate pass for the weight's gradient: about eight passes over (B, L, d) rows. On CUDA one Triton kernel
does the forward (reads the residual and the branch, writes the fp32 sum and the normed rows in the
mixer's dtype) and one the backward (``ops.triton.norm``). Elsewhere, and under ``export_mode``, it is
``F.rms_norm`` on the sum, which is also the reference the kernels are tested against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import selective_scan as _scan
from .eager import custom_op_needed, eager_function
from .triton.common import available
from .triton.norm import add_rms_norm_backward, add_rms_norm_forward


def _add_norm_body(residual: torch.Tensor, branch: torch.Tensor, weight: torch.Tensor, eps: float,
                   out_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    return add_rms_norm_forward(residual, branch, weight, eps, out_dtype)


def _norm_body(residual: torch.Tensor, weight: torch.Tensor, eps: float, out_dtype: torch.dtype) -> torch.Tensor:
    return add_rms_norm_forward(residual, None, weight, eps, out_dtype)[1]


_add_norm_op = torch.library.custom_op("videomamba::add_rms_norm", _add_norm_body, mutates_args=())
_norm_op = torch.library.custom_op("videomamba::rms_norm", _norm_body, mutates_args=())


@_add_norm_op.register_fake
def _add_norm_fake(residual, branch, weight, eps, out_dtype):
    return torch.empty_like(residual, dtype=torch.float32), torch.empty_like(residual, dtype=out_dtype)


@_norm_op.register_fake
def _norm_fake(residual, weight, eps, out_dtype):
    return torch.empty_like(residual, dtype=out_dtype)


def _add_norm_backward_body(dnormed: torch.Tensor, dtotal: torch.Tensor | None, total: torch.Tensor,
                            weight: torch.Tensor, eps: float, branch_dtype: torch.dtype) -> list[torch.Tensor]:
    dresidual, dbranch, dweight = add_rms_norm_backward(dnormed, dtotal, total, weight, eps, branch_dtype)
    return [dresidual, dbranch, dweight]


def _norm_backward_body(dnormed: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                        eps: float) -> list[torch.Tensor]:
    dresidual, _, dweight = add_rms_norm_backward(dnormed, None, residual, weight, eps, None)
    return [dresidual, dweight]


_add_norm_backward_op = torch.library.custom_op("videomamba::add_rms_norm_backward", _add_norm_backward_body,
                                                mutates_args=())
_norm_backward_op = torch.library.custom_op("videomamba::rms_norm_backward", _norm_backward_body, mutates_args=())


@_add_norm_backward_op.register_fake
def _add_norm_backward_fake(dnormed, dtotal, total, weight, eps, branch_dtype):
    return [torch.empty_like(total), torch.empty_like(total, dtype=branch_dtype), torch.empty_like(weight)]


@_norm_backward_op.register_fake
def _norm_backward_fake(dnormed, residual, weight, eps):
    return [torch.empty_like(residual, dtype=torch.float32), torch.empty_like(weight)]


def _add_norm_setup(ctx, inputs, output):
    residual, branch, weight, eps, _ = inputs
    ctx.save_for_backward(output[0], weight)
    ctx.eps, ctx.branch_dtype = eps, branch.dtype
    # an unused sum (the final norm's) hands its gradient over as None, not as a (B, L, d) tensor of zeros
    ctx.set_materialize_grads(False)


def _add_norm_backward(ctx, dtotal, dnormed):
    total, weight = ctx.saved_tensors
    if dnormed is None:
        dnormed = torch.zeros_like(total)
    run = _add_norm_backward_op if custom_op_needed() else _add_norm_backward_body
    dresidual, dbranch, dweight = run(dnormed.contiguous(), None if dtotal is None else dtotal.contiguous(), total,
                                      weight, ctx.eps, ctx.branch_dtype)
    return dresidual, dbranch, dweight, None, None


def _norm_setup(ctx, inputs, output):
    residual, weight, eps, _ = inputs
    ctx.save_for_backward(residual, weight)
    ctx.eps = eps


def _norm_backward(ctx, dnormed):
    residual, weight = ctx.saved_tensors
    run = _norm_backward_op if custom_op_needed() else _norm_backward_body
    dresidual, dweight = run(dnormed.contiguous(), residual, weight, ctx.eps)
    return dresidual, dweight, None, None


_add_norm_op.register_autograd(_add_norm_backward, setup_context=_add_norm_setup)
_norm_op.register_autograd(_norm_backward, setup_context=_norm_setup)
_EagerAddNorm = eager_function("add_rms_norm", _add_norm_body, _add_norm_setup, _add_norm_backward)
_EagerNorm = eager_function("rms_norm", _norm_body, _norm_setup, _norm_backward)


def fused_available(residual: torch.Tensor) -> bool:
    """Whether ``add_rms_norm`` runs the Triton kernels for this residual by default: fp32 on CUDA."""
    return available() and residual.is_cuda and residual.dtype == torch.float32 and not _scan._EXPORTING


def add_rms_norm(residual: torch.Tensor, branch: torch.Tensor | None, weight: torch.Tensor, eps: float,
                 out_dtype: torch.dtype | None = None, use_triton: bool | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(total, normed) with total = residual + branch (``residual`` itself when ``branch`` is None) and
    normed = ``F.rms_norm(total, (D,), weight, eps)`` in ``out_dtype`` (default: total's dtype).

    residual (..., D) is the fp32 (or fp64) residual stream, branch the block output to add (any float
    dtype, residual's shape), weight (D,). ``use_triton``: None runs the fused kernels where
    ``fused_available``; True forces them (on the CPU under TRITON_INTERPRET=1, as the tests do)."""
    if branch is not None and branch.shape != residual.shape:
        raise ValueError(f"add_rms_norm: branch {tuple(branch.shape)} and residual {tuple(residual.shape)} differ")
    if weight.shape != residual.shape[-1:]:
        raise ValueError(f"add_rms_norm: weight {tuple(weight.shape)} does not match width {residual.shape[-1]}")
    out_dtype = out_dtype or torch.promote_types(residual.dtype, torch.float32)
    if use_triton is None:
        use_triton = fused_available(residual)
    if not use_triton:
        total = residual if branch is None else residual + branch
        return total, F.rms_norm(total, (total.shape[-1],), weight, eps).to(out_dtype)
    residual = residual.contiguous()
    if branch is None:
        run = _norm_op if custom_op_needed() else _EagerNorm.apply
        return residual, run(residual, weight.contiguous(), eps, out_dtype)
    run = _add_norm_op if custom_op_needed() else _EagerAddNorm.apply
    return run(residual, branch.contiguous(), weight.contiguous(), eps, out_dtype)
