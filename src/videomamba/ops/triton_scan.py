"""Selective scan in Triton (GPU; runs on the CPU under TRITON_INTERPRET=1 for tests).

One program per (batch, block of BLOCK_D channels, segment of the sequence); the state, an (N, BLOCK_D)
tile with channels fastest (on an H100 4 states of 4 channels a thread, the layout of the JIT's
vectorised accesses: ``VECTOR_ACCESS``, ``CHANNEL_GROUPS``), lives in registers and the loop over a
segment's steps is sequential. The step loops are software-pipelined (``tl.range(num_stages=STAGES)``):
the loads of the next steps, which do not depend on the state, are in flight while a step computes.
softplus(delta + delta_bias), D and the SiLU(z) gate are fused.
u, delta, z, B and C are read in any strides, so the mixer hands over the views a linear layer
produced, (b, L, d) in memory, without copies; bf16 u, delta, z and output gradients are read as
the 4-byte words that hold them (``_load_f32``), other dtypes are converted to fp32 first, in the
same memory order; state and accumulation are fp32. The positions are read in a scan order
(``ops.ScanOrder``: forward, reversed, or per frame), computed per step, and every output is
written where it was read.

Segment-parallel: where batch x channel blocks would leave SMs idle, each sequence is cut into
segments of whole chunks (``SEGMENTS``). A first pass runs every block of SUMMARY_CHUNKS chunks
from a zero state and stores its end and its Σ Δ; each program of the main pass folds the summaries
of the blocks before its segment into its starting state (``_carried_in``), exactly, since h_t is
linear in the state entering a block with the factor exp(A Σ Δ). The backward does the same for the
adjoint, from the end. Alternatively (``N_SPLIT``) the N states are split over several programs (partial sums).

Forward: also stores the state at the start of every CHUNK steps, (b, L / CHUNK, N, d), a CHUNK-th
of what storing every state would cost; the checkpoints are an output of the custom op, saved for
the backward. Backward: a parallel pass turns them into the states entering every BACKWARD_WINDOW
steps (a transient buffer); the main pass walks its segment's windows from the last, recomputes each
window's states into a per-program scratch buffer (WINDOW x N x BLOCK_D, cache-resident), then runs the
adjoint recurrence backwards through it. dB and dC are sums over channels: each
program reduces its BLOCK_D channels on chip and writes the partial sums of its block; one reduction
over the blocks follows (atomic adds across blocks measured slower, docs/benchmarks.md).

Paired (``triton_forward_pair``, ``triton_backward_pair``; the kernels' PAIRED): both directions of a
bidirectional mixer in one launch of each kernel. Grid axis 0 numbers (direction, batch) pairs, every
buffer the kernels own takes a batch of 2 x b, each direction reads its own u, Δ, B, C (a pointer
each) and parameters (stacked), the two share z and the output gradient, and direction 1 reads the
positions in the backward order. One launch holds twice the programs, so batch 8 needs fewer segments
to fill the GPU, and the host issues half the launches. The gate, linear in the scan's output, is
applied once to the two directions' sum by an elementwise kernel (``_pair_gate_fwd_kernel``), and its
backward gives the scan kernels dy = g · silu(z): the paired kernels run without z.
"""

from __future__ import annotations

import functools

import torch

from .token_order import FORWARD, ScanOrder

try:
    import triton
    import triton.language as tl
    from triton.language.extra import libdevice
except ImportError:  # pragma: no cover - triton ships with CUDA builds of torch
    triton = None

