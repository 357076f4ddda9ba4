"""The selective scan's launchers: one direction (``triton_forward``/``triton_backward``) or both
directions of a bidirectional mixer in one launch (``triton_forward_pair``/``triton_backward_pair``).
Every launch choice is read from ``SCAN`` (``ops.triton.settings``) at call time.

One program per (batch, block of ``SCAN.block_d`` channels, segment of the sequence); the state, an
(N, block_d) tile with channels fastest (on an H100 4 states of 4 channels a thread, the layout of the
JIT's vectorised accesses: ``SCAN.vector_access``, ``SCAN.channel_groups``), lives in registers and the
loop over a segment's steps is sequential. The step loops are software-pipelined (``SCAN.stages``):
the loads of the next steps, which do not depend on the state, are in flight while a step computes.
softplus(delta + delta_bias), D and the SiLU(z) gate are fused.
u, delta, z, B and C are read in any strides, so the mixer hands over the views a linear layer
produced, (b, L, d) in memory, without copies; bf16 u, delta, z and output gradients are read as
the 4-byte words that hold them (``_load_f32``), other dtypes are converted to fp32 first, in the
same memory order; state and accumulation are fp32. The positions are read in a scan order
(``ops.ScanOrder``: forward, reversed, or per frame), computed per step, and every output is
written where it was read.

Segment-parallel: where batch x channel blocks would leave SMs idle, each sequence is cut into
segments of whole chunks (``SCAN.segments``). A first pass runs every block of ``SCAN.summary_chunks``
chunks from a zero state and stores its end and its Σ Δ; each program of the main pass folds the
summaries of the blocks before its segment into its starting state (``_carried_in``), exactly, since
h_t is linear in the state entering a block with the factor exp(A Σ Δ). The backward does the same
for the adjoint, from the end. Alternatively (``SCAN.n_split``) the N states are split over several
programs (partial sums).

Forward (``SCAN.forward_tile``, the default): a window of steps at a time, held as one register tile of
(window, N, block) whose states come from one ``tl.associative_scan`` along the steps; programs of
``SCAN.forward_tile_block_d`` channels. Without it, a step at a time, as the backward.

Forward: also stores the state at the start of every chunk (``SCAN.chunk`` steps), (b, L / chunk, N, d),
a chunk-th of what storing every state would cost; the checkpoints are an output of the custom op,
saved for the backward (a call that no backward will follow stores none). Backward: a parallel pass
turns them into the states entering every ``SCAN.backward_window`` steps (a transient buffer); the main pass walks its segment's windows from the
last, recomputes each window's states into a per-program scratch buffer (window x N x block_d,
cache-resident), then runs the adjoint recurrence backwards through it. dB and dC are sums over
channels: each program reduces its block's channels on chip and writes the partial sums of its block;
one reduction over the blocks follows (``ops.triton.reduce``; atomic adds across blocks are slower).
On NVIDIA GPUs (``SCAN.backward_gluon``) the same backward runs as a kernel written in Gluon
(``ops.triton.scan_gluon``), its layouts and its window's states (in shared memory) chosen by the kernel.

Paired (the kernels' PAIRED): both directions of a bidirectional mixer in one launch of each kernel.
Grid axis 0 numbers (direction, batch) pairs, every buffer the kernels own takes a batch of 2 x b,
each direction reads its own u, Δ, B, C (a pointer each) and parameters (stacked), the two share z
and the output gradient, and direction 1 reads the positions in the backward order. One launch holds
twice the programs, so batch 8 needs fewer segments to fill the GPU, and the host issues half the
launches. The gate, linear in the scan's output, is applied once to the two directions' sum
(``ops.triton.gate``), and its backward gives the scan kernels dy = g · silu(z): the paired kernels
run without z.
"""

from __future__ import annotations

import functools

import torch

from ..token_order import FORWARD, ScanOrder
from .common import cdiv, empty_like_layout, is_channels_last, nvidia, poisoned, strides
from .gate import gate_backward, gate_forward
from .reduce import sum_parts
from .settings import SCAN

try:
    import triton
except ImportError:  # pragma: no cover - triton ships with CUDA builds of torch
    triton = None

if triton is not None:
    from .scan_kernels import (_scan_bwd_kernel, _scan_fwd_kernel, _scan_fwd_tile_kernel, _segment_bwd_kernel,
                               _segment_fwd_kernel, _window_entries_kernel)
    from .scan_gluon import _scan_bwd_gluon_kernel
