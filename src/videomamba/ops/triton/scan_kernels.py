"""The selective scan's kernels (``ops.triton.scan`` launches them): the segment summaries, the forward
with its checkpoints, the backward's window entries, and the backward."""

from __future__ import annotations

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - triton ships with CUDA builds of torch
    triton = None

if triton is not None:
    from .language import (_carried_in, _direction_inputs, _load_f32, _of_direction, _per_channel, _per_state,
                           _position, _sequential_prologue, _softplus, _state_part, _state_step, _store_channels, _sum_channels,
                           _sum_states)

    @triton.jit(do_not_specialize=["opaque_zero"])
    def _segment_fwd_kernel(u_ptr, u2_ptr, dt_ptr, dt2_ptr, A_ptr, B_ptr, B2_ptr, bias_ptr, ends_ptr, dtsum_ptr,
                            Dm, L, batch, opaque_zero, block_len, n_blocks, S, P, su_b, su_d, su_l, sdt_b, sdt_d,
                            sdt_l, sB_b, sB_n, sB_l,
                            N: tl.constexpr, NS: tl.constexpr, BLOCK_D: tl.constexpr, G: tl.constexpr,
                            STAGES: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, MODE: tl.constexpr,
                            VECTOR: tl.constexpr, PAIRED: tl.constexpr):
        """Segment-parallel forward, first pass: each summary block of ``block_len`` steps before the last
        segment runs from a zero state and stores its end state and Σ Δ over its steps (the summary
        ``_carried_in`` folds). Blocks are shorter than segments: more programs, each shorter."""
        pid_e, pid_b, direction, pid_d, blk, pid_s, d, dmask, n, state, A, Dv, bias = _sequential_prologue(
            A_ptr, bias_ptr, bias_ptr, Dm, batch, opaque_zero, N, NS, BLOCK_D, G, False, HAS_BIAS, VECTOR, PAIRED)
        u_ptr = _of_direction(direction, u_ptr, u2_ptr, PAIRED)
        dt_ptr = _of_direction(direction, dt_ptr, dt2_ptr, PAIRED)
        B_ptr = _of_direction(direction, B_ptr, B2_ptr, PAIRED)
        u_row, dt_row, B_row = pid_b * su_b + d * su_d, pid_b * sdt_b + d * sdt_d, pid_b * sB_b + n * sB_n
        t0 = blk * block_len
        h = tl.zeros((NS, G, BLOCK_D // G), tl.float32)
        dtsum = tl.zeros((G, BLOCK_D // G), tl.float32)
        for k in tl.range(0, tl.minimum(block_len, L - t0), num_stages=STAGES):
            h, dt, _ = _state_step(h, u_ptr, dt_ptr, B_ptr, u_row, dt_row, B_row,
                                   _position(t0 + k, direction, L, S, P, MODE, PAIRED), su_l, sdt_l, sB_l, A, bias,
                                   dmask, SOFTPLUS)
            dtsum += dt
        tl.store(ends_ptr + state + (pid_e * (n_blocks - 1) + blk) * N * Dm, h, mask=_per_channel(dmask))
        tl.store(dtsum_ptr + (pid_e * n_blocks + blk) * Dm + d, dtsum, mask=dmask & (pid_s == 0))

    @triton.jit(do_not_specialize=["opaque_zero"])
    def _segment_bwd_kernel(dt_ptr, dt2_ptr, A_ptr, C_ptr, C2_ptr, z_ptr, bias_ptr, dout_ptr, ends_ptr, dtsum_ptr,
                            Dm, L, batch, opaque_zero, block_len, n_blocks, first_block, S, P, sdt_b, sdt_d,
                            sdt_l, sz_b, sz_d, sz_l, sg_b, sg_d, sg_l, sC_b, sC_n, sC_l,
                            N: tl.constexpr, NS: tl.constexpr, BLOCK_D: tl.constexpr, G: tl.constexpr,
                            STAGES: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
                            MODE: tl.constexpr, VECTOR: tl.constexpr, PAIRED: tl.constexpr):
        """Segment-parallel backward, first pass: each summary block from ``first_block`` on (those after
        the first segment) runs the adjoint backwards from zero through its steps and stores the adjoint
        it hands to the state before it, and Σ Δ."""
        pid_e, pid_b, direction, pid_d, blk, pid_s, d, dmask, n, state, A, Dv, bias = _sequential_prologue(
            A_ptr, bias_ptr, bias_ptr, Dm, batch, opaque_zero, N, NS, BLOCK_D, G, False, HAS_BIAS, VECTOR, PAIRED)
        dt_ptr = _of_direction(direction, dt_ptr, dt2_ptr, PAIRED)
        C_ptr = _of_direction(direction, C_ptr, C2_ptr, PAIRED)
        blk += first_block
        dt_row, z_row, g_row = pid_b * sdt_b + d * sdt_d, pid_b * sz_b + d * sz_d, pid_b * sg_b + d * sg_d
        C_row = pid_b * sC_b + n * sC_n
        t0 = blk * block_len
        steps = tl.minimum(block_len, L - t0)
        g = tl.zeros((NS, G, BLOCK_D // G), tl.float32)
        dtsum = tl.zeros((G, BLOCK_D // G), tl.float32)
        for kk in tl.range(0, steps, num_stages=STAGES):
            t = _position(t0 + steps - 1 - kk, direction, L, S, P, MODE, PAIRED)
            dt = _load_f32(dt_ptr, dt_row + t * sdt_l, dmask) + bias
            if SOFTPLUS:
                dt = _softplus(dt, SOFTPLUS)
            Ct = _load_f32(C_ptr, C_row + t * sC_l, None)
            dy = _load_f32(dout_ptr, g_row + t * sg_l, dmask)
            if HAS_Z:
                z = _load_f32(z_ptr, z_row + t * sz_l, dmask)
                dy = dy * z * tl.sigmoid(z)
            g = (g + _per_state(Ct) * _per_channel(dy)) * tl.exp2(_per_channel(dt) * A)
            dtsum += dt
        tl.store(ends_ptr + state + (pid_e * (n_blocks - 1) + blk) * N * Dm, g, mask=_per_channel(dmask))
        tl.store(dtsum_ptr + (pid_e * n_blocks + blk) * Dm + d, dtsum, mask=dmask & (pid_s == 0))

    @triton.jit
    def _output_step(h, u_ptr, dt_ptr, B_ptr, C_ptr, z_ptr, out_ptr, u_row, dt_row, B_row, C_row, z_row, o_row, tm,
                     su_l, sdt_l, sB_l, sC_l, sz_l, so_l, A, bias, Dv, dmask, NS: tl.constexpr, HAS_Z: tl.constexpr,
                     SOFTPLUS: tl.constexpr):
        """One step of the forward at memory position ``tm``: the state, and the output stored (gated with z)."""
        h, dt, u = _state_step(h, u_ptr, dt_ptr, B_ptr, u_row, dt_row, B_row, tm, su_l, sdt_l, sB_l, A, bias, dmask,
                               SOFTPLUS)
        Ct = _load_f32(C_ptr, C_row + tm * sC_l, None)
        y = _sum_states(h * _per_state(Ct)) + Dv * u
        if HAS_Z:
            z = _load_f32(z_ptr, z_row + tm * sz_l, dmask)
            y = y * z * tl.sigmoid(z)
        _store_channels(out_ptr, o_row + tm * so_l, y, dmask, NS)
        return h

    @triton.jit(do_not_specialize=["opaque_zero"])
    def _scan_fwd_kernel(u_ptr, u2_ptr, dt_ptr, dt2_ptr, A_ptr, B_ptr, B2_ptr, C_ptr, C2_ptr, D_ptr, z_ptr, bias_ptr,
                         out_ptr, last_ptr, ckpt_ptr, ends_ptr, dtsum_ptr, Dm, L, batch, opaque_zero, n_chunks,
                         seg_chunks, n_segs, n_blocks, seg_blocks, S, P,
                         su_b, su_d, su_l, sdt_b, sdt_d, sdt_l, sz_b, sz_d, sz_l, so_s, so_b, so_d, so_l,
                         sB_b, sB_n, sB_l, sC_b, sC_n, sC_l,
                         N: tl.constexpr, NS: tl.constexpr, BLOCK_D: tl.constexpr, G: tl.constexpr,
                         CHUNK: tl.constexpr, STAGES: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
                         HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, MODE: tl.constexpr, VECTOR: tl.constexpr,
                         ONE_LOOP: tl.constexpr, PAIRED: tl.constexpr, CHECKPOINTS: tl.constexpr):
        pid_e, pid_b, direction, pid_d, seg, pid_s, d, dmask, n, state, A, Dv, bias = _sequential_prologue(
            A_ptr, D_ptr, bias_ptr, Dm, batch, opaque_zero, N, NS, BLOCK_D, G, HAS_D, HAS_BIAS, VECTOR, PAIRED)
        u_ptr, dt_ptr, B_ptr, C_ptr = _direction_inputs(direction, u_ptr, u2_ptr, dt_ptr, dt2_ptr, B_ptr, B2_ptr,
                                                        C_ptr, C2_ptr, PAIRED)
        u_row, dt_row, z_row = pid_b * su_b + d * su_d, pid_b * sdt_b + d * sdt_d, pid_b * sz_b + d * sz_d
        o_row = pid_s * so_s + pid_e * so_b + d * so_d  # a split's partial output: y·silu(z) is linear in y
        B_row, C_row = pid_b * sB_b + n * sB_n, pid_b * sC_b + n * sC_n
        # the state entering this segment: the summaries of the blocks before it (first pass) folded in
        h = _carried_in(tl.zeros((NS, G, BLOCK_D // G), tl.float32), ends_ptr, dtsum_ptr, A, state, pid_e, d, dmask,
                        Dm, n_blocks, 0, seg * seg_blocks, N, 1)
        if ONE_LOOP:
            # one loop over the segment's steps, the checkpoints stored by a predicated store at every chunk's
            # first step: a loop per chunk of a few steps (``SHORT_CHUNK``) would refill the software pipeline
            # (below) every few steps. Not for long chunks: with bf16 inputs this loop made the forward kernel
            # slower in the 32-frame model (docs/benchmarks.md)
            ckpt = ckpt_ptr + state + (pid_e * (n_chunks - 1)) * N * Dm
            for step in tl.range(seg * seg_chunks * CHUNK, tl.minimum(L, (seg + 1) * seg_chunks * CHUNK),
                                 num_stages=STAGES):
                if CHECKPOINTS:
                    tl.store(ckpt + (step // CHUNK) * N * Dm, h, mask=_per_channel(dmask) & (step % CHUNK == 0))
                h = _output_step(h, u_ptr, dt_ptr, B_ptr, C_ptr, z_ptr, out_ptr, u_row, dt_row, B_row, C_row, z_row,
                                 o_row, _position(step, direction, L, S, P, MODE, PAIRED), su_l, sdt_l, sB_l, sC_l,
                                 sz_l, so_l, A, bias, Dv, dmask, NS, HAS_Z, SOFTPLUS)
        else:
            for c in range(seg * seg_chunks, tl.minimum(n_chunks, (seg + 1) * seg_chunks)):
                if CHECKPOINTS:
                    tl.store(ckpt_ptr + state + (pid_e * (n_chunks - 1) + c) * N * Dm, h, mask=_per_channel(dmask))
                t0 = c * CHUNK
                # num_stages on the inner range: the loads of the next steps are issued ahead (software
                # pipelining); their addresses depend on the step only, not on the state
                for k in tl.range(0, tl.minimum(CHUNK, L - t0), num_stages=STAGES):
                    h = _output_step(h, u_ptr, dt_ptr, B_ptr, C_ptr, z_ptr, out_ptr, u_row, dt_row, B_row, C_row,
                                     z_row, o_row, _position(t0 + k, direction, L, S, P, MODE, PAIRED), su_l, sdt_l,
                                     sB_l, sC_l, sz_l, so_l, A, bias, Dv, dmask, NS, HAS_Z, SOFTPLUS)
        tl.store(last_ptr + state, h, mask=_per_channel(dmask) & (seg == n_segs - 1))

    @triton.jit(do_not_specialize=["opaque_zero"])
    def _window_entries_kernel(u_ptr, u2_ptr, dt_ptr, dt2_ptr, A_ptr, B_ptr, B2_ptr, bias_ptr, ckpt_ptr, entries_ptr,
                               Dm, L, batch, opaque_zero, n_chunks, n_windows, S, P, su_b, su_d, su_l, sdt_b, sdt_d,
                               sdt_l, sB_b, sB_n, sB_l,
                               N: tl.constexpr, NS: tl.constexpr, BLOCK_D: tl.constexpr, G: tl.constexpr,
                               CHUNK: tl.constexpr, WINDOW: tl.constexpr, STAGES: tl.constexpr, HAS_BIAS: tl.constexpr,
                               SOFTPLUS: tl.constexpr, MODE: tl.constexpr, VECTOR: tl.constexpr, PAIRED: tl.constexpr):
        """The state entering every WINDOW steps, (b, L / WINDOW, N, d), from the forward's checkpoints
        every CHUNK steps: the backward then recomputes WINDOW states at a time. One program per
        (batch, block of channels, chunk, state split): the chunks are independent given their
        checkpoints, so this pass runs at full occupancy where the backward's own programs are few."""
        pid_e, pid_b, direction, pid_d, c, pid_s, d, dmask, n, state, A, Dv, bias = _sequential_prologue(
            A_ptr, bias_ptr, bias_ptr, Dm, batch, opaque_zero, N, NS, BLOCK_D, G, False, HAS_BIAS, VECTOR, PAIRED)
        u_ptr = _of_direction(direction, u_ptr, u2_ptr, PAIRED)
        dt_ptr = _of_direction(direction, dt_ptr, dt2_ptr, PAIRED)
        B_ptr = _of_direction(direction, B_ptr, B2_ptr, PAIRED)
        u_row, dt_row, B_row = pid_b * su_b + d * su_d, pid_b * sdt_b + d * sdt_d, pid_b * sB_b + n * sB_n
        h = tl.load(ckpt_ptr + state + (pid_e * (n_chunks - 1) + c) * N * Dm, mask=_per_channel(dmask), other=0.0)
        first = c * (CHUNK // WINDOW)
        last = tl.minimum(n_windows, first + CHUNK // WINDOW)
        for w in range(first, last):
            tl.store(entries_ptr + state + (pid_e * (n_windows - 1) + w) * N * Dm, h, mask=_per_channel(dmask))
            end = tl.where(w + 1 < last, (w + 1) * WINDOW, w * WINDOW)  # the chunk's last window: nothing to carry
            for k in tl.range(w * WINDOW, end, num_stages=STAGES):
                h, _, _ = _state_step(h, u_ptr, dt_ptr, B_ptr, u_row, dt_row, B_row,
                                      _position(k, direction, L, S, P, MODE, PAIRED), su_l, sdt_l, sB_l, A, bias,
                                      dmask, SOFTPLUS)

    @triton.jit(do_not_specialize=["opaque_zero"])
    def _scan_bwd_kernel(u_ptr, u2_ptr, dt_ptr, dt2_ptr, A_ptr, B_ptr, B2_ptr, C_ptr, C2_ptr, D_ptr, z_ptr, bias_ptr,
                         ckpt_ptr, dout_ptr, dlast_ptr, scratch_ptr, du_ptr, ddt_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr,
                         dz_ptr, dbias_ptr, ends_ptr, dtsum_ptr, Dm, L, batch, opaque_zero, n_chunks, seg_chunks,
                         n_segs, n_blocks, seg_blocks, part_stride, S, P,
                         su_b, su_d, su_l, sdt_b, sdt_d, sdt_l, sz_b, sz_d, sz_l, sg_b, sg_d, sg_l,
                         so_s, so_b, so_d, so_l, sB_b, sB_n, sB_l, sC_b, sC_n, sC_l,
                         N: tl.constexpr, NS: tl.constexpr, BLOCK_D: tl.constexpr, G: tl.constexpr,
                         CHUNK: tl.constexpr, STAGES: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
                         HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, MODE: tl.constexpr,
                         HAS_DLAST: tl.constexpr, VECTOR: tl.constexpr,
                         PAIRED: tl.constexpr):
        pid_e, pid_b, direction, pid_d, seg, pid_s, d, dmask, n, state, A, Dv, bias = _sequential_prologue(
            A_ptr, D_ptr, bias_ptr, Dm, batch, opaque_zero, N, NS, BLOCK_D, G, HAS_D, HAS_BIAS, VECTOR, PAIRED)
        u_ptr, dt_ptr, B_ptr, C_ptr = _direction_inputs(direction, u_ptr, u2_ptr, dt_ptr, dt2_ptr, B_ptr, B2_ptr,
                                                        C_ptr, C2_ptr, PAIRED)
        u_row, dt_row, z_row = pid_b * su_b + d * su_d, pid_b * sdt_b + d * sdt_d, pid_b * sz_b + d * sz_d
        # dout (shared by the directions); the gradients we write (a split's partial du, ddelta, dz: each is
        # linear in its sums), per direction
        g_row, o_row = pid_b * sg_b + d * sg_d, pid_s * so_s + pid_e * so_b + d * so_d
        B_row, C_row = pid_b * sB_b + n * sB_n, pid_b * sC_b + n * sC_n
        # dB, dC: (directions x b, L, N) in memory, the states fastest, so that each step's sums over the channels
        # land in one 64-byte run (in (b, N, L) they were 16 scattered words: 16 sectors of L2 traffic for one)
        brow = pid_e * N * L + n
        # a program's scratch: the window's states, each step's tile in the state's order
        pid_2 = tl.program_id(2)  # (segment, split) pairs
        scratch = scratch_ptr + ((pid_e * tl.num_programs(1) + pid_d) * tl.num_programs(2) + pid_2) \
            * CHUNK * BLOCK_D * NS
        tile = _per_state(tl.arange(0, NS)) * BLOCK_D + _per_channel(d - pid_d * BLOCK_D)  # into (NS, BLOCK_D)
        # the adjoint entering this segment's end: dlast and the summaries of the blocks after it folded in
        if HAS_DLAST:
            g = tl.load(dlast_ptr + state, mask=_per_channel(dmask), other=0.0)
        else:  # the last state's gradient is zero (unused, as in a model)
            g = tl.zeros((NS, G, BLOCK_D // G), tl.float32)
        g = _carried_in(g, ends_ptr, dtsum_ptr, A, state, pid_e, d, dmask, Dm, n_blocks, n_blocks - 1,
                        n_blocks - (seg + 1) * seg_blocks, N, -1)
        dA = tl.zeros((NS, G, BLOCK_D // G), tl.float32)
        # D in the layout of the sums over the states, so that D·dy and dD are computed there
        Dv = _sum_states(_per_channel(Dv) * (_per_state(tl.arange(0, NS)) == 0))
        dD = tl.zeros((G, BLOCK_D // G), tl.float32)
        dbias = tl.zeros((G, BLOCK_D // G), tl.float32)
        last_chunk = tl.minimum(n_chunks, (seg + 1) * seg_chunks) - 1
        for ci in range(last_chunk + 1 - seg * seg_chunks):
            c = last_chunk - ci
            t0 = c * CHUNK
            steps = tl.minimum(CHUNK, L - t0)
            h = tl.load(ckpt_ptr + state + (pid_e * (n_chunks - 1) + c) * N * Dm, mask=_per_channel(dmask), other=0.0)
            for k in tl.range(0, steps, num_stages=STAGES):  # recompute the chunk's states
                h, _, _ = _state_step(h, u_ptr, dt_ptr, B_ptr, u_row, dt_row, B_row,
                                      _position(t0 + k, direction, L, S, P, MODE, PAIRED), su_l, sdt_l, sB_l, A, bias,
                                      dmask, SOFTPLUS)
                tl.store(scratch + k * BLOCK_D * NS + tile, h)
            for kk in tl.range(0, steps, num_stages=STAGES):  # the adjoint, backwards through the chunk
                k = steps - 1 - kk
                t = _position(t0 + k, direction, L, S, P, MODE, PAIRED)
                u = _load_f32(u_ptr, u_row + t * su_l, dmask)
                raw = _load_f32(dt_ptr, dt_row + t * sdt_l, dmask) + bias
                dt = _softplus(raw, SOFTPLUS) if SOFTPLUS else raw
                Bt = _per_state(_load_f32(B_ptr, B_row + t * sB_l, None))
                Ct = _per_state(_load_f32(C_ptr, C_row + t * sC_l, None))
                h_t = tl.load(scratch + k * BLOCK_D * NS + tile)
                go = _load_f32(dout_ptr, g_row + t * sg_l, dmask)
                if HAS_Z:
                    z = _load_f32(z_ptr, z_row + t * sz_l, dmask)
                    sg = tl.sigmoid(z)
                    y = _sum_states(h_t * Ct) + Dv * u
                    _store_channels(dz_ptr, o_row + t * so_l, go * y * sg * (1.0 + z * (1.0 - sg)), dmask, NS)
                    dy = go * z * sg
                else:
                    dy = go
                a = tl.exp2(_per_channel(dt) * A)
                b = Bt * _per_channel(dt * u)
                g = g + Ct * _per_channel(dy)
                gB = _sum_states(g * Bt)
                # a_t h_{t-1} = h_t - b_t: no second scratch read for the previous state
                g_a_hprev = g * (h_t - b)
                # A (scaled by log2 e for exp2) stands in for the natural A: one tile fewer in registers, and
                # the factor ln 2 is applied once per channel
                ddt = gB * u + 0.6931471805599453 * _sum_states(A * g_a_hprev)
                dA += _per_channel(dt) * g_a_hprev
                dD += dy * u * (pid_s == 0)
                _store_channels(du_ptr, o_row + t * so_l, gB * dt + Dv * dy, dmask, NS)
                # this block's shares of dB and dC; channels past Dm add zeros (their loads were masked, so
                # their u, the output gradient, g and h are zero)
                dB_t = _sum_channels(g * _per_channel(dt * u), VECTOR)
                dC_t = _sum_channels(h_t * _per_channel(dy), VECTOR)
                # this block's partial sums; the blocks are added afterwards
                tl.store(dB_ptr + pid_d * part_stride + brow + t * N, dB_t)
                tl.store(dC_ptr + pid_d * part_stride + brow + t * N, dC_t)
                if SOFTPLUS:
                    ddt = ddt * tl.sigmoid(raw)
                dbias += ddt
                _store_channels(ddt_ptr, o_row + t * so_l, ddt, dmask, NS)
                g = g * a
        # partial sums per (direction, segment, batch) for dA and per (direction, segment and split, batch) for
        # dD and dbias, each direction's parts together: ``_sum_parts_kernel`` adds them afterwards
        tl.store(dA_ptr + state + (direction * (n_segs - 1) + seg) * batch * N * Dm, dA, mask=_per_channel(dmask))
        parts = pid_e + (direction * (tl.num_programs(2) - 1) + pid_2) * batch
        _store_channels(dD_ptr, parts * Dm + d, dD, dmask, NS)
        _store_channels(dbias_ptr, parts * Dm + d, dbias, dmask, NS)

    @triton.jit
    def _linear_combine(a_early, b_early, a_late, b_late):
        """Two spans of h ← a·h + b, the earlier first: one span."""
        return a_early * a_late, a_late * b_early + b_late

    @triton.jit
    def _window_part(h, A, B_ptr, C_ptr, B_row, C_row, t, valid, sB_l, sC_l, dt, dtu, first_row, last_row):
        """One part of the states through a window: (Σ over the part's states of C·h at each step, (WINDOW, G,
        BLOCK_D // G); the part's state after the window)."""
        Bw = tl.load(B_ptr + B_row[None, :] + t[:, None] * sB_l, mask=valid[:, None], other=0.0)[:, :, None, None]
        Cw = tl.load(C_ptr + C_row[None, :] + t[:, None] * sC_l, mask=valid[:, None], other=0.0)[:, :, None, None]
        a = tl.exp2(dt[:, None] * A[None])
        b = Bw * dtu[:, None] + tl.where(first_row, a * h[None], 0.0)
        _, hw = tl.associative_scan((a, b), 0, _linear_combine)
        return tl.sum(hw * Cw, axis=1), tl.sum(tl.where(last_row, hw, 0.0), axis=0)

    @triton.jit(do_not_specialize=["opaque_zero"])
    def _scan_fwd_tile_kernel(u_ptr, u2_ptr, dt_ptr, dt2_ptr, A_ptr, B_ptr, B2_ptr, C_ptr, C2_ptr, D_ptr, z_ptr,
                              bias_ptr, out_ptr, last_ptr, ckpt_ptr, ends_ptr, dtsum_ptr, Dm, L, batch, opaque_zero,
                              n_chunks, seg_chunks, n_segs, n_blocks, seg_blocks, S, P,
                              su_b, su_d, su_l, sdt_b, sdt_d, sdt_l, sz_b, sz_d, sz_l, so_s, so_b, so_d, so_l,
                              sB_b, sB_n, sB_l, sC_b, sC_n, sC_l,
                              N: tl.constexpr, NS: tl.constexpr, BLOCK_D: tl.constexpr, G: tl.constexpr,
                              CHUNK: tl.constexpr, WINDOW: tl.constexpr, STAGES: tl.constexpr, HAS_D: tl.constexpr,
                              HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
                              MODE: tl.constexpr, VECTOR: tl.constexpr, PAIRED: tl.constexpr,
                              CHECKPOINTS: tl.constexpr, PARTS: tl.constexpr):
        """The forward a window at a time: the window's WINDOW steps as one (WINDOW, NS, G, BLOCK_D // G) register
        tile, its states from the state entering it by a scan along the steps (``_linear_combine``), its outputs
        from them at once, the state entering every chunk stored as a checkpoint. Only the scan waits from one
        step to the next: the loads, exps and sums of a window are independent of each other.

        PARTS 2: the NS states go through each window as two tiles of NS / 2, one after the other, their sums
        over states added; half the live tile a program (fewer registers) for the same work."""
        # the states' A and offsets come per part (``_state_part``), not whole from the prologue
        pid_e, pid_b, direction, pid_d, seg, pid_s, d, dmask, _, _, _, Dv, bias = _sequential_prologue(
            A_ptr, D_ptr, bias_ptr, Dm, batch, opaque_zero, N, NS, BLOCK_D, G, HAS_D, HAS_BIAS, VECTOR, PAIRED)
        u_ptr, dt_ptr, B_ptr, C_ptr = _direction_inputs(direction, u_ptr, u2_ptr, dt_ptr, dt2_ptr, B_ptr, B2_ptr,
                                                        C_ptr, C2_ptr, PAIRED)
        u_row, dt_row, z_row = pid_b * su_b + d * su_d, pid_b * sdt_b + d * sdt_d, pid_b * sz_b + d * sz_d
        o_row = pid_s * so_s + pid_e * so_b + d * so_d
        NP: tl.constexpr = NS // PARTS
        n0, A0, state0 = _state_part(A_ptr, pid_e, direction, d, dmask, Dm, pid_s * NS, N, NP)
        B_row0, C_row0 = pid_b * sB_b + n0 * sB_n, pid_b * sC_b + n0 * sC_n
        h0 = _carried_in(tl.zeros((NP, G, BLOCK_D // G), tl.float32), ends_ptr, dtsum_ptr, A0, state0, pid_e, d,
                         dmask, Dm, n_blocks, 0, seg * seg_blocks, N, 1)
        # the second part (PARTS 2; else never used)
        n1, A1, state1 = _state_part(A_ptr, pid_e, direction, d, dmask, Dm, pid_s * NS + (PARTS - 1) * NP, N, NP)
        B_row1, C_row1 = pid_b * sB_b + n1 * sB_n, pid_b * sC_b + n1 * sC_n
        h1 = h0
        if PARTS == 2:
            h1 = _carried_in(tl.zeros((NP, G, BLOCK_D // G), tl.float32), ends_ptr, dtsum_ptr, A1, state1, pid_e, d,
                             dmask, Dm, n_blocks, 0, seg * seg_blocks, N, 1)
        row = tl.arange(0, WINDOW)
        dmask3 = dmask[None]
        first_row, last_row = (row == 0)[:, None, None, None], (row == WINDOW - 1)[:, None, None, None]
        ckpt = ckpt_ptr + (pid_e * (n_chunks - 1)) * N * Dm
        first = seg * seg_chunks * (CHUNK // WINDOW)
        end = tl.minimum(tl.cdiv(L, WINDOW), (seg + 1) * seg_chunks * (CHUNK // WINDOW))
        for w in tl.range(first, end, num_stages=STAGES):
            if CHECKPOINTS:
                at_chunk = _per_channel(dmask) & (w % (CHUNK // WINDOW) == 0)
                tl.store(ckpt + state0 + (w // (CHUNK // WINDOW)) * N * Dm, h0, mask=at_chunk)
                if PARTS == 2:
                    tl.store(ckpt + state1 + (w // (CHUNK // WINDOW)) * N * Dm, h1, mask=at_chunk)
            steps = w * WINDOW + row
            valid = steps < L
            t = _position(tl.minimum(steps, L - 1), direction, L, S, P, MODE, PAIRED)
            t3 = t[:, None, None]
            cmask = valid[:, None, None] & dmask3
            u = _load_f32(u_ptr, u_row[None] + t3 * su_l, cmask)
            dt = _load_f32(dt_ptr, dt_row[None] + t3 * sdt_l, cmask) + bias[None]
            if SOFTPLUS:
                dt = _softplus(dt, SOFTPLUS)
            dt = tl.where(cmask, dt, 0.0)  # rows past the end: a = 1, b = 0, the state carried unchanged
            y, h0 = _window_part(h0, A0, B_ptr, C_ptr, B_row0, C_row0, t, valid, sB_l, sC_l, dt, dt * u, first_row,
                                 last_row)
            if PARTS == 2:
                y1, h1 = _window_part(h1, A1, B_ptr, C_ptr, B_row1, C_row1, t, valid, sB_l, sC_l, dt, dt * u,
                                      first_row, last_row)
                y += y1
            y += Dv[None] * u
            if HAS_Z:
                z = _load_f32(z_ptr, z_row[None] + t3 * sz_l, cmask)
                y = y * z * tl.sigmoid(z)
            tl.store(out_ptr + o_row[None] + t3 * so_l, y, mask=cmask)
        last_part = _per_channel(dmask) & (seg == n_segs - 1)
        tl.store(last_ptr + state0, h0, mask=last_part)
        if PARTS == 2:
            tl.store(last_ptr + state1, h1, mask=last_part)