LOG2E = 1.4426950408889634

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
    def _sum_channels(tile):
        """A tile's sum over its channels: (NS,) (a block's share of dB and dC); the G groups a thread
        holds are added inside it first, so only BLOCK_D // G lanes are left to shuffle across."""
        return tl.sum(tl.sum(tile, axis=1), axis=1)

    @triton.jit
    def _store_channels(ptr, offsets, value, mask, NS: tl.constexpr, TILE: tl.constexpr):
        """ptr[offsets] = value for a per-channel (G, BLOCK_D // G) vector. TILE: through a tile-shaped
        pointer whose first state row alone writes. The JIT's coalescing then gives the store the state
        tile's layout (16-byte vectors, 4 channels a thread), the layout the value was computed in, where a
        (G, BLOCK_D // G) store takes one channel a lane and every value stored, and whatever it was
        computed from, crosses between the two through shared memory (``TILE_STORES``)."""
        if TILE:
            rows = _per_state(tl.arange(0, NS))
            tl.store(ptr + _per_channel(offsets) + 0 * rows, _per_channel(value) + 0.0 * rows,
                     mask=_per_channel(mask) & (rows == 0))
        else:
            tl.store(ptr + offsets, value, mask=mask)

    @triton.jit
    def _sequential_prologue(A_ptr, D_ptr, bias_ptr, Dm, batch, opaque_zero, N: tl.constexpr, NS: tl.constexpr,
                             BLOCK_D: tl.constexpr, G: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
                             VECTOR: tl.constexpr, PAIRED: tl.constexpr):
        """A program's (direction, batch) pair, block of channels, segment, state indices, and the channel
        parameters. A program's states form an (NS, G, BLOCK_D // G) tile: channel ``g * BLOCK_D // G + i`` of
        the block at [:, g, i]; per-channel vectors are (G, BLOCK_D // G). How Triton lays the tile on the
        warp's lanes follows the accesses (``VECTOR_ACCESS``): with the JIT's 16-byte accesses along the
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
        # no access is vectorised (``VECTOR_ACCESS``)
        first = pid_d * BLOCK_D if VECTOR else pid_d * BLOCK_D + opaque_zero
        d = first + tl.arange(0, G)[:, None] * (BLOCK_D // G) + tl.arange(0, BLOCK_D // G)[None, :]
        dmask = d < Dm
        n = pid_s * NS + tl.arange(0, NS)
        cell = _per_state(n) * Dm + _per_channel(d)  # (NS, G, BLOCK_D // G) offsets into an (N, d) state
        A = tl.load(A_ptr + direction * N * Dm + cell, mask=_per_channel(dmask), other=0.0).to(tl.float32)
        Dv = tl.load(D_ptr + direction * Dm + d, mask=dmask & (pid_s == 0), other=0.0).to(tl.float32) if HAS_D \
            else tl.zeros((G, BLOCK_D // G), tl.float32)
        bias = tl.load(bias_ptr + direction * Dm + d, mask=dmask, other=0.0).to(tl.float32) if HAS_BIAS \
            else tl.zeros((G, BLOCK_D // G), tl.float32)
        state = pid_e * N * Dm + cell  # offsets into (directions x b, N, d)
        return pid_e, pid_b, direction, pid_d, seg, pid_s, d, dmask, n, state, A * 1.4426950408889634, Dv, bias

    @triton.jit
    def _of_direction(direction, first_ptr, second_ptr, PAIRED: tl.constexpr):
        """A program's input of its direction: the first of the pair for direction 0, the second for 1 (a
        single-direction launch passes each tensor twice and takes the first)."""
        if PAIRED:
            return tl.where(direction == 0, first_ptr, second_ptr)
        else:
            return first_ptr

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
                     SOFTPLUS: tl.constexpr, TILE_STORES: tl.constexpr):
        """One step of the forward at memory position ``tm``: the state, and the output stored (gated with z)."""
        h, dt, u = _state_step(h, u_ptr, dt_ptr, B_ptr, u_row, dt_row, B_row, tm, su_l, sdt_l, sB_l, A, bias, dmask,
                               SOFTPLUS)
        Ct = _load_f32(C_ptr, C_row + tm * sC_l, None)
        y = _sum_states(h * _per_state(Ct)) + Dv * u
        if HAS_Z:
            z = _load_f32(z_ptr, z_row + tm * sz_l, dmask)
            y = y * z * tl.sigmoid(z)
        _store_channels(out_ptr, o_row + tm * so_l, y, dmask, NS, TILE_STORES)
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
                         TILE_STORES: tl.constexpr, ONE_LOOP: tl.constexpr, PAIRED: tl.constexpr):
        pid_e, pid_b, direction, pid_d, seg, pid_s, d, dmask, n, state, A, Dv, bias = _sequential_prologue(
            A_ptr, D_ptr, bias_ptr, Dm, batch, opaque_zero, N, NS, BLOCK_D, G, HAS_D, HAS_BIAS, VECTOR, PAIRED)
        u_ptr = _of_direction(direction, u_ptr, u2_ptr, PAIRED)
        dt_ptr = _of_direction(direction, dt_ptr, dt2_ptr, PAIRED)
        B_ptr = _of_direction(direction, B_ptr, B2_ptr, PAIRED)
        C_ptr = _of_direction(direction, C_ptr, C2_ptr, PAIRED)
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
                tl.store(ckpt + (step // CHUNK) * N * Dm, h, mask=_per_channel(dmask) & (step % CHUNK == 0))
                h = _output_step(h, u_ptr, dt_ptr, B_ptr, C_ptr, z_ptr, out_ptr, u_row, dt_row, B_row, C_row, z_row,
                                 o_row, _position(step, direction, L, S, P, MODE, PAIRED), su_l, sdt_l, sB_l, sC_l,
                                 sz_l, so_l, A, bias, Dv, dmask, NS, HAS_Z, SOFTPLUS, TILE_STORES)
        else:
            for c in range(seg * seg_chunks, tl.minimum(n_chunks, (seg + 1) * seg_chunks)):
                tl.store(ckpt_ptr + state + (pid_e * (n_chunks - 1) + c) * N * Dm, h, mask=_per_channel(dmask))
                t0 = c * CHUNK
                # num_stages on the inner range: the loads of the next steps are issued ahead (software
                # pipelining); their addresses depend on the step only, not on the state
                for k in tl.range(0, tl.minimum(CHUNK, L - t0), num_stages=STAGES):
                    h = _output_step(h, u_ptr, dt_ptr, B_ptr, C_ptr, z_ptr, out_ptr, u_row, dt_row, B_row, C_row,
                                     z_row, o_row, _position(t0 + k, direction, L, S, P, MODE, PAIRED), su_l, sdt_l,
                                     sB_l, sC_l, sz_l, so_l, A, bias, Dv, dmask, NS, HAS_Z, SOFTPLUS, TILE_STORES)
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
                         HAS_DLAST: tl.constexpr, VECTOR: tl.constexpr, TILE_STORES: tl.constexpr,
                         PAIRED: tl.constexpr):
        pid_e, pid_b, direction, pid_d, seg, pid_s, d, dmask, n, state, A, Dv, bias = _sequential_prologue(
            A_ptr, D_ptr, bias_ptr, Dm, batch, opaque_zero, N, NS, BLOCK_D, G, HAS_D, HAS_BIAS, VECTOR, PAIRED)
        u_ptr = _of_direction(direction, u_ptr, u2_ptr, PAIRED)
        dt_ptr = _of_direction(direction, dt_ptr, dt2_ptr, PAIRED)
        B_ptr = _of_direction(direction, B_ptr, B2_ptr, PAIRED)
        C_ptr = _of_direction(direction, C_ptr, C2_ptr, PAIRED)
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
        if TILE_STORES:  # D in the layout of the sums over the states, so that D·dy and dD are computed there
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
                    _store_channels(dz_ptr, o_row + t * so_l, go * y * sg * (1.0 + z * (1.0 - sg)), dmask, NS,
                                    TILE_STORES)
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
                _store_channels(du_ptr, o_row + t * so_l, gB * dt + Dv * dy, dmask, NS, TILE_STORES)
                # this block's shares of dB and dC; channels past Dm add zeros (their loads were masked, so
                # their u, the output gradient, g and h are zero)
                dB_t = _sum_channels(g * _per_channel(dt * u))
                dC_t = _sum_channels(h_t * _per_channel(dy))
                # this block's partial sums; the blocks are added afterwards
                tl.store(dB_ptr + pid_d * part_stride + brow + t * N, dB_t)
                tl.store(dC_ptr + pid_d * part_stride + brow + t * N, dC_t)
                if SOFTPLUS:
                    ddt = ddt * tl.sigmoid(raw)
                dbias += ddt
                _store_channels(ddt_ptr, o_row + t * so_l, ddt, dmask, NS, TILE_STORES)
                g = g * a
        # partial sums per (direction, segment, batch) for dA and per (direction, segment and split, batch) for
        # dD and dbias, each direction's parts together: ``_sum_parts_kernel`` adds them afterwards
        tl.store(dA_ptr + state + (direction * (n_segs - 1) + seg) * batch * N * Dm, dA, mask=_per_channel(dmask))
        parts = pid_e + (direction * (tl.num_programs(2) - 1) + pid_2) * batch
        _store_channels(dD_ptr, parts * Dm + d, dD, dmask, NS, TILE_STORES)
        _store_channels(dbias_ptr, parts * Dm + d, dbias, dmask, NS, TILE_STORES)

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


    @triton.jit
    def _pair_gate_fwd_kernel(y_ptr, z_ptr, sum_ptr, out_ptr, batch, Dm, L, sy_b, sy_d, sy_l, sz_b, sz_d, sz_l,
                              so_b, so_d, so_l, BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr):
        """A paired scan's gate, once for both directions: out = (y_0 + y_1) · silu(z) from the directions'
        ungated outputs y (directions x b, d, L), and y_0 + y_1 (the backward's dz needs it). One program
        per (batch, block of steps, block of channels)."""
        pid_b, pid_l, pid_d = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        steps = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)[:, None]
        d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)[None, :]
        mask = (steps < L) & (d < Dm)
        at_y = pid_b * sy_b + d * sy_d + steps * sy_l
        y = (tl.load(y_ptr + at_y, mask=mask, other=0.0).to(tl.float32)
             + tl.load(y_ptr + batch * sy_b + at_y, mask=mask, other=0.0).to(tl.float32))
        z = tl.load(z_ptr + pid_b * sz_b + d * sz_d + steps * sz_l, mask=mask, other=0.0).to(tl.float32)
        at = pid_b * so_b + d * so_d + steps * so_l
        tl.store(sum_ptr + at, y.to(sum_ptr.dtype.element_ty), mask=mask)
        tl.store(out_ptr + at, (y * z * tl.sigmoid(z)).to(out_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _pair_gate_bwd_kernel(g_ptr, sum_ptr, z_ptr, dy_ptr, dz_ptr, Dm, L, sg_b, sg_d, sg_l, ss_b, ss_d, ss_l,
                              sz_b, sz_d, sz_l, so_b, so_d, so_l, BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr):
        """The gate's backward, once for both directions: the gradient at the ungated outputs, dy = g ·
        silu(z) (what the scan kernels then read as their output gradient, without z), and dz = g · (y_0 +
        y_1) · silu'(z)."""
        pid_b, pid_l, pid_d = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        steps = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)[:, None]
        d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)[None, :]
        mask = (steps < L) & (d < Dm)
        g = tl.load(g_ptr + pid_b * sg_b + d * sg_d + steps * sg_l, mask=mask, other=0.0).to(tl.float32)
        y = tl.load(sum_ptr + pid_b * ss_b + d * ss_d + steps * ss_l, mask=mask, other=0.0).to(tl.float32)
        z = tl.load(z_ptr + pid_b * sz_b + d * sz_d + steps * sz_l, mask=mask, other=0.0).to(tl.float32)
        sg = tl.sigmoid(z)
        at = pid_b * so_b + d * so_d + steps * so_l
        tl.store(dy_ptr + at, (g * z * sg).to(dy_ptr.dtype.element_ty), mask=mask)
        tl.store(dz_ptr + at, (g * y * sg * (1.0 + z * (1.0 - sg))).to(dz_ptr.dtype.element_ty), mask=mask)