else:
    _scan_bwd_gluon_kernel = None


_GLUON_SHARED = 96 * 1024  # bytes of shared memory a Gluon backward program may hold (an H100 SM has 228 KiB)


def _gluon_backward(device: torch.device, window: int, n: int) -> bool:
    """Whether the backward of ``n`` states recomputed ``window`` steps at a time runs the Gluon kernel
    (``SCAN.backward_gluon``): on an NVIDIA GPU, where Gluon imports, for the tile it is written for (one warp,
    one channel group), and where the window's states and Δ, which it holds in shared memory (at most all N
    states a program), leave two programs an SM."""
    return (SCAN.backward_gluon and _scan_bwd_gluon_kernel is not None and nvidia(device) and SCAN.num_warps == 1
            and SCAN.channel_groups["backward"] == 1 and gluon_shared_bytes(window, n) <= _GLUON_SHARED)


def gluon_shared_bytes(window: int, n: int) -> int:
    """The shared memory a Gluon backward program holds: a window's states (``n`` at most) and its Δ, fp32."""
    return window * (n + 1) * SCAN.block_d * 4


def _backward_build(reads_words: bool, gluon: bool = False) -> tuple[int | None, int]:
    """(register cap or None, programs an SM) of the backward kernel's build for inputs read as bf16 words
    or not (``SCAN.backward_builds``), or of the Gluon kernel (``SCAN.gluon_build``);
    ``SCAN.backward_max_registers`` and ``SCAN.programs_per_sm`` override."""
    if gluon:
        cap, per_sm = SCAN.gluon_build
    else:
        cap, per_sm = SCAN.backward_builds["bf16" if reads_words else "fp32"]
    return SCAN.backward_max_registers or cap, SCAN.programs_per_sm[1] or per_sm


def _layout(role: str) -> dict:
    """The tile-layout constexprs of the kernel in ``role`` ("forward", "backward summary", ...)."""
    return dict(G=SCAN.channel_groups[role], VECTOR=SCAN.vector_access[role])


def _window(chunk: int) -> int:
    """The backward's recompute window (``SCAN.backward_window``) for checkpoints ``chunk`` steps apart."""
    window = min(SCAN.backward_window or chunk, chunk)
    if chunk % window:
        raise ValueError(f"SCAN.backward_window {window} must divide the checkpoint interval {chunk}")
    return window


def _kernel_options(device: torch.device, delta_softplus: bool, order: ScanOrder) -> dict:
    """The constexprs every scan kernel takes: SOFTPLUS (0 none, 1 accurate, 2 approximate log2) and
    MODE (the scan order)."""
    softplus = (2 if SCAN.fast_softplus and nvidia(device) else 1) if delta_softplus else 0
    return dict(SOFTPLUS=softplus, MODE=order.code)


def empty_state(batch: int, channels: int, n: int, device: torch.device) -> torch.Tensor:
    """An empty (b, d, N) fp32 state stored as (b, N, d), the kernels' order (channels fastest)."""
    return poisoned(torch.empty_strided((batch, channels, n), (n * channels, 1, channels), device=device,
                                         dtype=torch.float32))


def empty_state_sums(batch: int, n: int, length: int, device: torch.device) -> torch.Tensor:
    """An empty (b, N, L) fp32 tensor stored as (b, L, N): how the backward returns dB and dC (the states
    fastest, as the mixer's B and C lie in its x_proj output)."""
    return torch.empty(batch, length, n, device=device, dtype=torch.float32).transpose(1, 2)


def checkpoint_interval(length: int, chunk: int | None = None) -> int:
    """Steps between the forward's checkpoints for a sequence of ``length`` (``chunk`` when given, else SCAN.chunk,
    or SCAN.short_chunk for a short sequence)."""
    if chunk:
        return chunk
    return min(SCAN.chunk, SCAN.short_chunk) if length < SCAN.short_sequence else SCAN.chunk


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
        return poisoned(torch.empty(splits, batch, length, channels, **f32)).transpose(2, 3)
    return poisoned(torch.empty(splits, batch, channels, length, **f32))


