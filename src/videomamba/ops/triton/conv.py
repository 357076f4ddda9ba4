"""The mixer's depthwise conv + SiLU in Triton (``ops.sequence_conv`` is the op): conv and SiLU fused, reading
and writing channels-last (B, L, d) rows, causal along the scan order. Forward in one pass; backward in two, the
output gradient gy = g · silu'(y) written (fp32) by one kernel and summed through the taps into dx by the
next: one kernel recomputing gy where each dx needs it measured 1.44 ms a layer against 0.92 (docs/benchmarks.md)."""

from __future__ import annotations

import torch

from .common import cdiv
from .settings import CONV

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - triton ships with CUDA builds of torch
    triton = None

if triton is not None:
    from .language import _of_direction, _order_step, _position

    @triton.jit
    def _conv_program(batch, Dm, K: tl.constexpr, PAIRED: tl.constexpr):
        """A conv program's (direction, batch) pair, numbered by grid axis 0 direction-major as the scan's
        (``language._sequential_prologue``), and the offsets of its direction's weights and bias in the
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


def _grid(batch: int, length: int, channels: int, block_l: int | None = None, block_d: int | None = None
          ) -> tuple[int, int, int]:
    return batch, cdiv(length, block_l or CONV.block_l), cdiv(channels, block_d or CONV.block_d)


def conv_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, mode: int, frame_tokens: int,
                  prefix: int, paired: bool) -> list[torch.Tensor]:
    """The forward kernel: one output (B, d, L), channels last, per direction; weight (directions, d, 1, K)
    and bias (directions, d) contiguous (one direction: nn.Conv1d's (d, 1, K) and (d,) are that)."""
    batch, channels, length = x.shape
    rows = _rows(x)
    outs = [torch.empty(batch, length, channels, device=x.device, dtype=x.dtype) for _ in range(1 + paired)]
    _conv_silu_fwd_kernel[_grid((1 + paired) * batch, length, channels)](
        rows, weight, bias, outs[0], outs[-1], length, frame_tokens, prefix, channels, batch, rows.stride(0),
        rows.stride(1), outs[0].stride(0), outs[0].stride(1), K=weight.shape[-1], MODE=mode, PAIRED=paired,
        BLOCK_L=CONV.block_l, BLOCK_D=CONV.block_d, num_warps=CONV.num_warps)
    return [out.transpose(1, 2) for out in outs]


def conv_backward(grads: list[torch.Tensor], x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, mode: int,
                   frame_tokens: int, prefix: int) -> list[torch.Tensor]:
    """dx (B, d, L) channels last, dweight and dbias (weight's and bias's shapes) from the output gradient
    of each direction (``grads``: one, or two for a pair)."""
    batch, channels, length = x.shape
    paired = len(grads) == 2
    rows = _rows(x)
    grad_rows = [_rows(g) for g in grads]
    if grad_rows[0].stride() != grad_rows[-1].stride():  # a paired launch shares the strides
        grad_rows = [g.contiguous() for g in grad_rows]
    k = weight.shape[-1]
    f32 = dict(device=x.device, dtype=torch.float32)
    directions = len(grads)
    grid = _grid(directions * batch, length, channels, CONV.grad_block_l, CONV.grad_block_d)
    gy = torch.empty(len(grads) * batch, length, channels, **f32)
    dweight = torch.empty(grid[0] * grid[1], channels, k, **f32)
    dbias = torch.empty(grid[0] * grid[1], channels, **f32)
    _conv_silu_grad_kernel[grid](rows, weight, bias, grad_rows[0], grad_rows[-1], gy, dweight, dbias, length,
                                 frame_tokens, prefix, channels, batch, rows.stride(0), rows.stride(1),
                                 *grad_rows[0].stride(), K=k, MODE=mode, PAIRED=paired, BLOCK_L=CONV.grad_block_l,
                                 BLOCK_D=CONV.grad_block_d, num_warps=CONV.grad_warps)
    dx = torch.empty(batch, length, channels, device=x.device, dtype=x.dtype)
    _conv_input_grad_kernel[_grid(batch, length, channels)](
        gy, weight, dx, length, frame_tokens, prefix, channels, batch, dx.stride(0), dx.stride(1), K=k, MODE=mode,
        PAIRED=paired, BLOCK_L=CONV.block_l, BLOCK_D=CONV.block_d, num_warps=CONV.num_warps)
    return [dx.transpose(1, 2), dweight.view(directions, -1, channels, k).sum(1).view_as(weight).to(weight.dtype),
            dbias.view(directions, -1, channels).sum(1).view_as(bias).to(bias.dtype)]