BLOCK_D = 32  # channels per program (one per thread at one warp); tuned on an H100, docs/benchmarks.md
CHUNK = 64  # steps between the forward's state checkpoints (and the backward's recompute window)
# sequences shorter than SHORT_SEQUENCE steps checkpoint every min(CHUNK, SHORT_CHUNK) steps. 8, the backward's
# recompute window: the backward starts every window from a checkpoint and needs no window-entries pass,
# which a short sequence leaves latency-bound (measured faster at L 785 on an H100, docs/benchmarks.md). The
# price is memory: fp32 states every 8 steps are 8 bytes per (batch, step, channel) and direction, 4x what 32
# cost. From L 1569 on the gain was under 1 %, so longer sequences keep CHUNK
SHORT_SEQUENCE, SHORT_CHUNK = 1024, 8
NUM_WARPS = 1
STAGES = 4  # software-pipelining depth of the step loops: loads issued this many steps ahead
# programs sharing one block of channels, each with N / N_SPLIT states (partial sums); None: 2 where
# batch x channel blocks would leave the GPU with fewer than two programs per SM, else 1 (on an H100
# splitting helped at batch 8, 192 programs, and cost 15-20 % at batch 32)
N_SPLIT: int | None = None
# segment-parallel scan: the sequence is cut into segments of whole chunks, one program each; a first
# pass summarises every segment (its end from a zero state, and its total decay), and each program of
# the main pass folds the summaries before it into its starting state. That costs a lighter extra pass
# over the sequence and buys parallelism where batch x channel blocks leave SMs idle (the sequential
# kernel is latency-bound: one warp per program). None: chosen by ``_best_segments`` for PROGRAMS_PER_SM
# resident programs per SM (forward, backward: their register use sets how many fit), each segment at
# least MIN_SEGMENT_CHUNKS chunks; an int forces that many (at most one per chunk), a pair (forward, backward)
# forces either pass's (None: chosen).
SEGMENTS: int | tuple[int | None, int | None] | None = None
# (forward, backward). The forward's build takes 72-128 registers on an H100 since the gate left it (16 fit
# an SM): 16 gives both directions of batch 8 five forward segments, 1 % faster than the four of 12
# (docs/benchmarks.md). Backward None: what its build fits (``BACKWARD_BUILDS``)
PROGRAMS_PER_SM: tuple[int, int | None] = (16, None)
# the relative cost of each segment (its share of the summary pass and the carries) in the choice of the
# segment count (``_best_segments``); 0.05 keeps the counts the H100 sweeps chose for one direction (batch
# 8 and 32) and picks the best swept for both directions in one launch (docs/benchmarks.md)
SEGMENT_COST = 0.05
MIN_SEGMENT_CHUNKS = 2
# the forward runs one loop over a segment's steps (checkpoints stored by a predicated store) where checkpoints
# lie fewer than this many steps apart, else a loop per chunk (``_scan_fwd_kernel``)
ONE_LOOP_BELOW = 32
# the first pass summarises blocks of up to this many CHUNK-step chunks (SUMMARY_CHUNKS x CHUNK steps, also where
# a short sequence checkpoints more often; the largest divisor of the segment's length in chunks up to that:
# the gcd taken before made 4 backward segments of 25 chunks of 8 steps 99 blocks of 8 steps, each folded
# by every program before it), not whole segments: its programs then number blocks, not segments, and fill the GPU where
# one program per segment ran latency-bound at a few warps per SM; each main-pass program folds
# the summaries of all the blocks before its segment (a few FMAs and exps per block)
SUMMARY_CHUNKS = 2
# steps the backward recomputes into its scratch at a time (a divisor of CHUNK; None: CHUNK). A pass of its
# own (``_window_entries_kernel``, all chunks in parallel) turns the forward's checkpoints into the states
# entering every window, a transient (b, L / WINDOW, N, d) buffer. 8 keeps every resident program's scratch
# (8 x N x BLOCK_D fp32 = 16 KB) inside the H100's L2, where CHUNK = 64 made the scratch round trip the
# backward's bottleneck (60 % of the DRAM bandwidth at b 32, L 1569); 8 against 16 measured 13 % faster
# at b 8, L 6273 and within 1 % at b 32 (docs/benchmarks.md)
BACKWARD_WINDOW: int | None = 8
# softplus through the GPU's approximate log2 (``_softplus``) on NVIDIA GPUs; the interpreter, which has
# no libdevice, always takes the accurate log
FAST_SOFTPLUS = True
# fill every output buffer with NaN before the kernels run (correctness checks: an element a kernel
# forgets to write then shows instead of passing with whatever the allocator left there)
POISON_OUTPUTS = False
# how a program's (N, BLOCK_D) state tile is shaped (``_sequential_prologue``), per kernel: (N, G, BLOCK_D //
# G), G channel groups. Where the accesses are scalar (VECTOR_ACCESS False) Triton lays BLOCK_D // G lanes
# across the channels and the rest across the states (G 1: a thread holds whole channels). With the JIT's
# vectorised accesses the layout follows them instead: G 1 gives 4 lanes across the states and 8 across the
# channels (4 states of 4 channels a thread; 48 shuffles in the backward's SASS), G 4 16 lanes across the states.
# On an H100 (Triton 3.6, docs/benchmarks.md) G 4 makes the passes that only run the recurrence (the
# forward's summaries, the window entries) 7-8 % faster and the backward 1.5-1.6x slower (its summary pass
# 1.6x); G 2 there makes the whole forward+backward 6-8 % slower; in the forward G 2 and 4 add 1.5 and 7-9 %.
# Earlier ways of taking the backward's shuffles out: a transposed scratch tile (13-21 % slower) and a warp
# reduce-scatter in inline PTX (wrong sums on the H100 for a reason not found, and no faster); both were
# built and timed before the vectorised layout was known (their SASS analysis assumed whole channels).
CHANNEL_GROUPS = {"forward": 1, "forward summary": 4, "window entries": 4, "backward summary": 1, "backward": 1}
# whether a kernel's accesses along the channels may be vectorised. Triton's JIT marks the pointers and
# strides it is handed as 16-byte aligned where they are, and its coalescing pass then reads and writes 4
# channels per thread (16 bytes); the state tile takes that layout (4 states of 4 channels a thread, lanes
# across the states as well as the channels, whatever CHANNEL_GROUPS asks), and per-channel values (u, Δ,
# the gradients stored) move between it and a one-channel-a-lane layout through shared memory. False
# hides the alignment behind a zero the compiler cannot see (``opaque_zero``): accesses are 4 bytes a
# thread, and the tile lies as CHANNEL_GROUPS says. On an H100 (Triton 3.6, docs/benchmarks.md) the
# backward with whole channels per thread (scalar, G 1) is 2.5x slower (246 registers, 160 shuffles a
# step) and the forward 16 %; the backward summaries, which sum nothing over the channels, are 15 % faster.
VECTOR_ACCESS = {"forward": True, "forward summary": True, "window entries": True, "backward summary": False,
                 "backward": True}