def _finish(result: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The (b, d, L) result in ``dtype`` from ``_result``'s buffer (written in it, or in fp32 and cast): the
    partial sums added, in the same memory order."""
    if result.shape[0] == 1:
        return result[0].to(dtype)
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


def _tile_state_parts(programs: int, device: torch.device) -> int:
    """The window tile's state parts for a launch of ``programs`` programs (``SCAN.forward_tile_state_parts``; None:
    this rule). 2 where they fill more than one wave of the one-part tile (8 programs an SM; 2 parts hold 12): on an
    H100, inference at batch 32 (3072 programs) ran at 204 clips/s against 196, in 2 waves instead of 3. Else 1:
    both directions of batch 8 (768 programs) fit one wave already, and 2 parts made the 64-frame training step
    249.7 ms against 243.8 (docs/benchmarks.md)."""
    if SCAN.forward_tile_state_parts is not None:
        return SCAN.forward_tile_state_parts
    if device.type != "cuda":
        return 1
    return 2 if programs > _sm_count(device) * SCAN.forward_tile_programs_per_sm else 1


def _forward_programs() -> tuple[int, int]:
    """(channels a program, programs an SM planned for) of the forward kernel in use (``SCAN.forward_tile``)."""
    if SCAN.forward_tile:
        return SCAN.forward_tile_block_d, SCAN.forward_tile_programs_per_sm
    return SCAN.block_d, SCAN.programs_per_sm[0]


def _segments(batch: int, channels: int, n_chunks: int, device: torch.device, backward: bool,
              reads_words: bool = False, gluon: bool = False) -> tuple[int, int]:
    """(chunks per segment, segments) for a scan of ``n_chunks`` chunks (``SCAN.segments``); the backward's count
    depends on its kernel and build (``gluon``: the Gluon kernel; ``reads_words``: the plain kernel's bf16 inputs
    read as words), the forward's on its kernel (the window tile's programs are narrower: ``SCAN.forward_tile``)."""
    forced = SCAN.segments[backward] if isinstance(SCAN.segments, tuple) else SCAN.segments
    if forced is not None:
        wanted = forced
    elif device.type != "cuda":
        wanted = 1
    else:
        block_d, per_sm = (SCAN.block_d, _backward_build(reads_words, gluon)[1]) if backward else _forward_programs()
        wanted = _best_segments(batch * cdiv(channels, block_d), _sm_count(device) * per_sm,
                                max(1, n_chunks // SCAN.min_segment_chunks), SCAN.segment_cost)
    seg_chunks = cdiv(n_chunks, max(1, min(wanted, n_chunks)))
    return seg_chunks, cdiv(n_chunks, seg_chunks)


def _state_splits(batch: int, channels: int, n: int, device: torch.device, segments: int = 1,
                  block_d: int | None = None) -> int:
    if SCAN.n_split is not None:
        return max(1, min(SCAN.n_split, n))
    if device.type != "cuda":
        return 1
    programs = batch * cdiv(channels, block_d or SCAN.block_d) * segments
    return 2 if programs < 2 * _sm_count(device) and n >= 2 else 1


def _summary_blocks(seg_chunks: int, n_chunks: int, chunk: int) -> tuple[int, int, int]:
    """(chunks per summary block, blocks per segment, blocks) for segments of ``seg_chunks`` chunks of ``chunk``
    steps (``SCAN.summary_chunks``)."""
    limit = max(1, SCAN.summary_chunks * SCAN.chunk // chunk)
    block_chunks = max(k for k in range(1, min(limit, seg_chunks) + 1) if seg_chunks % k == 0)
    return block_chunks, seg_chunks // block_chunks, -(-n_chunks // block_chunks)


def _segment_summaries(batch: int, channels: int, n: int, n_blocks: int, device: torch.device):
    """Buffers for the first pass of a segment-parallel scan: ends (b, blocks, N, d), Σ Δ (b, blocks, d)."""
    f32 = dict(device=device, dtype=torch.float32)
    return (poisoned(torch.empty(batch, n_blocks, n, channels, **f32)),
            poisoned(torch.empty(batch, n_blocks, channels, **f32)))


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
                  chunk: int | None, checkpoints: bool = True):
    """The forward kernels for one direction (u2, delta2, B2, C2 None) or a pair in one launch (direction 0
    forward, direction 1 in ``order``; z shared). A (directions, d, N); D, delta_bias (directions, d).
    Returns (out (directions x b, d, L) in u's dtype and memory order, last state, checkpoints), the
    directions stacked along the batch: direction-major. Without ``checkpoints`` (no backward will run)
    none are written, and None is returned for them."""
    chunk = checkpoint_interval(u.shape[-1], chunk)
    directions = 1 if u2 is None else 2
    batch, channels, length = u.shape
    extended = directions * batch
    n = A.shape[-1]
    if n & (n - 1):
        raise ValueError(f"the Triton scan needs a power-of-two d_state, got {n}")
    last = empty_state(extended, channels, n, u.device)
    shape = checkpoint_shape(extended, channels, n, length, chunk)
    ckpt = poisoned(torch.empty(shape, device=u.device, dtype=torch.float32)) if checkpoints else None
    n_chunks = shape[1]
    tile = min(SCAN.forward_tile, chunk) if SCAN.forward_tile else None
    if tile and (chunk % tile or tile & (tile - 1)):
        raise ValueError(f"the forward's window tile {tile} must be a power of two dividing the checkpoint interval {chunk}")
    block_d = _forward_programs()[0]
    seg_chunks, n_segs = _segments(extended, channels, n_chunks, u.device, backward=False)
    dtype, splits = u.dtype, _state_splits(extended, channels, n, u.device, n_segs, block_d)
    parts = _tile_state_parts(extended * cdiv(channels, block_d) * splits * n_segs, u.device)
    if tile and parts not in (1, 2):
        raise ValueError(f"the forward's window tile takes its states in 1 or 2 parts, not {parts}")
    out = _result(u, dtype, splits, extended)
    (u, u2), (delta, delta2) = _pair(u, u2), _pair(delta, delta2)
    (B, B2), (C, C2), z = _pair(B, B2, False), _pair(C, C2, False), _as_float(z)
    A, D, delta_bias = _channel_parameters(A, D, delta_bias)
    zs = z if z is not None else u
    bias = delta_bias if delta_bias is not None else u
    options = dict(_kernel_options(u.device, delta_softplus, order), PAIRED=directions == 2)
    grid = (extended, cdiv(channels, SCAN.block_d))
    block_chunks, seg_blocks, n_blocks = _summary_blocks(seg_chunks, n_chunks, chunk)
    ends, dtsum = _segment_summaries(extended, channels, n, n_blocks, u.device)
    stored = ckpt if checkpoints else last  # without checkpoints: a pointer the kernels never write through
    if n_segs > 1:  # every block before the last segment
        _segment_fwd_kernel[(*grid, splits * (n_segs - 1) * seg_blocks)](
            u, u2, delta, delta2, A, B, B2, bias, ends, dtsum, channels, length, batch, 0, block_chunks * chunk,
            n_blocks, order.frame_tokens, order.prefix, *strides(u, delta, B), N=n, NS=n // splits, BLOCK_D=SCAN.block_d,
            **_layout("forward summary"), STAGES=SCAN.stages, HAS_BIAS=delta_bias is not None, **options,
            num_warps=SCAN.num_warps)
    if tile:
        _scan_fwd_tile_kernel[(extended, cdiv(channels, block_d), splits * n_segs)](
            u, u2, delta, delta2, A, B, B2, C, C2, D if D is not None else u, zs, bias,
            out, last, stored, ends, dtsum, channels, length, batch, 0, n_chunks, seg_chunks, n_segs, n_blocks,
            seg_blocks, order.frame_tokens, order.prefix, *strides(u, delta, zs, out, B, C),
            N=n, NS=n // splits, BLOCK_D=block_d, G=SCAN.forward_tile_groups, CHUNK=chunk, WINDOW=tile,
            STAGES=SCAN.forward_tile_stages, HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
            VECTOR=True, CHECKPOINTS=checkpoints, PARTS=parts if n // splits >= 2 else 1, **options, num_warps=1)
        return _finish(out, dtype), last, ckpt
    _scan_fwd_kernel[(*grid, splits * n_segs)](
        u, u2, delta, delta2, A, B, B2, C, C2, D if D is not None else u, zs, bias,
        out, last, stored, ends, dtsum, channels, length, batch, 0, n_chunks, seg_chunks, n_segs, n_blocks,
        seg_blocks, order.frame_tokens, order.prefix, *strides(u, delta, zs, out, B, C),
        N=n, NS=n // splits, BLOCK_D=SCAN.block_d, **_layout("forward"), CHUNK=chunk,
        ONE_LOOP=chunk < SCAN.one_loop_below, CHECKPOINTS=checkpoints,
        STAGES=SCAN.stages, HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, **options,
        num_warps=SCAN.num_warps)
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
    n_dblocks = cdiv(channels, SCAN.block_d)
    f32 = dict(device=u.device, dtype=torch.float32)
    reads_words = any(t is not None and _reads_words(t) for t in (u, delta, dout, z))
    gluon = _gluon_backward(u.device, _window(chunk), n)
    max_registers, _ = _backward_build(reads_words, gluon)
    seg_chunks, n_segs = _segments(extended, channels, ckpt.shape[1], u.device, True, reads_words, gluon)
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
    dA = poisoned(torch.empty(directions, n_segs, batch, n, channels, **f32))
    # dB and dC (per block of channels), dD and dbias (per segment and split) share a buffer each: one
    # allocation and one reduction for the pair
    dBC = poisoned(torch.empty(n_dblocks, 2, extended, length, n, **f32))
    dB, dC = dBC[:, 0], dBC[:, 1]
    dDbias = poisoned(torch.empty(2, directions, n_segs * splits, batch, channels, **f32))
    dD, dbias = dDbias[0], dDbias[1]
    window = _window(chunk)
    if window < chunk:  # the states entering every window, from the checkpoints: the backward's starting points
        entries = poisoned(torch.empty(extended, -(-length // window), n, channels, **f32))
        _window_entries_kernel[(extended, n_dblocks, splits * ckpt.shape[1])](
            u, u2, delta, delta2, A, B, B2, delta_bias if has_bias else u, ckpt, entries, channels, length, batch, 0,
            ckpt.shape[1], entries.shape[1], order.frame_tokens, order.prefix, *strides(u, delta, B), N=n,
            NS=n // splits, BLOCK_D=SCAN.block_d, **_layout("window entries"), CHUNK=chunk, WINDOW=window, STAGES=SCAN.stages,
            HAS_BIAS=has_bias, **options, num_warps=SCAN.num_warps)
        starts, seg_windows = entries, seg_chunks * (chunk // window)
    else:
        starts, seg_windows = ckpt, seg_chunks
    # the Gluon kernel keeps a window's states in shared memory
    scratch = u if gluon else \
        torch.empty(extended * n_dblocks * n_segs * splits * window * SCAN.block_d * (n // splits), **f32)
    zs = z if z is not None else u
    bias = delta_bias if has_bias else u
    block_chunks, seg_blocks, n_blocks = _summary_blocks(seg_chunks, ckpt.shape[1], chunk)
    ends, dtsum = _segment_summaries(extended, channels, n, n_blocks, u.device)
    if n_segs > 1:  # every block after the first segment
        _segment_bwd_kernel[(extended, n_dblocks, splits * (n_blocks - seg_blocks))](
            delta, delta2, A, C, C2, zs, bias, dout, ends, dtsum, channels, length, batch, 0, block_chunks * chunk,
            n_blocks, seg_blocks, order.frame_tokens, order.prefix, *strides(delta, zs, dout, C), N=n,
            NS=n // splits, BLOCK_D=SCAN.block_d, **_layout("backward summary"), STAGES=SCAN.stages, HAS_Z=z is not None,
            HAS_BIAS=has_bias, **options, num_warps=SCAN.num_warps)
    (_scan_bwd_gluon_kernel if gluon else _scan_bwd_kernel)[(extended, n_dblocks, splits * n_segs)](
        u, u2, delta, delta2, A, B, B2, C, C2, D if has_D else u, zs, bias,
        starts, dout, dlast, scratch, du, ddelta, dA, dB, dC, dD, dz if dz is not None else du, dbias, ends, dtsum,
        channels, length, batch, 0, starts.shape[1], seg_windows, n_segs, n_blocks, seg_blocks,
        2 * extended * n * length, order.frame_tokens, order.prefix, *strides(u, delta, zs, dout, du, B, C),
        N=n, NS=n // splits, BLOCK_D=SCAN.block_d, **_layout("backward"), CHUNK=window,
        STAGES=SCAN.stages, HAS_D=has_D, HAS_Z=z is not None, HAS_BIAS=has_bias, **options, HAS_DLAST=has_dlast,
        num_warps=SCAN.num_warps, **({"maxnreg": max_registers} if max_registers and nvidia(u.device) else {}))
    dB, dC = sum_parts(dBC.view(1, n_dblocks, -1)).view(2, extended, length, n)
    dB, dC = dB.transpose(1, 2), dC.transpose(1, 2)  # (directions x b, N, L) views, as ``empty_state_sums``
    dD, dbias = sum_parts(dDbias.view(2 * directions, n_segs * splits * batch, channels)).view(2, directions, channels)
    dA = sum_parts(dA.view(directions, n_segs * batch, n * channels), rows=n).view(directions, channels, n)
    return (_finish(du, dtypes[0]), _finish(ddelta, dtypes[1]), _finish(dz, dtypes[2]) if dz is not None else None,
            dB, dC, dA, dD if has_D else None, dbias if has_bias else None)


def _stacked(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.unsqueeze(0)


def triton_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus, order: ScanOrder = FORWARD,
                   chunk: int | None = None, checkpoints: bool = True):
    """(out, last state, chunk checkpoints for the backward). u, delta, z, B and C are read in any
    strides (other dtypes than fp32 are converted first); out is written in u's dtype and memory
    order. With ``order`` the kernels read the positions in that order (``ops.ScanOrder``: reversed,
    or per frame) and write each output where they read, so nothing is permuted or copied.
    ``checkpoints`` False (no backward will run): none are written, and None is returned for them."""
    return _scan_forward(u, None, delta, None, A[None], B, None, C, None, _stacked(D), z, _stacked(delta_bias),
                         delta_softplus, order, chunk, checkpoints)


def triton_backward(dout, dlast, u, delta, A, B, C, D, z, delta_bias, delta_softplus, order: ScanOrder = FORWARD,
                    ckpt=None, chunk: int | None = None):
    """Gradients (du, ddelta, dA, dB, dC, dD, dz, dbias), None where an input is absent: du, ddelta
    and dz in u's memory order and in the dtypes of u, delta and z; the others fp32. ``dlast``: the
    last state's gradient (b, d, N), or an empty tensor where it is zero."""
    du, ddelta, dz, dB, dC, dA, dD, dbias = _scan_backward(
        dout, dlast, u, None, delta, None, A[None], B, None, C, None, _stacked(D), z, _stacked(delta_bias),
        delta_softplus, order, ckpt, chunk)
    return du, ddelta, dA[0], dB, dC, None if dD is None else dD[0], dz, None if dbias is None else dbias[0]


def triton_forward_pair(u, u_bwd, delta, delta_bwd, A, B, B_bwd, C, C_bwd, D, z, delta_bias, delta_softplus,
                        order: ScanOrder, chunk: int | None = None, for_backward: bool = True):
    """Both directions of a bidirectional mixer in one launch of each kernel: the forward scan of (u, delta,
    B, C) and the scan of (u_bwd, delta_bwd, B_bwd, C_bwd) in ``order``, both gated by the shared z; A (2,
    d, N), D and delta_bias (2, d) stack the two directions' parameters. Returns (the sum of the two
    outputs (b, d, L) in u's dtype and memory order, the last states (2, b, d, N), checkpoints, the
    directions' summed ungated output (saved for the backward's dz; an empty tensor without z)).

    The gate is linear in the scan's output, so it is applied once, to the sum (``_pair_gate_fwd_kernel``):
    the scan kernels run without z, and the backward gets dz from that sum where each direction's
    kernels would compute its share and the two be added.

    ``for_backward`` False (no gradient will be taken): neither the checkpoints nor the summed output are
    written (None and an empty tensor in their places); the output is the same, bit for bit."""
    y, last, ckpt = _scan_forward(u, u_bwd, delta, delta_bwd, A, B, B_bwd, C, C_bwd, D, None, delta_bias,
                                  delta_softplus, order, chunk, checkpoints=for_backward)
    batch = u.shape[0]
    if z is None:
        return y[:batch] + y[batch:], last.unflatten(0, (2, batch)), ckpt, y.new_empty(0)
    out, total = gate_forward(y, z, keep_sum=for_backward)
    return out, last.unflatten(0, (2, batch)), ckpt, total if for_backward else y.new_empty(0)


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
        dout, dz = gate_backward(dout, total, z)
    du, ddelta, _, dB, dC, dA, dD, dbias = _scan_backward(
        dout, dout.new_empty(0), u, u_bwd, delta, delta_bwd, A, B, B_bwd, C, C_bwd, D, None, delta_bias,
        delta_softplus, order, ckpt, chunk)
    directions = lambda t: t.unflatten(0, (2, batch))  # noqa: E731
    return directions(du), directions(ddelta), dA, directions(dB), directions(dC), dD, dz, dbias
