"""The mixer's depthwise conv over the sequence, followed by SiLU: silu(conv(x) + bias).

Causal along the order in which the scan that follows reads the positions (``ops.ScanOrder``):
forward, reversed (anti-causal with the kernel flipped: the window ahead), or per frame for the
spatial and temporal reversals, each result written at its own position. x is (B, d, L).

On CUDA with channels-last x ((B, L, d) in memory, what the mixer produces there) Triton kernels do
it in one pass each way, conv and SiLU fused, reading and writing (B, L, d) rows: cuDNN's depthwise
kernels took 1.2-1.4 ms per call at VideoMamba-S shapes (batch 8, 64 frames) for a tensor that one
pass moves in a tenth of that. Elsewhere it is conv1d (or, for channels-last x, an NHWC conv2d) and
SiLU in PyTorch, which is also the reference the kernels are tested against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import register_flop_formula

from .eager import custom_op_needed, eager_function
from .token_order import FORWARD, REVERSE, ScanOrder, gather_steps
from .triton.common import available, is_channels_last
from .triton.conv import conv_backward, conv_forward

def _conv_silu_body(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, mode: int, frame_tokens: int,
                    prefix: int) -> torch.Tensor:
    return conv_forward(x, weight, bias, mode, frame_tokens, prefix, False)[0]


_conv_silu_op = torch.library.custom_op("videomamba::conv_silu", _conv_silu_body, mutates_args=())


@_conv_silu_op.register_fake
def _conv_silu_fake(x, weight, bias, mode, frame_tokens, prefix):
    batch, channels, length = x.shape
    return x.new_empty(batch, length, channels).transpose(1, 2)


def _conv_silu_backward_body(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                             mode: int, frame_tokens: int, prefix: int) -> list[torch.Tensor]:
    return conv_backward([grad], x, weight, bias, mode, frame_tokens, prefix)


_conv_silu_backward_op = torch.library.custom_op("videomamba::conv_silu_backward", _conv_silu_backward_body,
                                                 mutates_args=())


@_conv_silu_backward_op.register_fake
def _conv_silu_backward_fake(grad, x, weight, bias, mode, frame_tokens, prefix):
    batch, channels, length = x.shape
    return [x.new_empty(batch, length, channels).transpose(1, 2), torch.empty_like(weight), torch.empty_like(bias)]


def _setup_context(ctx, inputs, output):
    x, weight, bias, mode, frame_tokens, prefix = inputs
    ctx.save_for_backward(x, weight, bias)
    ctx.order = (mode, frame_tokens, prefix)


def _backward(ctx, grad):
    x, weight, bias = ctx.saved_tensors
    run = _conv_silu_backward_op if custom_op_needed() else _conv_silu_backward_body
    dx, dweight, dbias = run(grad, x, weight, bias, *ctx.order)
    return dx, dweight, dbias, None, None, None


_conv_silu_op.register_autograd(_backward, setup_context=_setup_context)
_EagerConvSilu = eager_function("conv_silu", _conv_silu_body, _setup_context, _backward)


@register_flop_formula(torch.ops.videomamba.conv_silu)
def _conv_flops(x_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    """A depthwise conv: K multiply-accumulates per output element (2 FLOPs each)."""
    batch, channels, length = x_shape
    return 2 * batch * channels * length * weight_shape[-1]


@register_flop_formula(torch.ops.videomamba.conv_silu_backward)
def _conv_backward_flops(grad_shape, x_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    """Input and weight gradients: twice the forward."""
    batch, channels, length = x_shape
    return 2 * 2 * batch * channels * length * weight_shape[-1]


def _conv_silu_pair_body(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, mode: int, frame_tokens: int,
                         prefix: int) -> tuple[torch.Tensor, torch.Tensor]:
    first, second = conv_forward(x, weight, bias, mode, frame_tokens, prefix, True)
    return first, second


_conv_silu_pair_op = torch.library.custom_op("videomamba::conv_silu_pair", _conv_silu_pair_body, mutates_args=())


@_conv_silu_pair_op.register_fake
def _conv_silu_pair_fake(x, weight, bias, mode, frame_tokens, prefix):
    return _conv_silu_fake(x, weight, bias, mode, frame_tokens, prefix), _conv_silu_fake(x, weight, bias, mode,
                                                                                        frame_tokens, prefix)


def _conv_silu_pair_backward_body(grad: torch.Tensor, grad_bwd: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                                  bias: torch.Tensor, mode: int, frame_tokens: int, prefix: int) -> list[torch.Tensor]:
    return conv_backward([grad, grad_bwd], x, weight, bias, mode, frame_tokens, prefix)


_conv_silu_pair_backward_op = torch.library.custom_op("videomamba::conv_silu_pair_backward",
                                                      _conv_silu_pair_backward_body, mutates_args=())


@_conv_silu_pair_backward_op.register_fake
def _conv_silu_pair_backward_fake(grad, grad_bwd, x, weight, bias, mode, frame_tokens, prefix):
    return _conv_silu_backward_fake(grad, x, weight, bias, mode, frame_tokens, prefix)


def _pair_backward(ctx, grad, grad_bwd):
    x, weight, bias = ctx.saved_tensors
    grads = [g if g is not None else torch.zeros_like(x) for g in (grad, grad_bwd)]
    run = _conv_silu_pair_backward_op if custom_op_needed() else _conv_silu_pair_backward_body
    dx, dweight, dbias = run(*grads, x, weight, bias, *ctx.order)
    return dx, dweight, dbias, None, None, None


_conv_silu_pair_op.register_autograd(_pair_backward, setup_context=_setup_context)
_EagerConvSiluPair = eager_function("conv_silu_pair", _conv_silu_pair_body, _setup_context, _pair_backward)


@register_flop_formula(torch.ops.videomamba.conv_silu_pair)
def _conv_pair_flops(x_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    """Two directions' convs (``_conv_flops``)."""
    return 2 * _conv_flops(x_shape, weight_shape)


