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
from .triton_scan import is_channels_last

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - triton ships with CUDA builds of torch
    triton = None

BLOCK_L = 32  # steps per program (forward and input-gradient kernels)
BLOCK_D = 64  # channels per program
NUM_WARPS = 4
# the output-gradient kernel (SiLU', the dweight and dbias partial sums per tile) holds more per element:
# its own tile and warps. 16 x 64 on one warp against 32 x 64 on 4 (243 registers, 2 programs an SM): conv +
# SiLU forward+backward 0.46 against 0.63 ms at batch 8, 6273 tokens, d 768 on an H100 (docs/benchmarks.md)
GRAD_BLOCK_L = 16
GRAD_BLOCK_D = 64
GRAD_WARPS = 1

if triton is not None:
    from .triton_scan import _of_direction, _order_step, _position

    @triton.jit
    def _conv_program(batch, Dm, K: tl.constexpr, PAIRED: tl.constexpr):
        """A conv program's (direction, batch) pair, numbered by grid axis 0 direction-major as the scan's
        (``triton_scan._sequential_prologue``), and the offsets of its direction's weights and bias in the
        stacked (directions, d, K) and (directions, d)."""
        pid_e = tl.program_id(0)
        if PAIRED:
            direction = pid_e // batch
        else:
            direction = 0
        return pid_e, pid_e - direction * batch, direction, direction * Dm * K, direction * Dm

    @triton.jit
    def _tap(x_ptr, b, steps, d, j, L, S, P, Dm, sx_b, sx_l, direction, K: tl.constexpr, MODE: tl.constexpr,
             PAIRED: tl.constexpr):
        """x where tap j of the causal window of scan steps ``steps`` reads it (the position the order
        gives to step ``steps + j - (K - 1)``; 0 before the first step), channels d, fp32."""
        src = steps + (j - (K - 1))
        ok = (src >= 0) & (src < L)
        pos = _position(src, direction, L, S, P, MODE, PAIRED)
        return tl.load(x_ptr + b * sx_b + pos[:, None] * sx_l + d[None, :], mask=ok[:, None] & (d < Dm)[None, :],
                       other=0.0).to(tl.float32)

    @triton.jit
    def _conv_tile(x_ptr, w_ptr, bias_ptr, b, steps, d, L, S, P, Dm, sx_b, sx_l, direction, K: tl.constexpr,
                   MODE: tl.constexpr, PAIRED: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr):
        """conv(x) + bias at scan steps ``steps`` (causal along the steps, x read at the positions the
        order gives), channels d: (BLOCK_L, BLOCK_D) in fp32."""
        dmask = d < Dm
        acc = tl.load(bias_ptr + d, mask=dmask, other=0.0).to(tl.float32)[None, :] + tl.zeros(
            (BLOCK_L, BLOCK_D), tl.float32)
        for j in tl.static_range(K):
            w = tl.load(w_ptr + d * K + j, mask=dmask, other=0.0).to(tl.float32)
            acc += _tap(x_ptr, b, steps, d, j, L, S, P, Dm, sx_b, sx_l, direction, K, MODE, PAIRED) * w[None, :]
        return acc

    @triton.jit
    def _conv_silu_fwd_kernel(x_ptr, w_ptr, bias_ptr, out_ptr, out2_ptr, L, S, P, Dm, batch, sx_b, sx_l, so_b, so_l,
                              K: tl.constexpr, MODE: tl.constexpr, PAIRED: tl.constexpr, BLOCK_L: tl.constexpr,
                              BLOCK_D: tl.constexpr):
        """silu(conv(x) + bias), written at each step's position; PAIRED: both directions of a mixer (the
        forward one, and one in MODE) in one launch, x shared, each direction's output its own tensor."""
        _, b, direction, w_off, bias_off = _conv_program(batch, Dm, K, PAIRED)
        out_ptr = _of_direction(direction, out_ptr, out2_ptr, PAIRED)
        steps = tl.program_id(1) * BLOCK_L + tl.arange(0, BLOCK_L)
        d = tl.program_id(2) * BLOCK_D + tl.arange(0, BLOCK_D)
        y = _conv_tile(x_ptr, w_ptr + w_off, bias_ptr + bias_off, b, steps, d, L, S, P, Dm, sx_b, sx_l, direction, K,
                       MODE, PAIRED, BLOCK_L, BLOCK_D)
        pos = _position(steps, direction, L, S, P, MODE, PAIRED)
        tl.store(out_ptr + b * so_b + pos[:, None] * so_l + d[None, :], y * tl.sigmoid(y),
                 mask=(steps < L)[:, None] & (d < Dm)[None, :])

    @triton.jit
    def _conv_silu_grad_kernel(x_ptr, w_ptr, bias_ptr, g_ptr, g2_ptr, gy_ptr, dw_ptr, dbias_ptr, L, S, P, Dm, batch,
                               sx_b, sx_l, sg_b, sg_l, sg_d, K: tl.constexpr, MODE: tl.constexpr, PAIRED: tl.constexpr,
                               BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr):
        """Gradient at the conv output, gy = g · silu'(y) (y recomputed), written in step order as
        (directions x B, L, d) fp32; this tile's partial sums of dweight and dbias. g (one tensor per
        direction) may come in any strides."""
        pid_e, b, direction, w_off, bias_off = _conv_program(batch, Dm, K, PAIRED)
        g_ptr = _of_direction(direction, g_ptr, g2_ptr, PAIRED)
        lb, db = tl.program_id(1), tl.program_id(2)
        steps = lb * BLOCK_L + tl.arange(0, BLOCK_L)
        d = db * BLOCK_D + tl.arange(0, BLOCK_D)
        lmask, dmask = steps < L, d < Dm
        y = _conv_tile(x_ptr, w_ptr + w_off, bias_ptr + bias_off, b, steps, d, L, S, P, Dm, sx_b, sx_l, direction, K,
                       MODE, PAIRED, BLOCK_L, BLOCK_D)
        pos = _position(steps, direction, L, S, P, MODE, PAIRED)
        g = tl.load(g_ptr + b * sg_b + pos[:, None] * sg_l + d[None, :] * sg_d, mask=lmask[:, None] & dmask[None, :],
                    other=0.0).to(tl.float32)
        s = tl.sigmoid(y)
        gy = g * s * (1.0 + y * (1.0 - s))
        tl.store(gy_ptr + (pid_e * L + steps[:, None]) * Dm + d[None, :], gy, mask=lmask[:, None] & dmask[None, :])
        part = (pid_e * tl.num_programs(1) + lb) * Dm  # one row of partial sums per (batch, block of steps)
        tl.store(dbias_ptr + part + d, tl.sum(gy, axis=0), mask=dmask)
        for j in tl.static_range(K):
            x = _tap(x_ptr, b, steps, d, j, L, S, P, Dm, sx_b, sx_l, direction, K, MODE, PAIRED)
            tl.store(dw_ptr + (part * K) + d * K + j, tl.sum(gy * x, axis=0), mask=dmask)

    @triton.jit
    def _conv_input_grad_kernel(gy_ptr, w_ptr, dx_ptr, L, S, P, Dm, batch, sd_b, sd_l, K: tl.constexpr,
                                MODE: tl.constexpr, PAIRED: tl.constexpr, BLOCK_L: tl.constexpr,
                                BLOCK_D: tl.constexpr):
        """dx at the position of step p = sum_j w[j] gy[p + K - 1 - j]: the conv's transpose. One
        direction: a program's tile is steps in MODE, written at their positions. PAIRED: a tile of
        positions, the two directions' terms added (the forward's at the same steps, the other's at the
        steps MODE reads them: ``_order_step``), so dx is written once."""
        b, tile = tl.program_id(0), tl.program_id(1) * BLOCK_L + tl.arange(0, BLOCK_L)
        d = tl.program_id(2) * BLOCK_D + tl.arange(0, BLOCK_D)
        dmask = d < Dm
        acc = tl.zeros((BLOCK_L, BLOCK_D), tl.float32)
        for j in tl.static_range(K):
            later = tile + (K - 1 - j)
            ok = later < L
            gy = tl.load(gy_ptr + (b * L + later[:, None]) * Dm + d[None, :], mask=ok[:, None] & dmask[None, :],
                         other=0.0)
            acc += gy * tl.load(w_ptr + d * K + j, mask=dmask, other=0.0).to(tl.float32)[None, :]
        if PAIRED:  # tile: positions (the forward's steps); the other direction's steps, and its rows of gy
            steps = _order_step(tile, L, S, P, MODE)
            for j in tl.static_range(K):
                later = steps + (K - 1 - j)
                ok = (later < L) & (tile < L)
                gy = tl.load(gy_ptr + ((batch + b) * L + later[:, None]) * Dm + d[None, :],
                             mask=ok[:, None] & dmask[None, :], other=0.0)
                acc += gy * tl.load(w_ptr + Dm * K + d * K + j, mask=dmask, other=0.0).to(tl.float32)[None, :]
            pos = tile
        else:
            pos = _position(tile, 0, L, S, P, MODE, PAIRED)
        tl.store(dx_ptr + b * sd_b + pos[:, None] * sd_l + d[None, :], acc, mask=(tile < L)[:, None] & dmask[None, :])


