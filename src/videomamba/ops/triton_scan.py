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

Version 2 (``VERSION = 2`` or VIDEOMAMBA_TRITON_SCAN_VERSION=2) scans each chunk in parallel instead
of step by step: a (channels, states, steps) tile loaded along L, ``tl.associative_scan`` for the
states (and, reversed, for the adjoint in the backward), the state carried between chunks; same
checkpoints, same contract. Correct in the interpreter; the default stays version 1 until both are
timed on a GPU.
"""

from __future__ import annotations

import os

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
    def _program_block(A_ptr, D_ptr, bias_ptr, Dm, L, N: tl.constexpr, BLOCK_D: tl.constexpr,
                       HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr):
        """What every kernel's program starts from: its batch, its block of channels (and their mask),
        the state indices, each channel's row offset in a (b, d, L) tensor, and the channel parameters
        (A natural and pre-scaled by log2 e for exp2, D, delta_bias)."""
        pid_b = tl.program_id(0)
        pid_d = tl.program_id(1)
        d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
        dmask = d < Dm
        n = tl.arange(0, N)
        A_nat, Dv, bias = _channel_parameters(A_ptr, D_ptr, bias_ptr, d, dmask, N, BLOCK_D, HAS_D, HAS_BIAS)
        row = (pid_b * Dm + d) * L
        return pid_b, pid_d, d, dmask, n, row, A_nat, A_nat * 1.4426950408889634, Dv, bias

    @triton.jit
    def _scan_fwd_kernel(u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr, last_ptr, ckpt_ptr,
                         Dm, L, n_chunks,
                         N: tl.constexpr, BLOCK_D: tl.constexpr, CHUNK: tl.constexpr, HAS_D: tl.constexpr,
                         HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, REVERSE: tl.constexpr):
        pid_b, pid_d, d, dmask, n, row, A_nat, A, Dv, bias = _program_block(
            A_ptr, D_ptr, bias_ptr, Dm, L, N, BLOCK_D, HAS_D, HAS_BIAS)
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
        pid_b, pid_d, d, dmask, n, row, A_nat, A, Dv, bias = _program_block(
            A_ptr, D_ptr, bias_ptr, Dm, L, N, BLOCK_D, HAS_D, HAS_BIAS)
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

    # ------------------------------------------------------------------------------------------
    # Version 2: each chunk of CHUNK steps is scanned in parallel (tl.associative_scan over a
    # (channels, states, steps) tile, loaded along L: coalesced in the (b, d, L) layout); the state
    # is carried from chunk to chunk. The backward recomputes a chunk's states from its checkpoint
    # the same way and runs the adjoint as a reverse scan.

    @triton.jit
    def _linear_combine(a1, b1, a2, b2):
        """(a1, b1) then (a2, b2) for h -> a h + b."""
        return a1 * a2, a2 * b1 + b2

    @triton.jit
    def _load_tile(ptr, row, pos, ok, dmask):
        """(BLOCK_D, CHUNK) tile of a (b, d, L) tensor at memory positions ``pos``, fp32, 0 outside."""
        return tl.load(ptr + row[:, None] + pos[None, :], mask=dmask[:, None] & ok[None, :], other=0.0).to(tl.float32)

    @triton.jit
    def _load_rows(ptr, base, n, L, pos, ok):
        """(N, CHUNK) tile of a (b, N, L) tensor (B or C) at memory positions ``pos``, fp32."""
        return tl.load(ptr + base + n[:, None] * L + pos[None, :], mask=ok[None, :], other=0.0).to(tl.float32)

    @triton.jit
    def _step_terms(u_ptr, dt_ptr, B_ptr, row, bbase, n, L, steps, bias, A, dmask,
                    SOFTPLUS: tl.constexpr, REVERSE: tl.constexpr):
        """Decay a = exp(Δ A) and drive b = Δ u B, (BLOCK_D, N, CHUNK), for scan steps ``steps``; steps
        outside [0, L) give a = 1, b = 0. Also Δ, u (BLOCK_D, CHUNK), B (N, CHUNK) and the raw Δ."""
        ok = (steps >= 0) & (steps < L)
        pos = _position(steps, L, REVERSE)
        u = _load_tile(u_ptr, row, pos, ok, dmask)
        raw = _load_tile(dt_ptr, row, pos, ok, dmask) + bias[:, None]
        dt = _softplus(raw) if SOFTPLUS else raw
        dt = tl.where(ok[None, :], dt, 0.0)
        Bt = _load_rows(B_ptr, bbase, n, L, pos, ok)
        a = tl.exp2(dt[:, None, :] * A[:, :, None])
        b = (dt * u)[:, None, :] * Bt[None, :, :]
        return a, b, dt, raw, u, Bt, pos, ok

    @triton.jit
    def _column(x, l, index):
        """x[:, :, index] of a (BLOCK_D, N, CHUNK) tile."""
        return tl.sum(tl.where((l == index)[None, None, :], x, 0.0), axis=2)

    @triton.jit
    def _scan_fwd_kernel_v2(u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr, last_ptr, ckpt_ptr,
                            Dm, L, n_chunks,
                            N: tl.constexpr, BLOCK_D: tl.constexpr, CHUNK: tl.constexpr, HAS_D: tl.constexpr,
                            HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
                            REVERSE: tl.constexpr):
        pid_b, pid_d, d, dmask, n, row, A_nat, A, Dv, bias = _program_block(
            A_ptr, D_ptr, bias_ptr, Dm, L, N, BLOCK_D, HAS_D, HAS_BIAS)
        l = tl.arange(0, CHUNK)
        bbase = pid_b * N * L
        state = ((pid_b * Dm + d) * N)[:, None] + n[None, :]  # (BLOCK_D, N) offsets into (b, d, N)
        h = tl.zeros((BLOCK_D, N), tl.float32)
        for c in range(n_chunks):
            tl.store(ckpt_ptr + state * n_chunks + c, h, mask=dmask[:, None])
            steps = c * CHUNK + l
            a, b, dt, raw, u, Bt, pos, ok = _step_terms(u_ptr, dt_ptr, B_ptr, row, bbase, n, L, steps, bias, A, dmask,
                                                        SOFTPLUS, REVERSE)
            b = tl.where((l == 0)[None, None, :], b + a * h[:, :, None], b)  # the carried state enters here
            _, hs = tl.associative_scan((a, b), axis=2, combine_fn=_linear_combine)
            Ct = _load_rows(C_ptr, bbase, n, L, pos, ok)
            y = tl.sum(hs * Ct[None, :, :], axis=1) + Dv[:, None] * u
            if HAS_Z:
                z = _load_tile(z_ptr, row, pos, ok, dmask)
                y = y * z * tl.sigmoid(z)
            tl.store(out_ptr + row[:, None] + pos[None, :], y, mask=dmask[:, None] & ok[None, :])
            h = _column(hs, l, tl.minimum(CHUNK, L - c * CHUNK) - 1)
        tl.store(last_ptr + state, h, mask=dmask[:, None])

    @triton.jit
    def _scan_bwd_kernel_v2(u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, ckpt_ptr, dout_ptr, dlast_ptr,
                            du_ptr, ddt_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dz_ptr, dbias_ptr,
                            Dm, L, n_chunks, part_stride,
                            N: tl.constexpr, BLOCK_D: tl.constexpr, CHUNK: tl.constexpr, HAS_D: tl.constexpr,
                            HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
                            REVERSE: tl.constexpr, ATOMIC_DBC: tl.constexpr):
        pid_b, pid_d, d, dmask, n, row, A_nat, A, Dv, bias = _program_block(
            A_ptr, D_ptr, bias_ptr, Dm, L, N, BLOCK_D, HAS_D, HAS_BIAS)
        l = tl.arange(0, CHUNK)
        bbase = pid_b * N * L
        state = ((pid_b * Dm + d) * N)[:, None] + n[None, :]
        # gradient reaching the state at the end of the current chunk from everything after it
        carry = tl.load(dlast_ptr + state, mask=dmask[:, None], other=0.0)
        dA = tl.zeros((BLOCK_D, N), tl.float32)
        dD = tl.zeros((BLOCK_D,), tl.float32)
        dbias = tl.zeros((BLOCK_D,), tl.float32)
        for ci in range(n_chunks):
            c = n_chunks - 1 - ci
            t0 = c * CHUNK
            steps = t0 + l
            last = tl.minimum(CHUNK, L - t0) - 1
            h0 = tl.load(ckpt_ptr + state * n_chunks + c, mask=dmask[:, None], other=0.0)
            # states before each step: a scan over the previous step's terms, h0 entering first
            a_prev, b_prev, _, _, _, _, _, _ = _step_terms(u_ptr, dt_ptr, B_ptr, row, bbase, n, L, steps - 1, bias, A,
                                                           dmask, SOFTPLUS, REVERSE)
            b_prev = tl.where((l == 0)[None, None, :], h0[:, :, None], b_prev)
            _, h_prev = tl.associative_scan((a_prev, b_prev), axis=2, combine_fn=_linear_combine)
            a, b, dt, raw, u, Bt, pos, ok = _step_terms(u_ptr, dt_ptr, B_ptr, row, bbase, n, L, steps, bias, A, dmask,
                                                        SOFTPLUS, REVERSE)
            h = a * h_prev + b
            Ct = _load_rows(C_ptr, bbase, n, L, pos, ok)
            go = _load_tile(dout_ptr, row, pos, ok, dmask)
            if HAS_Z:
                z = _load_tile(z_ptr, row, pos, ok, dmask)
                sg = tl.sigmoid(z)
                y = tl.sum(h * Ct[None, :, :], axis=1) + Dv[:, None] * u
                tl.store(dz_ptr + row[:, None] + pos[None, :], go * y * sg * (1.0 + z * (1.0 - sg)),
                         mask=dmask[:, None] & ok[None, :])
                dy = go * z * sg
            else:
                dy = go
            # adjoint G_t = C_t dy_t + a_{t+1} G_{t+1}: a reverse scan; the next chunk's share enters at the
            # last step
            a_next, _, _, _, _, _, _, _ = _step_terms(u_ptr, dt_ptr, B_ptr, row, bbase, n, L, steps + 1, bias, A,
                                                      dmask, SOFTPLUS, REVERSE)
            cdy = dy[:, None, :] * Ct[None, :, :]
            cdy = tl.where((l == last)[None, None, :], cdy + carry[:, :, None], cdy)
            a_next = tl.where((l < last)[None, None, :], a_next, 0.0)
            _, G = tl.associative_scan((a_next, cdy), axis=2, combine_fn=_linear_combine, reverse=True)
            G = tl.where(ok[None, None, :], G, 0.0)
            carry = _column(a * G, l, 0)  # what flows into the state before this chunk
            GB = tl.sum(G * Bt[None, :, :], axis=1)  # (BLOCK_D, CHUNK)
            gah = G * a * h_prev
            ddt = GB * u + tl.sum(A_nat[:, :, None] * gah, axis=1)
            dA += tl.sum(dt[:, None, :] * gah, axis=2)
            dD += tl.sum(dy * u, axis=1)
            tile_mask = dmask[:, None] & ok[None, :]
            tl.store(du_ptr + row[:, None] + pos[None, :], GB * dt + Dv[:, None] * dy, mask=tile_mask)
            dB_t = tl.sum(tl.where(dmask[:, None, None], G * (dt * u)[:, None, :], 0.0), axis=0)  # (N, CHUNK)
            dC_t = tl.sum(tl.where(dmask[:, None, None], dy[:, None, :] * h, 0.0), axis=0)
            rows = bbase + n[:, None] * L + pos[None, :]
            if ATOMIC_DBC:
                tl.atomic_add(dB_ptr + rows, dB_t, mask=ok[None, :])
                tl.atomic_add(dC_ptr + rows, dC_t, mask=ok[None, :])
            else:
                tl.store(dB_ptr + pid_d * part_stride + rows, dB_t, mask=ok[None, :])
                tl.store(dC_ptr + pid_d * part_stride + rows, dC_t, mask=ok[None, :])
            if SOFTPLUS:
                ddt = ddt * tl.sigmoid(raw)
            ddt = tl.where(ok[None, :], ddt, 0.0)
            dbias += tl.sum(ddt, axis=1)
            tl.store(ddt_ptr + row[:, None] + pos[None, :], ddt, mask=tile_mask)
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
# Version 2 (chunk-parallel) is correct in the interpreter and on the CPU tests but not yet timed on
# a GPU: version 1 stays the default until benchmarks/scan_gpu_sweep.py has measured both.
VERSION = int(os.environ.get("VIDEOMAMBA_TRITON_SCAN_VERSION", "1"))
V2_BLOCK_D = 2  # 2 channels x 16 states x 64 steps: the backward compiles without spills (sm_90)
V2_NUM_WARPS = 4


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
    if VERSION == 2:
        _scan_fwd_kernel_v2[(batch, triton.cdiv(channels, V2_BLOCK_D))](
            u, delta, A, B, C, D if D is not None else dummy, z if z is not None else dummy,
            delta_bias if delta_bias is not None else dummy, out, last, ckpt, channels, length, n_chunks,
            N=n, BLOCK_D=V2_BLOCK_D, CHUNK=chunk, HAS_D=D is not None, HAS_Z=z is not None,
            HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(delta_softplus), REVERSE=int(bool(reverse)),
            num_warps=V2_NUM_WARPS)
        return out, last, ckpt
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
    n_dblocks = triton.cdiv(channels, V2_BLOCK_D if VERSION == 2 else BLOCK_D)
    f32 = dict(device=u.device, dtype=torch.float32)
    scratch = torch.empty(batch * n_dblocks * chunk * BLOCK_D * n if VERSION == 1 else 1, **f32)
    du, ddelta = torch.empty(batch, channels, length, **f32), torch.empty(batch, channels, length, **f32)
    dz = torch.empty(batch, channels, length, **f32) if z is not None else None
    dA = torch.empty(batch, channels, n, **f32)
    if ATOMIC_DBC:
        dB, dC = torch.zeros(batch, n, length, **f32), torch.zeros(batch, n, length, **f32)
    else:
        dB, dC = torch.empty(n_dblocks, batch, n, length, **f32), torch.empty(n_dblocks, batch, n, length, **f32)
    dD, dbias = torch.empty(batch, channels, **f32), torch.empty(batch, channels, **f32)
    dummy = u
    if VERSION == 2:
        _scan_bwd_kernel_v2[(batch, n_dblocks)](
            u, delta, A, B, C, D if D is not None else dummy, z if z is not None else dummy,
            delta_bias if delta_bias is not None else dummy, ckpt, dout.float().contiguous(),
            dlast.float().contiguous(), du, ddelta, dA, dB, dC, dD, dz if dz is not None else du, dbias,
            channels, length, n_chunks, batch * n * length, N=n, BLOCK_D=V2_BLOCK_D, CHUNK=chunk,
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
            SOFTPLUS=bool(delta_softplus), REVERSE=int(bool(reverse)), ATOMIC_DBC=ATOMIC_DBC,
            num_warps=V2_NUM_WARPS)
    else:
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