# the forward's output and the backward's du, Δ's and the gate's gradients stored through tile-shaped
# pointers (``_store_channels``): one shared-memory conversion fewer in each backward step (9 to 8 in a
# local sm_90 compile) and one in the forward's; the forward 3 % faster, forward+backward 0.5-2 % (H100)
TILE_STORES = True
# the gate's elementwise kernels (``_pair_gate_fwd_kernel``): steps and channels per program, warps
GATE_BLOCK_L, GATE_BLOCK_D, GATE_WARPS = 32, 64, 4
# ``_sum_parts_kernel``'s elements per program, parts loaded together, warps
SUM_BLOCK, SUM_PARTS, SUM_WARPS = 512, 8, 4
# the backward kernel's build, by what it reads: (a cap on its registers per thread, ptxas maxnreg, None:
# none; the programs an SM the segment rule then counts), for fp32 inputs and for bf16 ones read as words
# (a model under autocast). Uncapped, both take 237-241 registers on an H100 (Triton 3.6), 8 programs an SM.
# Capped at 168 (12 an SM) the fp32 build spills a few bytes and runs faster at every benchmark shape; the
# bf16 build spills more under the same cap and made the model's training step slower, so it stays uncapped.
# The count matters as much as the cap: the segment rule must plan for the programs an SM really holds
BACKWARD_BUILDS = {"fp32": (168, 12), "bf16": (None, 8)}
# a register cap forced on every build of the backward (None: ``BACKWARD_BUILDS``')
BACKWARD_MAX_REGISTERS: int | None = None


def _backward_build(reads_words: bool) -> tuple[int | None, int]:
    """(register cap or None, programs an SM) of the backward kernel's build for inputs read as bf16 words
    or not (``BACKWARD_BUILDS``; ``BACKWARD_MAX_REGISTERS`` and ``PROGRAMS_PER_SM`` override)."""
    cap, per_sm = BACKWARD_BUILDS["bf16" if reads_words else "fp32"]
    return BACKWARD_MAX_REGISTERS or cap, PROGRAMS_PER_SM[1] or per_sm


def _layout(role: str) -> dict:
    """The tile-layout constexprs of the kernel in ``role`` ("forward", "backward summary", ...)."""
    return dict(G=CHANNEL_GROUPS[role], VECTOR=VECTOR_ACCESS[role])


def _window(chunk: int) -> int:
    """The backward's recompute window (``BACKWARD_WINDOW``) for checkpoints ``chunk`` steps apart."""
    window = min(BACKWARD_WINDOW or chunk, chunk)
    if chunk % window:
        raise ValueError(f"BACKWARD_WINDOW {window} must divide the checkpoint interval {chunk}")
    return window


def _nvidia(device: torch.device) -> bool:
    return device.type == "cuda" and torch.version.hip is None


def _kernel_options(device: torch.device, delta_softplus: bool, order: ScanOrder) -> dict:
    """The constexprs every scan kernel takes: SOFTPLUS (0 none, 1 accurate, 2 approximate log2) and
    MODE (the scan order)."""
    softplus = (2 if FAST_SOFTPLUS and _nvidia(device) else 1) if delta_softplus else 0
    return dict(SOFTPLUS=softplus, MODE=order.code)


def available() -> bool:
    """Whether Triton imports (kernels then run on CUDA tensors, or anywhere under TRITON_INTERPRET=1)."""
    return triton is not None


def is_channels_last(t: torch.Tensor) -> bool:
    """Whether a (b, d, L) tensor has its channels fastest in memory ((b, L, d) rows, as a linear layer
    writes them, possibly a slice of wider rows)."""
    return t.stride(1) == 1 and t.stride(2) != 1 and t.shape[1] > 1