def _rows(t: torch.Tensor) -> torch.Tensor:
    """The (B, L, d) view of a channels-last (B, d, L) tensor."""
    return t.transpose(1, 2)


def _grid(batch: int, length: int, channels: int, block_l: int = BLOCK_L, block_d: int = BLOCK_D
          ) -> tuple[int, int, int]:
    return batch, triton.cdiv(length, block_l), triton.cdiv(channels, block_d)


def _conv_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, mode: int, frame_tokens: int,
                  prefix: int, paired: bool) -> list[torch.Tensor]:
    """The forward kernel: one output (B, d, L), channels last, per direction; weight (directions, d, 1, K)
    and bias (directions, d) contiguous (one direction: nn.Conv1d's (d, 1, K) and (d,) are that)."""
    batch, channels, length = x.shape
    rows = _rows(x)
    outs = [torch.empty(batch, length, channels, device=x.device, dtype=x.dtype) for _ in range(1 + paired)]
    _conv_silu_fwd_kernel[_grid((1 + paired) * batch, length, channels)](
        rows, weight, bias, outs[0], outs[-1], length, frame_tokens, prefix, channels, batch, rows.stride(0),
        rows.stride(1), outs[0].stride(0), outs[0].stride(1), K=weight.shape[-1], MODE=mode, PAIRED=paired,
        BLOCK_L=BLOCK_L, BLOCK_D=BLOCK_D, num_warps=NUM_WARPS)
    return [out.transpose(1, 2) for out in outs]


