"""Selective scan in Triton (GPU; runs on the CPU under TRITON_INTERPRET=1 for tests).

One program per (batch, block of BLOCK_D channels); the state (BLOCK_D, N) lives in registers and
the loop over time is sequential. softplus(delta + delta_bias), D and the SiLU(z) gate are fused;
inputs may be bf16 or fp32, state and accumulation are fp32.

Forward: also stores the state at the start of every CHUNK steps, (b, d, n, L / CHUNK), a
CHUNK-th of what storing every state would cost. Backward: walks the chunks from the last; for
each it recomputes the chunk's states from its checkpoint into a per-program scratch buffer
(BLOCK_D x CHUNK x N, cache-resident), then runs the adjoint recurrence backwards through it. dB
and dC are sums over channels: each program reduces its BLOCK_D channels in registers and adds
the result with one atomic per (batch, state, step).

The checkpoints are an output of the custom op and saved for the backward, so the backward runs
no second forward pass. Not yet tuned (issue 5).
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - triton ships with CUDA builds of torch
    triton = None

LOG2E = 1.4426950408889634

if triton is not None:

    @triton.jit
    def _softplus(x):
        return tl.where(x > 20.0, x, tl.log(1.0 + tl.exp(x)))

    @triton.jit
    def _position(step, L, REVERSE: tl.constexpr):
        """Memory position of scan step ``step``: the same, or counted from the end for a reversed scan
        (the backward direction of the spatio-temporal reversal reads forward-order tensors)."""
        return step + REVERSE * (L - 1 - 2 * step)  # REVERSE is 0 or 1: no branch to compile

    @triton.jit
    def _channel_parameters(A_ptr, D_ptr, bias_ptr, d, dmask, N: tl.constexpr, BLOCK_D: tl.constexpr,
                            HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr):
        """A (BLOCK_D, N), D and delta_bias (BLOCK_D,) of a block of channels, in fp32."""
        n = tl.arange(0, N)
        A = tl.load(A_ptr + d[:, None] * N + n[None, :], mask=dmask[:, None], other=0.0).to(tl.float32)
        Dv = tl.load(D_ptr + d, mask=dmask, other=0.0).to(tl.float32) if HAS_D else tl.zeros((BLOCK_D,), tl.float32)
        bias = tl.load(bias_ptr + d, mask=dmask, other=0.0).to(tl.float32) if HAS_BIAS else tl.zeros((BLOCK_D,), tl.float32)
        return A, Dv, bias

    @triton.jit
    def _scan_fwd_kernel(u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr, last_ptr, ckpt_ptr,
                         Dm, L, n_chunks,
                         N: tl.constexpr, BLOCK_D: tl.constexpr, CHUNK: tl.constexpr, HAS_D: tl.constexpr,
                         HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, REVERSE: tl.constexpr):
        pid_b = tl.program_id(0)
        pid_d = tl.program_id(1)
        d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
        dmask = d < Dm
        n = tl.arange(0, N)
        A, Dv, bias = _channel_parameters(A_ptr, D_ptr, bias_ptr, d, dmask, N, BLOCK_D, HAS_D, HAS_BIAS)
        A = A * 1.4426950408889634  # exp(x) = exp2(x log2 e)
        row = (pid_b * Dm + d) * L
        brow = pid_b * N * L + n * L
        crow = ((pid_b * Dm + d) * N)[:, None] * n_chunks + n[None, :] * n_chunks
        h = tl.zeros((BLOCK_D, N), tl.float32)
        for t in range(L):  # t counts scan steps; tm is the position in memory
            tm = _position(t, L, REVERSE)
            if t % CHUNK == 0:
                tl.store(ckpt_ptr + crow + t // CHUNK, h, mask=dmask[:, None])
            u = tl.load(u_ptr + row + tm, mask=dmask, other=0.0).to(tl.float32)
            dt = tl.load(dt_ptr + row + tm, mask=dmask, other=0.0).to(tl.float32) + bias
            if SOFTPLUS:
                dt = _softplus(dt)
            Bt = tl.load(B_ptr + brow + tm).to(tl.float32)
            Ct = tl.load(C_ptr + brow + tm).to(tl.float32)
            h = tl.exp2(dt[:, None] * A) * h + (dt * u)[:, None] * Bt[None, :]
            y = tl.sum(h * Ct[None, :], axis=1) + Dv * u
            if HAS_Z:
                z = tl.load(z_ptr + row + tm, mask=dmask, other=0.0).to(tl.float32)
                y = y * z * tl.sigmoid(z)
            tl.store(out_ptr + row + tm, y, mask=dmask)
        tl.store(last_ptr + ((pid_b * Dm + d) * N)[:, None] + n[None, :], h, mask=dmask[:, None])

    @triton.jit
    def _scan_bwd_kernel(u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, ckpt_ptr, dout_ptr, dlast_ptr,
                         scratch_ptr, du_ptr, ddt_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dz_ptr, dbias_ptr,
                         Dm, L, n_chunks, n_dblocks, part_stride,
                         N: tl.constexpr, BLOCK_D: tl.constexpr, CHUNK: tl.constexpr, HAS_D: tl.constexpr,
                         HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, REVERSE: tl.constexpr,
                         ATOMIC_DBC: tl.constexpr):
        pid_b = tl.program_id(0)
        pid_d = tl.program_id(1)
        d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
        dmask = d < Dm
        n = tl.arange(0, N)
        A_nat, Dv, bias = _channel_parameters(A_ptr, D_ptr, bias_ptr, d, dmask, N, BLOCK_D, HAS_D, HAS_BIAS)
        A = A_nat * 1.4426950408889634
        row = (pid_b * Dm + d) * L
        brow = pid_b * N * L + n * L
        crow = ((pid_b * Dm + d) * N)[:, None] * n_chunks + n[None, :] * n_chunks
        tile = d[:, None] * 0 + tl.arange(0, BLOCK_D)[:, None] * N + n[None, :]  # (BLOCK_D, N) offsets
        scratch = scratch_ptr + (pid_b * n_dblocks + pid_d) * CHUNK * BLOCK_D * N
        g = tl.load(dlast_ptr + ((pid_b * Dm + d) * N)[:, None] + n[None, :], mask=dmask[:, None], other=0.0)
        dA = tl.zeros((BLOCK_D, N), tl.float32)
        dD = tl.zeros((BLOCK_D,), tl.float32)
        dbias = tl.zeros((BLOCK_D,), tl.float32)
        for ci in range(n_chunks):
            c = n_chunks - 1 - ci
            t0 = c * CHUNK
            steps = tl.minimum(CHUNK, L - t0)
            h0 = tl.load(ckpt_ptr + crow + c, mask=dmask[:, None], other=0.0)
            h = h0
            for k in range(steps):  # recompute this chunk's states
                t = _position(t0 + k, L, REVERSE)
                u = tl.load(u_ptr + row + t, mask=dmask, other=0.0).to(tl.float32)
                dt = tl.load(dt_ptr + row + t, mask=dmask, other=0.0).to(tl.float32) + bias
                if SOFTPLUS:
                    dt = _softplus(dt)
                Bt = tl.load(B_ptr + brow + t).to(tl.float32)
                h = tl.exp2(dt[:, None] * A) * h + (dt * u)[:, None] * Bt[None, :]
                tl.store(scratch + k * BLOCK_D * N + tile, h)
            for kk in range(steps):  # adjoint, backwards through the chunk
                k = steps - 1 - kk
                t = _position(t0 + k, L, REVERSE)
                u = tl.load(u_ptr + row + t, mask=dmask, other=0.0).to(tl.float32)
                raw = tl.load(dt_ptr + row + t, mask=dmask, other=0.0).to(tl.float32) + bias
                dt = _softplus(raw) if SOFTPLUS else raw
                Bt = tl.load(B_ptr + brow + t).to(tl.float32)
                Ct = tl.load(C_ptr + brow + t).to(tl.float32)
                h_t = tl.load(scratch + k * BLOCK_D * N + tile)
                h_prev = tl.load(scratch + (k - 1) * BLOCK_D * N + tile, mask=(k > 0) & dmask[:, None], other=0.0)
                h_prev = tl.where(k > 0, h_prev, h0)
                go = tl.load(dout_ptr + row + t, mask=dmask, other=0.0).to(tl.float32)
                if HAS_Z:
                    z = tl.load(z_ptr + row + t, mask=dmask, other=0.0).to(tl.float32)
                    sg = tl.sigmoid(z)
                    y = tl.sum(h_t * Ct[None, :], axis=1) + Dv * u
                    tl.store(dz_ptr + row + t, go * y * sg * (1.0 + z * (1.0 - sg)), mask=dmask)
                    dy = go * z * sg
                else:
                    dy = go
                a = tl.exp2(dt[:, None] * A)
                g = g + dy[:, None] * Ct[None, :]
                gB = tl.sum(g * Bt[None, :], axis=1)
                g_a_hprev = g * a * h_prev
                ddt = gB * u + tl.sum(A_nat * g_a_hprev, axis=1)
                dA += dt[:, None] * g_a_hprev
                dD += dy * u
                tl.store(du_ptr + row + t, gB * dt + Dv * dy, mask=dmask)
                dB_t = tl.sum(tl.where(dmask[:, None], g * (dt * u)[:, None], 0.0), axis=0)
                dC_t = tl.sum(tl.where(dmask[:, None], dy[:, None] * h_t, 0.0), axis=0)
                if ATOMIC_DBC:
                    tl.atomic_add(dB_ptr + brow + t, dB_t)
                    tl.atomic_add(dC_ptr + brow + t, dC_t)
                else:  # this block's partial sums; the blocks are added afterwards
                    tl.store(dB_ptr + pid_d * part_stride + brow + t, dB_t)
                    tl.store(dC_ptr + pid_d * part_stride + brow + t, dC_t)
                if SOFTPLUS:
                    ddt = ddt * tl.sigmoid(raw)
                dbias += ddt
                tl.store(ddt_ptr + row + t, ddt, mask=dmask)
                g = g * a
        part = (pid_b * Dm + d)
        tl.store(dA_ptr + part[:, None] * N + n[None, :], dA, mask=dmask[:, None])
        tl.store(dD_ptr + part, dD, mask=dmask)
        tl.store(dbias_ptr + part, dbias, mask=dmask)


BLOCK_D = 16  # measured on an H100 (benchmarks/scan_gpu_sweep.py): 16 channels, 1 warp, chunk 64
CHUNK = 64
NUM_WARPS = 1
# dB and dC sum over all channels: each block of channels adds its share with atomics (True, the
# measured default) or writes it to its own slice, summed by one reduction afterwards (False)
ATOMIC_DBC = True


def available() -> bool:
    """Whether Triton imports (kernels then run on CUDA tensors, or anywhere under TRITON_INTERPRET=1)."""
    return triton is not None


def triton_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus, reverse: bool = False,
                   chunk: int | None = None):
    """(out, last state) and the chunk checkpoints the backward needs; contiguous inputs. With
    ``reverse`` the scan runs from the last position to the first (no flipped copies)."""
    chunk = chunk or CHUNK
    batch, channels, length = u.shape
    n = A.shape[1]
    if n & (n - 1):
        raise ValueError(f"the Triton scan needs a power-of-two d_state, got {n}")
    n_chunks = triton.cdiv(length, chunk)
    out = torch.empty(batch, channels, length, device=u.device, dtype=torch.float32)
    last = torch.empty(batch, channels, n, device=u.device, dtype=torch.float32)
    ckpt = torch.empty(batch, channels, n, n_chunks, device=u.device, dtype=torch.float32)
    dummy = u
    grid = (batch, triton.cdiv(channels, BLOCK_D))
    _scan_fwd_kernel[grid](u, delta, A, B, C, D if D is not None else dummy, z if z is not None else dummy,
                           delta_bias if delta_bias is not None else dummy, out, last, ckpt,
                           channels, length, n_chunks, N=n, BLOCK_D=BLOCK_D, CHUNK=chunk, HAS_D=D is not None,
                           HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(delta_softplus),
                           REVERSE=int(bool(reverse)), num_warps=NUM_WARPS)
    return out, last, ckpt


def triton_backward(dout, dlast, u, delta, A, B, C, D, z, delta_bias, delta_softplus, reverse: bool = False,
                    ckpt=None, chunk: int | None = None):
    """Gradients (du, ddelta, dA, dB, dC, dD, dz, dbias), None where an input is absent."""
    chunk = chunk or CHUNK
    batch, channels, length = u.shape
    n = A.shape[1]
    if ckpt is None:
        _, _, ckpt = triton_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus, reverse, chunk)
    n_chunks = ckpt.shape[-1]
    n_dblocks = triton.cdiv(channels, BLOCK_D)
    f32 = dict(device=u.device, dtype=torch.float32)
    scratch = torch.empty(batch * n_dblocks * chunk * BLOCK_D * n, **f32)
    du, ddelta = torch.empty(batch, channels, length, **f32), torch.empty(batch, channels, length, **f32)
    dz = torch.empty(batch, channels, length, **f32) if z is not None else None
    dA = torch.empty(batch, channels, n, **f32)
    if ATOMIC_DBC:
        dB, dC = torch.zeros(batch, n, length, **f32), torch.zeros(batch, n, length, **f32)
    else:
        dB, dC = torch.empty(n_dblocks, batch, n, length, **f32), torch.empty(n_dblocks, batch, n, length, **f32)
    dD, dbias = torch.empty(batch, channels, **f32), torch.empty(batch, channels, **f32)
    dummy = u
    _scan_bwd_kernel[(batch, n_dblocks)](
        u, delta, A, B, C, D if D is not None else dummy, z if z is not None else dummy,
        delta_bias if delta_bias is not None else dummy, ckpt, dout.float().contiguous(), dlast.float().contiguous(),
        scratch, du, ddelta, dA, dB, dC, dD, dz if dz is not None else du, dbias,
        channels, length, n_chunks, n_dblocks, batch * n * length, N=n, BLOCK_D=BLOCK_D, CHUNK=chunk,
        HAS_D=D is not None, ATOMIC_DBC=ATOMIC_DBC,
        HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(delta_softplus), REVERSE=int(bool(reverse)),
        num_warps=NUM_WARPS)
    if not ATOMIC_DBC:
        dB, dC = dB.sum(0), dC.sum(0)
    return (du, ddelta, dA.sum(0), dB, dC, dD.sum(0) if D is not None else None, dz,
            dbias.sum(0) if delta_bias is not None else None)
