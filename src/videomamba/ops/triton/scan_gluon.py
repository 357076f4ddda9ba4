"""The scan backward in Triton's Gluon dialect (``SCAN.backward_gluon``): ``_scan_bwd_kernel``'s arithmetic with
the layouts and the scratch buffer chosen by the kernel rather than by the compiler.

The state tile is (NS, BLOCK_D) on one warp, 4 lanes across the states and 8 across the channels (4 states of 4
channels a thread), channels fastest. Per-channel vectors (u, Δ, z, the output gradient and everything computed
from them) live in the tile's slice along the states, per-state vectors (B, C) in its slice along the channels:
each is loaded straight into the layout it is used in, a sum over the states lands in the per-channel layout and a
sum over the channels in the per-state one, so no value crosses between layouts through shared memory. Plain
Triton chose one channel a lane for the loads and the gradient stores, five conversions a step (docs/benchmarks.md).

A window's recomputed states go to shared memory (WINDOW x NS x BLOCK_D fp32 a program), not to a global scratch
buffer that every store writes through to L2; each thread reads back the states it wrote, in the layout it wrote
them. Each step's Δ after softplus is kept there too, for the adjoint: a lane may read a Δ another lane of its warp
stored, so a barrier between a window's recompute and its adjoint orders them (no step has one). The loads of the
step after the current one are issued before its arithmetic (one step of prefetch, by hand: Gluon pipelines
nothing itself).

On an H100 it takes 2.24 ms a layer at 64 frames against the plain kernel's 3.69 (docs/benchmarks.md). The
interpreter does not run Gluon: CI compiles this kernel for sm_90 (``compile_check``), and the GPU tests check it
against the float64 reference. Where Gluon is missing or older than this kernel needs, where the settings ask
for another tile (``channel_groups["backward"]`` other than 1, more than one warp), or where a window would not
fit the shared memory (``scan.gluon_shared_bytes``), the plain Triton kernel runs.
"""

from __future__ import annotations

try:
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
except ImportError:  # pragma: no cover - Triton before Gluon, or no Triton
    gluon = None
# Gluon's API moves between Triton releases: this kernel is written for 3.6 to 3.8 (constexpr functions, shared
# memory descriptors); an older Gluon leaves the plain kernel in charge rather than failing the import
if gluon is not None and not (hasattr(gluon, "constexpr_function") and hasattr(gl, "allocate_shared_memory")
                              and (hasattr(gl, "barrier") or hasattr(gl, "thread_barrier"))):
    gluon = None  # pragma: no cover