def _conv_backward(grads: list[torch.Tensor], x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, mode: int,
                   frame_tokens: int, prefix: int) -> list[torch.Tensor]:
    """dx (B, d, L) channels last, dweight and dbias (weight's and bias's shapes) from the output gradient
    of each direction (``grads``: one, or two for a pair)."""
    batch, channels, length = x.shape
    paired = len(grads) == 2
    rows = _rows(x)
    grad_rows = [_rows(g) for g in grads]
    if grad_rows[0].stride() != grad_rows[-1].stride():  # a paired launch shares the strides
        grad_rows = [g.contiguous() for g in grad_rows]
    grid = _grid(len(grads) * batch, length, channels, GRAD_BLOCK_L, GRAD_BLOCK_D)
    k = weight.shape[-1]
    f32 = dict(device=x.device, dtype=torch.float32)
    gy = torch.empty(len(grads) * batch, length, channels, **f32)
    dweight = torch.empty(grid[0] * grid[1], channels, k, **f32)
    dbias = torch.empty(grid[0] * grid[1], channels, **f32)
    _conv_silu_grad_kernel[grid](rows, weight, bias, grad_rows[0], grad_rows[-1], gy, dweight, dbias, length,
                                 frame_tokens, prefix, channels, batch, rows.stride(0), rows.stride(1),
                                 *grad_rows[0].stride(), K=k, MODE=mode, PAIRED=paired, BLOCK_L=GRAD_BLOCK_L,
                                 BLOCK_D=GRAD_BLOCK_D, num_warps=GRAD_WARPS)
    dx = torch.empty(batch, length, channels, device=x.device, dtype=x.dtype)
    _conv_input_grad_kernel[_grid(batch, length, channels)](
        gy, weight, dx, length, frame_tokens, prefix, channels, batch, dx.stride(0), dx.stride(1), K=k, MODE=mode,
        PAIRED=paired, BLOCK_L=BLOCK_L, BLOCK_D=BLOCK_D, num_warps=NUM_WARPS)
    directions = len(grads)
    return [dx.transpose(1, 2), dweight.view(directions, -1, channels, k).sum(1).view_as(weight).to(weight.dtype),
            dbias.view(directions, -1, channels).sum(1).view_as(bias).to(bias.dtype)]