def _poisoned(t: torch.Tensor) -> torch.Tensor:
    return t.fill_(float("nan")) if POISON_OUTPUTS and t.is_floating_point() else t


def empty_like_layout(like: torch.Tensor, dtype: torch.dtype, batch: int | None = None) -> torch.Tensor:
    """An empty (b, d, L) tensor in ``like``'s memory order: channels last ((b, L, d) in memory, as a
    linear layer writes it) when ``like`` is, else contiguous. ``batch``: another batch size than like's
    (the directions x batch results of a paired scan)."""
    _, channels, length = like.shape
    batch = like.shape[0] if batch is None else batch
    if is_channels_last(like):
        return _poisoned(torch.empty_strided((batch, channels, length), (length * channels, 1, channels),
                                             device=like.device, dtype=dtype))
    return _poisoned(torch.empty(batch, channels, length, device=like.device, dtype=dtype))


def empty_state(batch: int, channels: int, n: int, device: torch.device) -> torch.Tensor:
    """An empty (b, d, N) fp32 state stored as (b, N, d), the kernels' order (channels fastest)."""
    return _poisoned(torch.empty_strided((batch, channels, n), (n * channels, 1, channels), device=device,
                                         dtype=torch.float32))


def empty_state_sums(batch: int, n: int, length: int, device: torch.device) -> torch.Tensor:
    """An empty (b, N, L) fp32 tensor stored as (b, L, N): how the backward returns dB and dC (the states
    fastest, as the mixer's B and C lie in its x_proj output)."""
    return torch.empty(batch, length, n, device=device, dtype=torch.float32).transpose(1, 2)


def checkpoint_interval(length: int, chunk: int | None = None) -> int:
    """Steps between the forward's checkpoints for a sequence of ``length`` (``chunk`` when given, else CHUNK,
    or SHORT_CHUNK for a short sequence)."""
    if chunk:
        return chunk
    return min(CHUNK, SHORT_CHUNK) if length < SHORT_SEQUENCE else CHUNK