if gluon is not None:
    from .language import _position, _softplus

    # the warp's barrier: gl.thread_barrier up to Triton 3.6, gl.barrier from 3.7
    _barrier = getattr(gl, "barrier", None) or gl.thread_barrier

    @gluon.constexpr_function
    def _tile_layout(states, channels):
        """The state tile's layout: one warp, up to 4 lanes across the states, the rest across the channels."""
        lanes_s = min(4, states)
        lanes_d = 32 // lanes_s
        return gl.BlockedLayout([states // lanes_s, max(1, channels // lanes_d)], [lanes_s, lanes_d], [1, 1], [1, 0])

    @gluon.jit
    def _step_inputs(u_ptr, dt_ptr, B_ptr, C_ptr, z_ptr, dout_ptr, u_row, dt_row, B_row, C_row, z_row, g_row, t,
                     su_l, sdt_l, sB_l, sC_l, sz_l, sg_l, dmask, HAS_Z: gl.constexpr):
        """What the adjoint reads at memory position t: u, raw Δ, B, C, z (u where there is none), dout."""
        u = gl.load(u_ptr + u_row + t * su_l, mask=dmask, other=0.0).to(gl.float32)
        raw = gl.load(dt_ptr + dt_row + t * sdt_l, mask=dmask, other=0.0).to(gl.float32)
        Bt = gl.load(B_ptr + B_row + t * sB_l).to(gl.float32)
        Ct = gl.load(C_ptr + C_row + t * sC_l).to(gl.float32)
        if HAS_Z:
            z = gl.load(z_ptr + z_row + t * sz_l, mask=dmask, other=0.0).to(gl.float32)
        else:
            z = u
        go = gl.load(dout_ptr + g_row + t * sg_l, mask=dmask, other=0.0).to(gl.float32)
        return u, raw, Bt, Ct, z, go

    @gluon.jit
    def _carried_adjoint(g, ends_ptr, dtsum_ptr, A, state, pid_e, d, dmask, tile_mask, Dm, n_blocks, first, count,
                         N: gl.constexpr):
        """Fold ``count`` backward summary blocks into the adjoint ``g``, from block ``first`` down
        (``language._carried_in`` with STEP -1, in this kernel's 2-D tile)."""
        for i in range(count):
            s = first - i
            dtsum = gl.load(dtsum_ptr + (pid_e * n_blocks + s) * Dm + d, mask=dmask, other=0.0)
            end = gl.load(ends_ptr + state + (pid_e * (n_blocks - 1) + s) * N * Dm, mask=tile_mask, other=0.0)
            g = gl.exp2(dtsum[None, :] * A) * g + end
        return g

    @gluon.jit(do_not_specialize=["opaque_zero"])
    def _scan_bwd_gluon_kernel(u_ptr, u2_ptr, dt_ptr, dt2_ptr, A_ptr, B_ptr, B2_ptr, C_ptr, C2_ptr, D_ptr, z_ptr,
                               bias_ptr, ckpt_ptr, dout_ptr, dlast_ptr, scratch_ptr, du_ptr, ddt_ptr, dA_ptr, dB_ptr,
                               dC_ptr, dD_ptr, dz_ptr, dbias_ptr, ends_ptr, dtsum_ptr, Dm, L, batch, opaque_zero,
                               n_chunks, seg_chunks, n_segs, n_blocks, seg_blocks, part_stride, S, P,
                               su_b, su_d, su_l, sdt_b, sdt_d, sdt_l, sz_b, sz_d, sz_l, sg_b, sg_d, sg_l,
                               so_s, so_b, so_d, so_l, sB_b, sB_n, sB_l, sC_b, sC_n, sC_l,
                               N: gl.constexpr, NS: gl.constexpr, BLOCK_D: gl.constexpr, G: gl.constexpr,
                               CHUNK: gl.constexpr, STAGES: gl.constexpr, HAS_D: gl.constexpr, HAS_Z: gl.constexpr,
                               HAS_BIAS: gl.constexpr, SOFTPLUS: gl.constexpr, MODE: gl.constexpr,
                               HAS_DLAST: gl.constexpr, VECTOR: gl.constexpr, PAIRED: gl.constexpr):
        """``scan_kernels._scan_bwd_kernel`` (same arguments; G, STAGES, VECTOR and scratch_ptr unused): the
        adjoint of every window of a segment from the last, each window's states recomputed into shared memory
        from the state entering it (``ckpt_ptr``, every CHUNK steps)."""
        TILE: gl.constexpr = _tile_layout(NS, BLOCK_D)
        CHANNELS: gl.constexpr = gl.SliceLayout(0, TILE)  # per-channel vectors; sums over the states
        STATES: gl.constexpr = gl.SliceLayout(1, TILE)  # per-state vectors; sums over the channels
        pid_e = gl.program_id(0)
        if PAIRED:
            direction = pid_e // batch
            pid_b = pid_e - direction * batch
        else:
            direction = 0
            pid_b = pid_e
        pid_d = gl.program_id(1)
        pid_2 = gl.program_id(2)  # (segment, split) pairs
        seg = pid_2 // (N // NS)
        pid_s = pid_2 % (N // NS)
        d = pid_d * BLOCK_D + gl.arange(0, BLOCK_D, layout=CHANNELS)
        dmask = d < Dm
        n = pid_s * NS + gl.arange(0, NS, layout=STATES)
        cell = n[:, None] * Dm + d[None, :]  # offsets into an (N, d) state
        tile_mask = (n[:, None] < N) & dmask[None, :]
        A = gl.load(A_ptr + direction * N * Dm + cell, mask=tile_mask, other=0.0).to(gl.float32) * 1.4426950408889634
        state = pid_e * N * Dm + cell
        if HAS_D:  # the D·u term belongs to split 0
            Dv = gl.load(D_ptr + direction * Dm + d, mask=dmask & (pid_s == 0), other=0.0).to(gl.float32)
        else:
            Dv = gl.zeros([BLOCK_D], gl.float32, CHANNELS)
        if HAS_BIAS:
            bias = gl.load(bias_ptr + direction * Dm + d, mask=dmask, other=0.0).to(gl.float32)
        else:
            bias = gl.zeros([BLOCK_D], gl.float32, CHANNELS)
        if PAIRED:
            u_ptr = gl.where(direction == 0, u_ptr, u2_ptr)
            dt_ptr = gl.where(direction == 0, dt_ptr, dt2_ptr)
            B_ptr = gl.where(direction == 0, B_ptr, B2_ptr)
            C_ptr = gl.where(direction == 0, C_ptr, C2_ptr)
        u_row, dt_row, z_row = pid_b * su_b + d * su_d, pid_b * sdt_b + d * sdt_d, pid_b * sz_b + d * sz_d
        g_row, o_row = pid_b * sg_b + d * sg_d, pid_s * so_s + pid_e * so_b + d * so_d
        B_row, C_row = pid_b * sB_b + n * sB_n, pid_b * sC_b + n * sC_n
        brow = pid_e * N * L + n  # dB, dC: (directions x b, L, N), the states fastest
        flat: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [1, 0])
        window = gl.allocate_shared_memory(gl.float32, [CHUNK, NS, BLOCK_D], flat)
        # each step's Δ after softplus, kept from the recompute for the adjoint
        deltas = gl.allocate_shared_memory(gl.float32, [CHUNK, BLOCK_D], gl.SwizzledSharedLayout(1, 1, 1, [0]))
        if HAS_DLAST:
            g = gl.load(dlast_ptr + state, mask=tile_mask, other=0.0)
        else:
            g = gl.zeros([NS, BLOCK_D], gl.float32, TILE)
        g = _carried_adjoint(g, ends_ptr, dtsum_ptr, A, state, pid_e, d, dmask, tile_mask, Dm, n_blocks,
                             n_blocks - 1, n_blocks - (seg + 1) * seg_blocks, N)
        dA = gl.zeros([NS, BLOCK_D], gl.float32, TILE)
        dD = gl.zeros([BLOCK_D], gl.float32, CHANNELS)
        dbias = gl.zeros([BLOCK_D], gl.float32, CHANNELS)
        last_chunk = gl.minimum(n_chunks, (seg + 1) * seg_chunks) - 1
        for ci in range(last_chunk + 1 - seg * seg_chunks):
            c = last_chunk - ci
            t0 = c * CHUNK
            steps = gl.minimum(CHUNK, L - t0)
            h = gl.load(ckpt_ptr + state + (pid_e * (n_chunks - 1) + c) * N * Dm, mask=tile_mask, other=0.0)
            # the window's states, forwards; the next step's loads issued before this step's arithmetic
            t = _position(t0, direction, L, S, P, MODE, PAIRED)
            u = gl.load(u_ptr + u_row + t * su_l, mask=dmask, other=0.0).to(gl.float32)
            raw = gl.load(dt_ptr + dt_row + t * sdt_l, mask=dmask, other=0.0).to(gl.float32)
            Bt = gl.load(B_ptr + B_row + t * sB_l).to(gl.float32)
            for k in range(steps):
                t_next = _position(t0 + gl.minimum(k + 1, steps - 1), direction, L, S, P, MODE, PAIRED)
                u_next = gl.load(u_ptr + u_row + t_next * su_l, mask=dmask, other=0.0).to(gl.float32)
                raw_next = gl.load(dt_ptr + dt_row + t_next * sdt_l, mask=dmask, other=0.0).to(gl.float32)
                B_next = gl.load(B_ptr + B_row + t_next * sB_l).to(gl.float32)
                dt = raw + bias
                if SOFTPLUS:
                    dt = _softplus(dt, SOFTPLUS)
                h = gl.exp2(dt[None, :] * A) * h + Bt[:, None] * (dt * u)[None, :]
                window.index(k).store(h)
                deltas.index(k).store(dt)
                u, raw, Bt = u_next, raw_next, B_next
            # a lane may read a Δ that another lane of its warp stored (the per-channel row is held by the 4 lanes
            # of a channel, one of which stores it): a barrier a window orders them, as one after the adjoint
            # orders its reads before the next window's stores
            _barrier()
            # the adjoint, backwards through the window
            t = _position(t0 + steps - 1, direction, L, S, P, MODE, PAIRED)
            u, raw, Bt, Ct, z, go = _step_inputs(u_ptr, dt_ptr, B_ptr, C_ptr, z_ptr, dout_ptr, u_row, dt_row, B_row,
                                                 C_row, z_row, g_row, t, su_l, sdt_l, sB_l, sC_l, sz_l, sg_l, dmask,
                                                 HAS_Z)
            for kk in range(steps):
                k = steps - 1 - kk
                t_next = _position(t0 + gl.maximum(k - 1, 0), direction, L, S, P, MODE, PAIRED)
                u_n, raw_n, B_n, C_n, z_n, go_n = _step_inputs(u_ptr, dt_ptr, B_ptr, C_ptr, z_ptr, dout_ptr, u_row,
                                                               dt_row, B_row, C_row, z_row, g_row, t_next, su_l, sdt_l,
                                                               sB_l, sC_l, sz_l, sg_l, dmask, HAS_Z)
                dt = deltas.index(k).load(CHANNELS)
                h_t = window.index(k).load(TILE)
                if HAS_Z:
                    sg = 1.0 / (1.0 + gl.exp2(-1.4426950408889634 * z))
                    y = gl.sum(h_t * Ct[:, None], axis=0) + Dv * u
                    dz = go * y * sg * (1.0 + z * (1.0 - sg))
                    gl.store(dz_ptr + o_row + t * so_l, dz.to(dz_ptr.dtype.element_ty), mask=dmask)
                    dy = go * z * sg
                else:
                    dy = go
                a = gl.exp2(dt[None, :] * A)
                dtu = dt * u
                b = Bt[:, None] * dtu[None, :]
                g = g + Ct[:, None] * dy[None, :]
                gB = gl.sum(g * Bt[:, None], axis=0)
                # a_t h_{t-1} = h_t - b_t: no second read for the previous state
                g_a_hprev = g * (h_t - b)
                # A (scaled by log2 e for exp2) stands in for the natural A; the factor ln 2 once per channel
                ddt = gB * u + 0.6931471805599453 * gl.sum(A * g_a_hprev, axis=0)
                dA += dt[None, :] * g_a_hprev
                dD += dy * u * (pid_s == 0)
                du = gB * dt + Dv * dy
                gl.store(du_ptr + o_row + t * so_l, du.to(du_ptr.dtype.element_ty), mask=dmask)
                # this block's shares of dB and dC (channels past Dm add zeros: their loads were masked)
                gl.store(dB_ptr + pid_d * part_stride + brow + t * N, gl.sum(g * dtu[None, :], axis=1))
                gl.store(dC_ptr + pid_d * part_stride + brow + t * N, gl.sum(h_t * dy[None, :], axis=1))
                if SOFTPLUS:
                    ddt = ddt / (1.0 + gl.exp2(-1.4426950408889634 * (raw + bias)))
                dbias += ddt
                gl.store(ddt_ptr + o_row + t * so_l, ddt.to(ddt_ptr.dtype.element_ty), mask=dmask)
                g = g * a
                t = t_next
                u, raw, Bt, Ct, z, go = u_n, raw_n, B_n, C_n, z_n, go_n
            _barrier()
        # the partial sums, stored as ``_scan_bwd_kernel`` stores them
        gl.store(dA_ptr + state + (direction * (n_segs - 1) + seg) * batch * N * Dm, dA, mask=tile_mask)
        parts = pid_e + (direction * (gl.num_programs(2) - 1) + pid_2) * batch
        gl.store(dD_ptr + parts * Dm + d, dD, mask=dmask)
        gl.store(dbias_ptr + parts * Dm + d, dbias, mask=dmask)
else:
    _scan_bwd_gluon_kernel = None