def _conv_silu_body(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, mode: int, frame_tokens: int,
                    prefix: int) -> torch.Tensor:
    return _conv_forward(x, weight, bias, mode, frame_tokens, prefix, False)[0]


_conv_silu_op = torch.library.custom_op("videomamba::conv_silu", _conv_silu_body, mutates_args=())


@_conv_silu_op.register_fake
def _conv_silu_fake(x, weight, bias, mode, frame_tokens, prefix):
    batch, channels, length = x.shape
    return x.new_empty(batch, length, channels).transpose(1, 2)


def _conv_silu_backward_body(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                             mode: int, frame_tokens: int, prefix: int) -> list[torch.Tensor]:
    return _conv_backward([grad], x, weight, bias, mode, frame_tokens, prefix)


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
    first, second = _conv_forward(x, weight, bias, mode, frame_tokens, prefix, True)
    return first, second


_conv_silu_pair_op = torch.library.custom_op("videomamba::conv_silu_pair", _conv_silu_pair_body, mutates_args=())


@_conv_silu_pair_op.register_fake
def _conv_silu_pair_fake(x, weight, bias, mode, frame_tokens, prefix):
    return _conv_silu_fake(x, weight, bias, mode, frame_tokens, prefix), _conv_silu_fake(x, weight, bias, mode,
                                                                                        frame_tokens, prefix)


def _conv_silu_pair_backward_body(grad: torch.Tensor, grad_bwd: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                                  bias: torch.Tensor, mode: int, frame_tokens: int, prefix: int) -> list[torch.Tensor]:
    return _conv_backward([grad, grad_bwd], x, weight, bias, mode, frame_tokens, prefix)


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
        use_triton = triton is not None and x.is_cuda and is_channels_last(x) and x.dtype != torch.float64
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
        use_triton = triton is not None and x.is_cuda and is_channels_last(x) and x.dtype != torch.float64
    if not use_triton:
        return (sequence_conv_silu(x, weight[0], bias[0], use_triton=False),
                sequence_conv_silu(x, weight[1], bias[1], use_triton=False, order=order))
    if not is_channels_last(x):
        x = x.transpose(1, 2).contiguous().transpose(1, 2)
    run = _conv_silu_pair_op if custom_op_needed() else _EagerConvSiluPair.apply
    return run(x, weight.contiguous(), bias.contiguous(), order.code, order.frame_tokens, order.prefix)
