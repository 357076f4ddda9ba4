"""Triton building blocks shared by the kernels: fp32 loads of bf16 words, softplus, the scan orders'
positions, and the state tile of a sequential scan program (its layout, channel parameters and steps)."""

from __future__ import annotations

try:
    import triton
    import triton.language as tl
    from triton.language.extra import libdevice
except ImportError:  # pragma: no cover - triton ships with CUDA builds of torch
    triton = None

if triton is not None:

    @triton.jit
    def _softplus(x, SOFTPLUS: tl.constexpr):
        """log(1 + e^x); SOFTPLUS 2: through the GPU's approximate log2 (MUFU.LG2, relative error about
        2^-22) where the accurate log is a 20-instruction polynomial, a tenth of a forward step."""
        if SOFTPLUS == 2:
            return tl.where(x > 20.0, x,
                            0.6931471805599453 * libdevice.fast_log2f(1.0 + tl.exp2(x * 1.4426950408889634)))
        else:
            return tl.where(x > 20.0, x, tl.log(1.0 + tl.exp(x)))

    @triton.jit
    def _load_f32(ptr, offsets, mask):
        """ptr[offsets] as fp32 (0 where ``mask`` is False; no mask: None). bf16 is read as the 4-byte
        words that hold it, each thread taking its half (a bf16 is the top half of its fp32): Triton
        pipelines only loads of at least 4 bytes a thread, and converting bf16 inputs to fp32 copies
        before the kernels cost a pass over each (the wrapper checks the words stay inside the storage)."""
        if ptr.dtype.element_ty == tl.bfloat16:
            words = ptr.to(tl.pointer_type(tl.int32), bitcast=True) + offsets // 2
            if mask is None:
                word = tl.load(words)
            else:
                word = tl.load(words, mask=mask, other=0)
            return ((word >> ((offsets % 2) * 16)) << 16).to(tl.float32, bitcast=True)
        elif mask is None:
            return tl.load(ptr + offsets).to(tl.float32)
        else:
            return tl.load(ptr + offsets, mask=mask, other=0.0).to(tl.float32)

    @triton.jit
    def _frame_patch(q, L, S, P, MODE: tl.constexpr):
        """Modes 2 and 3 on the frames (the positions after the prefix, counted from 0): each frame of S
        tokens reversed, or the frames reversed. Either is its own inverse."""
        frame = q // S
        within = q - frame * S
        if MODE == 2:
            return frame * S + (S - 1 - within)
        else:
            return ((L - P) // S - 1 - frame) * S + within

    @triton.jit
    def _order_position(step, L, S, P, MODE: tl.constexpr):
        """Memory position read at scan step ``step`` (``ops.token_order``): MODE 0 forward, 1 the whole
        sequence reversed, 2 each frame of S tokens reversed (frames in order), 3 the frames reversed
        (each intact); in modes 2 and 3 the P leading tokens (the class token) are read last."""
        if MODE == 0:
            return step
        elif MODE == 1:
            return L - 1 - step
        else:
            return tl.where(step >= L - P, step - (L - P), _frame_patch(step, L, S, P, MODE) + P)

    @triton.jit
    def _order_step(position, L, S, P, MODE: tl.constexpr):
        """The scan step at which MODE reads memory ``position``: the inverse of ``_order_position``."""
        if MODE == 0:
            return position
        elif MODE == 1:
            return L - 1 - position
        else:
            return tl.where(position < P, position + (L - P), _frame_patch(position - P, L, S, P, MODE))

    @triton.jit
    def _position(step, direction, L, S, P, MODE: tl.constexpr, PAIRED: tl.constexpr):
        """Memory position read at scan step ``step`` by a program of ``direction``: one direction reads
        in MODE; PAIRED (both directions of a bidirectional mixer in one launch): direction 0 reads
        forward, direction 1 in MODE."""
        if not PAIRED:
            return _order_position(step, L, S, P, MODE)
        elif MODE == 1:  # one multiply-add: step, or L - 1 - step
            return step + direction * (L - 1 - 2 * step)
        else:
            return tl.where(direction == 0, step, _order_position(step, L, S, P, MODE))

    @triton.jit
    def _per_state(v):
        """A (NS,) vector over the states, shaped to broadcast against an (NS, G, BLOCK_D // G) tile."""
        return v[:, None, None]

    @triton.jit
    def _per_channel(v):
        """A (G, BLOCK_D // G) vector over the channels, shaped to broadcast against a tile."""
        return v[None, :, :]

    @triton.jit
    def _sum_states(tile):
        """A tile's sum over its states: (G, BLOCK_D // G) (the C·h and B·g of every channel)."""
        return tl.sum(tile, axis=0)

    @triton.jit
    def _sum_channels(tile, VECTOR: tl.constexpr):
        """A tile's sum over its channels: (NS,) (a block's share of dB and dC), the channels a thread holds
        added inside it first, so that each shuffle level moves one partial sum per state. With vectorised
        accesses a thread holds consecutive channels (the last axis); with scalar ones, one channel of each
        of the G groups (axis 1). The other order would shuffle every channel a thread holds."""
        if VECTOR:
            return tl.sum(tl.sum(tile, axis=2), axis=1)
        else:
            return tl.sum(tl.sum(tile, axis=1), axis=1)

    @triton.jit
    def _store_channels(ptr, offsets, value, mask, NS: tl.constexpr):
        """ptr[offsets] = value for a per-channel (G, BLOCK_D // G) vector, through a tile-shaped pointer
        whose first state row alone writes. The JIT's coalescing then gives the store the state tile's
        layout (16-byte vectors, 4 channels a thread), the layout the value was computed in; a plain
        (G, BLOCK_D // G) store takes one channel a lane, and every value stored, and whatever it was
        computed from, would cross between the two layouts through shared memory."""
        rows = _per_state(tl.arange(0, NS))
        if ptr.dtype.element_ty.primitive_bitwidth == 16:
            # the same offsets, seen by the compiler as runs of 4 (its contiguity analysis stops at the % 4; the
            # max_contiguous hint does not survive to the layout pass): bf16 is stored 4 channels (8 bytes) a
            # vector, not the 8 that fill 16 bytes, and the tile keeps the layout of its fp32 accesses, 4
            # channels and 4 states a thread, where 16-byte bf16 stores gave it 8 and 2, and more instructions
            # and shuffles a step (``compile_check``)
            offsets = (offsets // 4) * 4 + offsets % 4
        tl.store(ptr + _per_channel(offsets) + 0 * rows, _per_channel(value) + 0.0 * rows,
                 mask=_per_channel(mask) & (rows == 0))

    @triton.jit
    def _sequential_prologue(A_ptr, D_ptr, bias_ptr, Dm, batch, opaque_zero, N: tl.constexpr, NS: tl.constexpr,
                             BLOCK_D: tl.constexpr, G: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
                             VECTOR: tl.constexpr, PAIRED: tl.constexpr):
        """A program's (direction, batch) pair, block of channels, segment, state indices, and the channel
        parameters. A program's states form an (NS, G, BLOCK_D // G) tile: channel ``g * BLOCK_D // G + i`` of
        the block at [:, g, i]; per-channel vectors are (G, BLOCK_D // G). How Triton lays the tile on the
        warp's lanes follows the accesses (``SCAN.vector_access``): with the JIT's 16-byte accesses along the
        channels, 8 lanes across the channels (4 channels a thread) and 4 across the states for G 1; with
        scalar accesses, BLOCK_D // G lanes across the channels and the rest across the states (G 1: whole
        channels per thread, no shuffles for the sums over the states). A is returned pre-scaled by log2 e
        (the kernels use exp2).

        Axis 0 of the grid numbers (direction, batch) pairs, direction-major: ``pid_e`` indexes every
        buffer the kernels own (states, checkpoints, summaries, results: an extended batch of
        directions x batch), ``pid_b`` the inputs of its direction, which the two directions of a
        paired launch share (z, the output gradient) or hold apart (u, Δ, B, C: a pointer each).
        A, D and the bias are stacked per direction: (directions, N, d) and (directions, d).

        Axis 2 of the grid numbers (segment, state split) pairs. The N states may be split over
        N // NS programs (more programs where the batch is small): each owns NS states, and its sums
        over states are partial, added afterwards; the D·u term belongs to split 0 alone."""
        pid_e = tl.program_id(0)
        if PAIRED:
            direction = pid_e // batch
            pid_b = pid_e - direction * batch
        else:  # known to the compiler: one direction's kernels keep their registers
            direction = 0
            pid_b = pid_e
        pid_d = tl.program_id(1)
        seg = tl.program_id(2) // (N // NS)
        pid_s = tl.program_id(2) % (N // NS)
        # VECTOR False: the block's first channel plus a zero the compiler cannot see through
        # (``opaque_zero``, never specialised), so no channel offset is known to be 16-byte aligned and
        # no access is vectorised (``SCAN.vector_access``)
        first = pid_d * BLOCK_D if VECTOR else pid_d * BLOCK_D + opaque_zero
        d = first + tl.arange(0, G)[:, None] * (BLOCK_D // G) + tl.arange(0, BLOCK_D // G)[None, :]
        dmask = d < Dm
        n, A, state = _state_part(A_ptr, pid_e, direction, d, dmask, Dm, pid_s * NS, N, NS)
        Dv = tl.load(D_ptr + direction * Dm + d, mask=dmask & (pid_s == 0), other=0.0).to(tl.float32) if HAS_D \
            else tl.zeros((G, BLOCK_D // G), tl.float32)
        bias = tl.load(bias_ptr + direction * Dm + d, mask=dmask, other=0.0).to(tl.float32) if HAS_BIAS \
            else tl.zeros((G, BLOCK_D // G), tl.float32)
        return pid_e, pid_b, direction, pid_d, seg, pid_s, d, dmask, n, state, A, Dv, bias

    @triton.jit
    def _state_part(A_ptr, pid_e, direction, d, dmask, Dm, first, N: tl.constexpr, NP: tl.constexpr):
        """States ``first`` .. ``first + NP`` of a program's channels: their indices, their A as an (NP, G,
        BLOCK_D // G) tile scaled by log2 e (the kernels use exp2), and their offsets into a (directions x b, N,
        d) state."""
        n = first + tl.arange(0, NP)
        cell = _per_state(n) * Dm + _per_channel(d)  # offsets into an (N, d) state
        A = tl.load(A_ptr + direction * N * Dm + cell, mask=_per_channel(dmask), other=0.0).to(tl.float32)
        return n, A * 1.4426950408889634, pid_e * N * Dm + cell

    @triton.jit
    def _of_direction(direction, first_ptr, second_ptr, PAIRED: tl.constexpr):
        """A program's input of its direction: the first of the pair for direction 0, the second for 1 (a
        single-direction launch passes each tensor twice and takes the first)."""
        if PAIRED:
            return tl.where(direction == 0, first_ptr, second_ptr)
        else:
            return first_ptr

    @triton.jit
    def _direction_inputs(direction, u_ptr, u2_ptr, dt_ptr, dt2_ptr, B_ptr, B2_ptr, C_ptr, C2_ptr,
                          PAIRED: tl.constexpr):
        """A program's u, Δ, B and C: each the first or the second of its pair (``_of_direction``)."""
        return (_of_direction(direction, u_ptr, u2_ptr, PAIRED), _of_direction(direction, dt_ptr, dt2_ptr, PAIRED),
                _of_direction(direction, B_ptr, B2_ptr, PAIRED), _of_direction(direction, C_ptr, C2_ptr, PAIRED))

    @triton.jit
    def _state_step(h, u_ptr, dt_ptr, B_ptr, u_row, dt_row, B_row, t, su_l, sdt_l, sB_l, A, bias, dmask,
                    SOFTPLUS: tl.constexpr):
        """One step of the state recurrence at position t: (h_t, Δ_t, u_t)."""
        u = _load_f32(u_ptr, u_row + t * su_l, dmask)
        dt = _load_f32(dt_ptr, dt_row + t * sdt_l, dmask) + bias
        if SOFTPLUS:
            dt = _softplus(dt, SOFTPLUS)
        Bt = _load_f32(B_ptr, B_row + t * sB_l, None)
        return tl.exp2(_per_channel(dt) * A) * h + _per_state(Bt) * _per_channel(dt * u), dt, u

    @triton.jit
    def _carried_in(h, ends_ptr, dtsum_ptr, A, state, pid_e, d, dmask, Dm, n_blocks, first, count,
                    N: tl.constexpr, STEP: tl.constexpr):
        """Fold ``count`` summary blocks into ``h``, from block ``first`` on, moving by STEP (+1: the
        forward state entering later blocks; -1: the adjoint entering earlier ones). A block's summary
        is what it makes of a zero input (its local end) and its total decay, exp2(A · Σ Δ):
        ``h ← exp2(A · ΣΔ_s) h + end_s``."""
        for i in range(count):
            s = first + i * STEP
            dtsum = tl.load(dtsum_ptr + (pid_e * n_blocks + s) * Dm + d, mask=dmask, other=0.0)
            end = tl.load(ends_ptr + state + (pid_e * (n_blocks - 1) + s) * N * Dm, mask=_per_channel(dmask),
                          other=0.0)
            h = tl.exp2(_per_channel(dtsum) * A) * h + end
        return h