def checkpoint_shape(batch: int, channels: int, n: int, length: int, chunk: int | None = None) -> tuple[int, ...]:
    """Shape of the forward's state checkpoints, (b, chunks, N, d): the state before every chunk."""
    return (batch, -(-length // checkpoint_interval(length, chunk)), n, channels)


def _result(like: torch.Tensor, dtype: torch.dtype, splits: int, batch: int) -> torch.Tensor:
    """Where a kernel writes a (batch, d, L) result: the result itself in ``like``'s memory order, or, with
    the states split over several programs, fp32 partial sums (splits, batch, d, L) in that order."""
    if splits == 1:
        return empty_like_layout(like, dtype, batch).unsqueeze(0)
    _, channels, length = like.shape
    f32 = dict(device=like.device, dtype=torch.float32)
    if is_channels_last(like):
        return _poisoned(torch.empty(splits, batch, length, channels, **f32)).transpose(2, 3)
    return _poisoned(torch.empty(splits, batch, channels, length, **f32))


def _finish(result: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The (b, d, L) result from ``_result``'s buffer: the partial sums added, in the same memory order."""
    if result.shape[0] == 1:
        return result[0]
    if is_channels_last(result[0]):
        return result.transpose(2, 3).sum(0).to(dtype).transpose(1, 2)
    return result.sum(0).to(dtype)


def _sm_count(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 0


@functools.lru_cache(maxsize=256)
def _best_segments(programs: int, slots: int, limit: int, cost: float) -> int:
    """The segment count (at most ``limit``) for ``programs`` programs per segment on ``slots`` resident
    programs. One segment where it alone fills one wave (no summary pass at all); else, from the count
    that fills one wave up, the fewest waves per unit of sequence, each segment weighed by ``cost``: a
    second, partly filled wave of shorter segments can beat one wave of longer ones that leaves slots
    empty (both directions of batch 8 in one launch: 5 backward segments in 2 waves, not 2 in one)."""
    one_wave = slots // programs
    if one_wave == 1:
        return 1
    first = min(max(1, one_wave), limit)
    candidates = range(first, min(limit, 3 * first + 2) + 1)
    return min(candidates, key=lambda s: -(-programs * s // slots) / s * (1 + cost * s))


def _segments(batch: int, channels: int, n_chunks: int, device: torch.device, backward: bool,
              reads_words: bool = False) -> tuple[int, int]:
    """(chunks per segment, segments) for a scan of ``n_chunks`` chunks (``SEGMENTS``); the backward's count
    depends on its build (``reads_words``: bf16 inputs read as words)."""
    forced = SEGMENTS[backward] if isinstance(SEGMENTS, tuple) else SEGMENTS
    if forced is not None:
        wanted = forced
    elif device.type != "cuda":
        wanted = 1
    else:
        per_sm = _backward_build(reads_words)[1] if backward else PROGRAMS_PER_SM[0]
        wanted = _best_segments(batch * triton.cdiv(channels, BLOCK_D), _sm_count(device) * per_sm,
                                max(1, n_chunks // MIN_SEGMENT_CHUNKS), SEGMENT_COST)
    seg_chunks = triton.cdiv(n_chunks, max(1, min(wanted, n_chunks)))
    return seg_chunks, triton.cdiv(n_chunks, seg_chunks)


def _state_splits(batch: int, channels: int, n: int, device: torch.device, segments: int = 1) -> int:
    if N_SPLIT is not None:
        return max(1, min(N_SPLIT, n))
    if device.type != "cuda":
        return 1
    programs = batch * triton.cdiv(channels, BLOCK_D) * segments
    return 2 if programs < 2 * _sm_count(device) and n >= 2 else 1


def _summary_blocks(seg_chunks: int, n_chunks: int, chunk: int) -> tuple[int, int, int]:
    """(chunks per summary block, blocks per segment, blocks) for segments of ``seg_chunks`` chunks of ``chunk``
    steps (``SUMMARY_CHUNKS``)."""
    limit = max(1, SUMMARY_CHUNKS * CHUNK // chunk)
    block_chunks = max(k for k in range(1, min(limit, seg_chunks) + 1) if seg_chunks % k == 0)
    return block_chunks, seg_chunks // block_chunks, -(-n_chunks // block_chunks)


def _segment_summaries(batch: int, channels: int, n: int, n_blocks: int, device: torch.device):
    """Buffers for the first pass of a segment-parallel scan: ends (b, blocks, N, d), Σ Δ (b, blocks, d)."""
    f32 = dict(device=device, dtype=torch.float32)
    return (_poisoned(torch.empty(batch, n_blocks, n, channels, **f32)),
            _poisoned(torch.empty(batch, n_blocks, channels, **f32)))


def _strides(*tensors: torch.Tensor) -> list[int]:
    return [s for t in tensors for s in t.stride()]


def _reads_words(t: torch.Tensor) -> bool:
    """Whether the kernels can read bf16 ``t`` as the 4-byte words holding it: its first element and the
    end of its storage are 4-byte aligned, so every word read lies inside the storage."""
    storage = t.untyped_storage()
    return t.dtype == torch.bfloat16 and t.data_ptr() % 4 == 0 and (storage.data_ptr() + storage.nbytes()) % 4 == 0


def _as_float(t: torch.Tensor | None, words: bool = True) -> torch.Tensor | None:
    """What the kernels read: fp32 in any strides, and (with ``words``) bf16 read as 4-byte words
    (``_load_f32``) pass through; other dtypes become fp32 in t's memory order. Triton does not
    pipeline 2-byte loads (the forward measured 2.7-3.0x slower on an H100 reading bf16 directly), so
    the word reads keep the loads 4 bytes wide without a conversion pass. B and C are converted
    (``words=False``): they are N = 16 channels wide, cheap to copy, and every thread reads all N of
    a step, where word reads cost 16 unpackings per step and pushed the kernels into register spills."""
    if t is None or t.dtype == torch.float32 or (words and _reads_words(t)):
        return t
    if is_channels_last(t):  # convert through the (b, L, d) view, which keeps the order
        return t.transpose(1, 2).float().transpose(1, 2)
    return t.float()


def _channel_parameters(A, D, delta_bias):
    """A (directions, d, N) as (directions, N, d) fp32 (the kernels' order), D and delta_bias (directions, d)
    fp32 (None stays None)."""
    return (A.float().transpose(1, 2).contiguous(),
            *(None if t is None else t.float().contiguous() for t in (D, delta_bias)))


def _pair(first: torch.Tensor, second: torch.Tensor | None, words: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """One input of both directions as the kernels read it (``_as_float``), the two in the same dtype and
    strides (a paired launch shares the strides); one direction: the tensor twice."""
    first = _as_float(first, words)
    if second is None:
        return first, first
    second = _as_float(second, words)
    if first.dtype != second.dtype:
        first, second = _as_float(first, False), _as_float(second, False)
    if first.stride() != second.stride():
        first, second = first.contiguous(), second.contiguous()
    return first, second


def _scan_forward(u, u2, delta, delta2, A, B, B2, C, C2, D, z, delta_bias, delta_softplus, order: ScanOrder,
                  chunk: int | None):
    """The forward kernels for one direction (u2, delta2, B2, C2 None) or a pair in one launch (direction 0
    forward, direction 1 in ``order``; z shared). A (directions, d, N); D, delta_bias (directions, d).
    Returns (out (directions x b, d, L) in u's dtype and memory order, last state, checkpoints), the
    directions stacked along the batch: direction-major."""
    chunk = checkpoint_interval(u.shape[-1], chunk)
    directions = 1 if u2 is None else 2
    batch, channels, length = u.shape
    extended = directions * batch
    n = A.shape[-1]
    if n & (n - 1):
        raise ValueError(f"the Triton scan needs a power-of-two d_state, got {n}")
    last = empty_state(extended, channels, n, u.device)
    ckpt = _poisoned(torch.empty(checkpoint_shape(extended, channels, n, length, chunk), device=u.device,
                                 dtype=torch.float32))
    seg_chunks, n_segs = _segments(extended, channels, ckpt.shape[1], u.device, backward=False)
    dtype, splits = u.dtype, _state_splits(extended, channels, n, u.device, n_segs)
    out = _result(u, dtype, splits, extended)
    (u, u2), (delta, delta2) = _pair(u, u2), _pair(delta, delta2)
    (B, B2), (C, C2), z = _pair(B, B2, False), _pair(C, C2, False), _as_float(z)
    A, D, delta_bias = _channel_parameters(A, D, delta_bias)
    zs = z if z is not None else u
    bias = delta_bias if delta_bias is not None else u
    options = dict(_kernel_options(u.device, delta_softplus, order), PAIRED=directions == 2)
    grid = (extended, triton.cdiv(channels, BLOCK_D))
    block_chunks, seg_blocks, n_blocks = _summary_blocks(seg_chunks, ckpt.shape[1], chunk)
    ends, dtsum = _segment_summaries(extended, channels, n, n_blocks, u.device)
    if n_segs > 1:  # every block before the last segment
        _segment_fwd_kernel[(*grid, splits * (n_segs - 1) * seg_blocks)](
            u, u2, delta, delta2, A, B, B2, bias, ends, dtsum, channels, length, batch, 0, block_chunks * chunk,
            n_blocks, order.frame_tokens, order.prefix, *_strides(u, delta, B), N=n, NS=n // splits, BLOCK_D=BLOCK_D,
            **_layout("forward summary"), STAGES=STAGES, HAS_BIAS=delta_bias is not None, **options,
            num_warps=NUM_WARPS)
    _scan_fwd_kernel[(*grid, splits * n_segs)](
        u, u2, delta, delta2, A, B, B2, C, C2, D if D is not None else u, zs, bias,
        out, last, ckpt, ends, dtsum, channels, length, batch, 0, ckpt.shape[1], seg_chunks, n_segs, n_blocks,
        seg_blocks, order.frame_tokens, order.prefix, *_strides(u, delta, zs, out, B, C),
        N=n, NS=n // splits, BLOCK_D=BLOCK_D, **_layout("forward"), TILE_STORES=TILE_STORES, CHUNK=chunk,
        ONE_LOOP=chunk < ONE_LOOP_BELOW,
        STAGES=STAGES, HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, **options,
        num_warps=NUM_WARPS)
    return _finish(out, dtype), last, ckpt


def _scan_backward(dout, dlast, u, u2, delta, delta2, A, B, B2, C, C2, D, z, delta_bias, delta_softplus,
                   order: ScanOrder, ckpt, chunk: int | None):
    """The backward kernels for one direction or a pair (as ``_scan_forward``; dout is shared by the pair).
    Returns du, ddelta, dz (directions x b, d, L) in u's memory order and the dtypes of u, delta and z (dz
    None without z), dB, dC (directions x b, N, L), dA (directions, d, N), dD and dbias (directions, d),
    fp32. ``dlast``: (directions x b, d, N), or an empty tensor where the last states' gradient is zero."""
    chunk = checkpoint_interval(u.shape[-1], chunk)
    directions = 1 if u2 is None else 2
    batch, channels, length = u.shape
    extended = directions * batch
    n = A.shape[-1]
    if ckpt is None:
        _, _, ckpt = _scan_forward(u, u2, delta, delta2, A, B, B2, C, C2, D, z, delta_bias, delta_softplus, order,
                                   chunk)
    n_dblocks = triton.cdiv(channels, BLOCK_D)
    f32 = dict(device=u.device, dtype=torch.float32)
    reads_words = any(t is not None and _reads_words(t) for t in (u, delta, dout, z))
    max_registers, _ = _backward_build(reads_words)
    seg_chunks, n_segs = _segments(extended, channels, ckpt.shape[1], u.device, True, reads_words)
    splits = _state_splits(extended, channels, n, u.device, n_segs)
    dtypes = (u.dtype, delta.dtype, z.dtype if z is not None else None)
    du, ddelta = _result(u, dtypes[0], splits, extended), _result(u, dtypes[1], splits, extended)
    dz = _result(u, dtypes[2], splits, extended) if z is not None else None
    (u, u2), (delta, delta2) = _pair(u, u2), _pair(delta, delta2)
    (B, B2), (C, C2) = _pair(B, B2, False), _pair(C, C2, False)
    z, dout = _as_float(z), _as_float(dout)
    has_D, has_bias = D is not None, delta_bias is not None
    A, D, delta_bias = _channel_parameters(A, D, delta_bias)
    options = dict(_kernel_options(u.device, delta_softplus, order), PAIRED=directions == 2)
    has_dlast = dlast.numel() > 0
    dlast = dlast.float().transpose(1, 2).contiguous() if has_dlast else A  # (directions x b, N, d)
    dA = _poisoned(torch.empty(directions, n_segs, batch, n, channels, **f32))
    # dB and dC (per block of channels), dD and dbias (per segment and split) share a buffer each: one
    # allocation and one reduction for the pair
    dBC = _poisoned(torch.empty(n_dblocks, 2, extended, length, n, **f32))
    dB, dC = dBC[:, 0], dBC[:, 1]
    dDbias = _poisoned(torch.empty(2, directions, n_segs * splits, batch, channels, **f32))
    dD, dbias = dDbias[0], dDbias[1]
    window = _window(chunk)
    if window < chunk:  # the states entering every window, from the checkpoints: the backward's starting points
        entries = _poisoned(torch.empty(extended, -(-length // window), n, channels, **f32))
        _window_entries_kernel[(extended, n_dblocks, splits * ckpt.shape[1])](
            u, u2, delta, delta2, A, B, B2, delta_bias if has_bias else u, ckpt, entries, channels, length, batch, 0,
            ckpt.shape[1], entries.shape[1], order.frame_tokens, order.prefix, *_strides(u, delta, B), N=n,
            NS=n // splits, BLOCK_D=BLOCK_D, **_layout("window entries"), CHUNK=chunk, WINDOW=window, STAGES=STAGES,
            HAS_BIAS=has_bias, **options, num_warps=NUM_WARPS)
        starts, seg_windows = entries, seg_chunks * (chunk // window)
    else:
        starts, seg_windows = ckpt, seg_chunks
    scratch = torch.empty(extended * n_dblocks * n_segs * splits * window * BLOCK_D * (n // splits), **f32)
    zs = z if z is not None else u
    bias = delta_bias if has_bias else u
    block_chunks, seg_blocks, n_blocks = _summary_blocks(seg_chunks, ckpt.shape[1], chunk)
    ends, dtsum = _segment_summaries(extended, channels, n, n_blocks, u.device)
    if n_segs > 1:  # every block after the first segment
        _segment_bwd_kernel[(extended, n_dblocks, splits * (n_blocks - seg_blocks))](
            delta, delta2, A, C, C2, zs, bias, dout, ends, dtsum, channels, length, batch, 0, block_chunks * chunk,
            n_blocks, seg_blocks, order.frame_tokens, order.prefix, *_strides(delta, zs, dout, C), N=n,
            NS=n // splits, BLOCK_D=BLOCK_D, **_layout("backward summary"), STAGES=STAGES, HAS_Z=z is not None,
            HAS_BIAS=has_bias, **options, num_warps=NUM_WARPS)
    _scan_bwd_kernel[(extended, n_dblocks, splits * n_segs)](
        u, u2, delta, delta2, A, B, B2, C, C2, D if has_D else u, zs, bias,
        starts, dout, dlast, scratch, du, ddelta, dA, dB, dC, dD, dz if dz is not None else du, dbias, ends, dtsum,
        channels, length, batch, 0, starts.shape[1], seg_windows, n_segs, n_blocks, seg_blocks,
        2 * extended * n * length, order.frame_tokens, order.prefix, *_strides(u, delta, zs, dout, du, B, C),
        N=n, NS=n // splits, BLOCK_D=BLOCK_D, **_layout("backward"), TILE_STORES=TILE_STORES, CHUNK=window,
        STAGES=STAGES, HAS_D=has_D, HAS_Z=z is not None, HAS_BIAS=has_bias, **options, HAS_DLAST=has_dlast,
        num_warps=NUM_WARPS, **({"maxnreg": max_registers} if max_registers and _nvidia(u.device) else {}))
    dB, dC = _sum_parts(dBC.view(1, n_dblocks, -1)).view(2, extended, length, n)
    dB, dC = dB.transpose(1, 2), dC.transpose(1, 2)  # (directions x b, N, L) views, as ``empty_state_sums``
    dD, dbias = _sum_parts(dDbias.view(2 * directions, n_segs * splits * batch, channels)).view(2, directions, channels)
    dA = _sum_parts(dA.view(directions, n_segs * batch, n * channels), rows=n).view(directions, channels, n)
    return (_finish(du, dtypes[0]), _finish(ddelta, dtypes[1]), _finish(dz, dtypes[2]) if dz is not None else None,
            dB, dC, dA, dD if has_D else None, dbias if has_bias else None)


def _sum_parts(parts: torch.Tensor, rows: int = 1) -> torch.Tensor:
    """(groups, n) fp32 sums of contiguous (groups, parts, n) partial sums (``_sum_parts_kernel``). The
    backward's dB/dC, dA and dD/dbias sums, faster than torch's sums and dA's transposed copy on an H100
    (docs/benchmarks.md). ``rows`` > 1:
    each group's n = rows x cols sums stored transposed, (cols, rows)."""
    groups, n_parts, n_inner = parts.shape
    out = torch.empty(groups, n_inner, device=parts.device, dtype=torch.float32)
    # small sums (dA, dD, dbias: tens of parts of a few thousand elements) take narrower programs, more of
    # them, each with all its parts' loads in flight at once: they are latency-bound
    small = groups * n_inner < 64 * SUM_BLOCK
    block, together = (128, min(32, triton.next_power_of_2(n_parts))) if small else (SUM_BLOCK, SUM_PARTS)
    _sum_parts_kernel[(groups, triton.cdiv(n_inner, block))](
        parts, out, n_parts, parts.stride(1), parts.stride(0), n_inner, rows, BLOCK=block, PARTS=together,
        num_warps=SUM_WARPS)
    return out


def _stacked(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.unsqueeze(0)


def triton_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus, order: ScanOrder = FORWARD,
                   chunk: int | None = None):
    """(out, last state, chunk checkpoints for the backward). u, delta, z, B and C are read in any
    strides (other dtypes than fp32 are converted first); out is written in u's dtype and memory
    order. With ``order`` the kernels read the positions in that order (``ops.ScanOrder``: reversed,
    or per frame) and write each output where they read, so nothing is permuted or copied."""
    return _scan_forward(u, None, delta, None, A[None], B, None, C, None, _stacked(D), z, _stacked(delta_bias),
                         delta_softplus, order, chunk)


def triton_backward(dout, dlast, u, delta, A, B, C, D, z, delta_bias, delta_softplus, order: ScanOrder = FORWARD,
                    ckpt=None, chunk: int | None = None):
    """Gradients (du, ddelta, dA, dB, dC, dD, dz, dbias), None where an input is absent: du, ddelta
    and dz in u's memory order and in the dtypes of u, delta and z; the others fp32. ``dlast``: the
    last state's gradient (b, d, N), or an empty tensor where it is zero."""
    du, ddelta, dz, dB, dC, dA, dD, dbias = _scan_backward(
        dout, dlast, u, None, delta, None, A[None], B, None, C, None, _stacked(D), z, _stacked(delta_bias),
        delta_softplus, order, ckpt, chunk)
    return du, ddelta, dA[0], dB, dC, None if dD is None else dD[0], dz, None if dbias is None else dbias[0]


def _gate_grid(like: torch.Tensor) -> tuple[int, int, int]:
    batch, channels, length = like.shape
    return batch, triton.cdiv(length, GATE_BLOCK_L), triton.cdiv(channels, GATE_BLOCK_D)


def _gate_forward(y: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(out = (y_0 + y_1) · silu(z), y_0 + y_1) from the directions' ungated outputs y (2 x b, d, L), both in
    y's dtype and z's (b, d, L) shape, in y's memory order."""
    batch = z.shape[0]
    total, out = empty_like_layout(y[:batch], y.dtype), empty_like_layout(y[:batch], y.dtype)
    _pair_gate_fwd_kernel[_gate_grid(z)](y, z, total, out, batch, z.shape[1], z.shape[2], *_strides(y, z, out),
                                         BLOCK_L=GATE_BLOCK_L, BLOCK_D=GATE_BLOCK_D, num_warps=GATE_WARPS)
    return out, total


def _gate_backward(dout: torch.Tensor, total: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(dy = dout · silu(z) in dout's dtype, dz = dout · (y_0 + y_1) · silu'(z) in z's dtype), in the memory
    order of ``total`` (the directions' summed ungated output)."""
    dy, dz = empty_like_layout(total, dout.dtype), empty_like_layout(total, z.dtype)  # the same strides
    _pair_gate_bwd_kernel[_gate_grid(z)](dout, total, z, dy, dz, z.shape[1], z.shape[2], *_strides(dout, total, z, dy),
                                         BLOCK_L=GATE_BLOCK_L, BLOCK_D=GATE_BLOCK_D, num_warps=GATE_WARPS)
    return dy, dz


def triton_forward_pair(u, u_bwd, delta, delta_bwd, A, B, B_bwd, C, C_bwd, D, z, delta_bias, delta_softplus,
                        order: ScanOrder, chunk: int | None = None):
    """Both directions of a bidirectional mixer in one launch of each kernel: the forward scan of (u, delta,
    B, C) and the scan of (u_bwd, delta_bwd, B_bwd, C_bwd) in ``order``, both gated by the shared z; A (2,
    d, N), D and delta_bias (2, d) stack the two directions' parameters. Returns (the sum of the two
    outputs (b, d, L) in u's dtype and memory order, the last states (2, b, d, N), checkpoints, the
    directions' summed ungated output (saved for the backward's dz; an empty tensor without z)).

    The gate is linear in the scan's output, so it is applied once, to the sum (``_pair_gate_fwd_kernel``):
    the scan kernels run without z, and the backward gets dz from that sum where each direction's
    kernels would compute its share and the two be added."""
    y, last, ckpt = _scan_forward(u, u_bwd, delta, delta_bwd, A, B, B_bwd, C, C_bwd, D, None, delta_bias,
                                  delta_softplus, order, chunk)
    batch = u.shape[0]
    if z is None:
        return y[:batch] + y[batch:], last.unflatten(0, (2, batch)), ckpt, y.new_empty(0)
    out, total = _gate_forward(y, z)
    return out, last.unflatten(0, (2, batch)), ckpt, total


def triton_backward_pair(dout, u, u_bwd, delta, delta_bwd, A, B, B_bwd, C, C_bwd, D, z, delta_bias, delta_softplus,
                         order: ScanOrder, ckpt=None, chunk: int | None = None, total: torch.Tensor | None = None):
    """Gradients of ``triton_forward_pair``'s summed output (``dout``, shared by the directions; the last
    states' gradient is taken as zero): (du, ddelta (2, b, d, L), dA (2, d, N), dB, dC (2, b, N, L), dD (2, d),
    dz (b, d, L), dbias (2, d)), the directions stacked along the first axis; None where an input is absent.
    ``total``: the forward's summed ungated output (recomputed when None and z is given)."""
    batch = u.shape[0]
    dz = None
    if z is not None:
        if total is None or total.numel() == 0:
            _, _, ckpt, total = triton_forward_pair(u, u_bwd, delta, delta_bwd, A, B, B_bwd, C, C_bwd, D, z,
                                                    delta_bias, delta_softplus, order, chunk)
        dout, dz = _gate_backward(dout, total, z)
    du, ddelta, _, dB, dC, dA, dD, dbias = _scan_backward(
        dout, dout.new_empty(0), u, u_bwd, delta, delta_bwd, A, B, B_bwd, C, C_bwd, D, None, delta_bias,
        delta_softplus, order, ckpt, chunk)
    directions = lambda t: t.unflatten(0, (2, batch))  # noqa: E731
    return directions(du), directions(ddelta), dA, directions(dB), directions(dC), dD, dz, dbias