@register_flop_formula(torch.ops.videomamba.conv_silu_pair_backward)
def _conv_pair_backward_flops(grad_shape, grad_bwd_shape, x_shape, weight_shape, *args, out_shape=None,
                              **kwargs) -> int:
    """Two directions' input and weight gradients."""
    return 2 * _conv_backward_flops(grad_shape, x_shape, weight_shape)


def _causal_conv_silu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, reverse: bool) -> torch.Tensor:
    """PyTorch: causal conv (anti-causal with the kernel flipped when ``reverse``) + SiLU."""
    length, padding = x.shape[-1], weight.shape[-1] - 1
    weight = weight.flip(-1) if reverse else weight
    if is_channels_last(x) and x.stride(2) == x.shape[1]:  # dense channels-last: an NHWC conv2d keeps it so
        image = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        out = F.conv2d(image, weight.unsqueeze(2), bias, padding=(0, padding), groups=x.shape[1]).squeeze(2)
    else:
        out = F.conv1d(x, weight, bias, padding=padding, groups=x.shape[1])
    return F.silu(out[..., out.shape[-1] - length:] if reverse else out[..., :length])


def sequence_conv_silu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, reverse: bool = False,
                       use_triton: bool | None = None, order: ScanOrder | None = None) -> torch.Tensor:
    """silu(depthwise conv of x (B, d, L) along L + bias), weight (d, 1, K) as nn.Conv1d's; causal
    along the order in which the scan reads the positions (``order``, an ``ops.ScanOrder``;
    ``reverse=True`` is the reversed order: anti-causal with the kernel flipped). Each result is
    written at its own position, so it keeps x's order and memory order.

    ``use_triton``: None runs the Triton kernels for channels-last CUDA tensors, PyTorch otherwise;
    True forces them (on the CPU under TRITON_INTERPRET=1, as the tests do)."""
    if reverse and order is not None and order != REVERSE:
        raise ValueError(f"sequence_conv_silu: reverse=True and order={order} disagree")
    order = REVERSE if reverse else (order or FORWARD)
    if use_triton is None:
        use_triton = available() and x.is_cuda and is_channels_last(x) and x.dtype != torch.float64
    if use_triton:
        if not is_channels_last(x):
            x = x.transpose(1, 2).contiguous().transpose(1, 2)
        run = _conv_silu_op if custom_op_needed() else _EagerConvSilu.apply
        return run(x, weight.contiguous(), bias.contiguous(), order.code, order.frame_tokens, order.prefix)
    if order.mode in ("forward", "reverse"):
        return _causal_conv_silu(x, weight, bias, order.mode == "reverse")
    positions = order.positions(x.shape[-1], x.device)  # per-frame orders: conv on a reordered copy
    return gather_steps(_causal_conv_silu(gather_steps(x, positions), weight, bias, False), torch.argsort(positions))


def sequence_conv_silu_pair(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, order: ScanOrder = REVERSE,
                            use_triton: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Both directions' conv + SiLU of a bidirectional mixer, on the same x (B, d, L):
    ``(sequence_conv_silu(x, weight[0], bias[0]), sequence_conv_silu(x, weight[1], bias[1], order=order))``,
    weight (2, d, 1, K) and bias (2, d) stacking the two directions' nn.Conv1d parameters.

    With the Triton kernels (``use_triton`` as ``sequence_conv_silu``) each pass is one launch for both
    directions, and the input gradient adds the two directions' terms in the kernel (one dx written,
    no sum of two afterwards)."""
    if weight.dim() != 4 or weight.shape[0] != 2 or bias.shape != (2, weight.shape[1]):
        raise ValueError(f"sequence_conv_silu_pair: weight must be (2, d, 1, K) and bias (2, d), got "
                         f"{tuple(weight.shape)} and {tuple(bias.shape)}")
    if use_triton is None:
        use_triton = available() and x.is_cuda and is_channels_last(x) and x.dtype != torch.float64
    if not use_triton:
        return (sequence_conv_silu(x, weight[0], bias[0], use_triton=False),
                sequence_conv_silu(x, weight[1], bias[1], use_triton=False, order=order))
    if not is_channels_last(x):
        x = x.transpose(1, 2).contiguous().transpose(1, 2)
    run = _conv_silu_pair_op if custom_op_needed() else _EagerConvSiluPair.apply
    return run(x, weight.contiguous(), bias.contiguous(), order.code, order.frame_tokens, order.prefix)
