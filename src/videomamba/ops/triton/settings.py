"""The Triton kernels' launch settings: tile sizes, warps, pipelining, segmenting, builds.

One ``ScanSettings`` (``SCAN``), one ``ConvSettings`` (``CONV``) and one ``NormSettings`` (``NORM``) hold
every choice the launchers read at call time, so a benchmark or a test changes them in one place
(``override``). The values are the ones measured fastest on an H100 (Triton 3.6); docs/benchmarks.md gives the measurements. A
setting that lost its measurement is not kept as a switch.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Iterator


@dataclass
class ScanSettings:
    """How the selective scan's kernels are launched (``ops.triton.scan``)."""

    # channels per program: one per lane of the single warp
    block_d: int = 32
    num_warps: int = 1
    # steps between the forward's state checkpoints (the backward restarts from them)
    chunk: int = 64
    # sequences shorter than short_sequence checkpoint every short_chunk steps, the backward's window: it
    # then needs no window-entries pass, which leaves a short sequence latency-bound; the price is 8x the
    # checkpoint memory, paid only where sequences are short
    short_sequence: int = 1024
    short_chunk: int = 8
    # software-pipelining depth of the step loops: the loads of the next steps, which do not depend on
    # the state, are in flight while a step computes
    stages: int = 4
    # programs sharing one block of channels, each with N / n_split states (partial sums added after).
    # None: 2 where batch x channel blocks give the GPU fewer than two programs per SM, else 1
    n_split: int | None = None
    # segment-parallel scan (``_segments``): None chooses the count from the resident programs; an int
    # forces it; a (forward, backward) pair forces either pass's (None in it: chosen)
    segments: int | tuple[int | None, int | None] | None = None
    # resident programs per SM that the segment rule plans for: (forward, backward); backward None: what
    # its build fits (``backward_builds``)
    programs_per_sm: tuple[int, int | None] = (16, None)
    # each segment's relative cost (its summaries and carries) in the choice of the segment count
    segment_cost: float = 0.05
    min_segment_chunks: int = 2
    # the forward runs one loop over a segment (checkpoints by a predicated store) where checkpoints lie
    # fewer steps apart than this, else a loop per chunk
    one_loop_below: int = 32
    # the summary pass works in blocks of up to this many chunks, so its programs number blocks, not
    # segments, and fill the GPU
    summary_chunks: int = 2
    # steps the backward recomputes into its scratch at a time (a divisor of the chunk; None: the chunk):
    # a small window keeps each program's scratch in L2
    backward_window: int | None = 8
    # softplus through the GPU's approximate log2 on NVIDIA GPUs (the interpreter has no libdevice)
    fast_softplus: bool = True
    # fill every output buffer with NaN before the kernels run, so an element a kernel forgets to write
    # shows in a correctness check
    poison_outputs: bool = False
    # the (N, G, block_d // G) state tile per kernel: G channel groups. With vectorised accesses the
    # layout follows the 16-byte accesses; the passes that only run the recurrence gain from G 4, the
    # backward loses from it
    channel_groups: dict[str, int] = field(default_factory=lambda: {
        "forward": 1, "forward summary": 4, "window entries": 4, "backward summary": 1, "backward": 1})
    # whether a kernel's accesses along the channels may be vectorised (16 bytes a thread); False hides
    # the alignment from the compiler. The backward summaries, which sum nothing over the channels, are
    # the one pass faster with scalar accesses
    vector_access: dict[str, bool] = field(default_factory=lambda: {
        "forward": True, "forward summary": True, "window entries": True, "backward summary": False,
        "backward": True})
    # the pair gate's elementwise kernels: steps and channels per program, warps
    gate_block_l: int = 32
    gate_block_d: int = 64
    gate_warps: int = 4
    # the partial-sum reduction: elements per program, parts loaded together, warps
    sum_block: int = 512
    sum_parts: int = 8
    sum_warps: int = 4
    # the backward kernel's build by what it reads, fp32 inputs or bf16 read as words: (register cap or
    # None, programs an SM that the segment rule then plans for). The fp32 build runs faster capped;
    # the bf16 build spills under the same cap, so it stays uncapped
    backward_builds: dict[str, tuple[int | None, int]] = field(default_factory=lambda: {
        "fp32": (168, 12), "bf16": (None, 8)})
    # a register cap forced on every backward build (None: ``backward_builds``')
    backward_max_registers: int | None = None
    # the backward kernel in Gluon (``ops.triton.scan_gluon``) on NVIDIA GPUs: layouts chosen by the kernel (no
    # conversion through shared memory a step) and each window's states in shared memory rather than a global
    # scratch buffer; 2.24 ms a layer at 64 frames on an H100 against the plain kernel's 3.69. Elsewhere (the
    # interpreter, a Triton without Gluon) the plain kernel runs. Its build's register cap (168 leaves the
    # model's build unspilled: 12 programs an SM, 17 KiB of shared memory each; one direction's fp32 build with
    # z spills 64 bytes; uncapped, 203 registers, it took 4.85 ms) and the programs an SM the segment rule plans for
    backward_gluon: bool = True
    gluon_build: tuple[int | None, int] = (168, 12)
    # the forward a window at a time in registers (``_scan_fwd_tile_kernel``; None: ``_scan_fwd_kernel``, a step
    # at a time): the window's steps (a power of two; at most the checkpoint interval), channels a program,
    # channel groups, pipelining, and the programs an SM that the segment rule plans for (242 registers: 8).
    # A window of 8 on 16 channels measured fastest of the tile shapes tried (docs/benchmarks.md)
    forward_tile: int | None = 8
    forward_tile_block_d: int = 16
    forward_tile_groups: int = 4
    forward_tile_stages: int = 1
    forward_tile_programs_per_sm: int = 8
    # the window tile's states as this many parts a program, one after the other through each window (1 or 2;
    # None: 2 where the programs fill more than one wave, ``scan._tile_state_parts``): 2 holds half the tile live
    # (163 registers against 244 on sm_90, 12 programs an SM against 8) for 2 % more instructions a window
    forward_tile_state_parts: int | None = None


@dataclass
class ConvSettings:
    """How the sequence conv + SiLU kernels are launched (``ops.triton.conv``)."""

    block_l: int = 32  # steps per program (forward and input-gradient kernels)
    block_d: int = 64  # channels per program
    num_warps: int = 4
    # the output-gradient kernel (SiLU', dweight and dbias partial sums per tile) holds more per element:
    # a smaller tile on one warp keeps it out of register spills
    grad_block_l: int = 16
    grad_block_d: int = 64
    grad_warps: int = 1


@dataclass
class NormSettings:
    """How the residual add + RMSNorm kernels are launched (``ops.triton.norm``)."""

    block_elements: int = 4096  # a program's tile: this many elements, whole rows (at least one)
    num_warps: int = 4
    # the backward's programs at most (each loops over blocks of rows and writes one partial weight gradient)
    backward_programs: int = 1024


SCAN = ScanSettings()
CONV = ConvSettings()
NORM = NormSettings()


@contextlib.contextmanager
def override(settings: ScanSettings | ConvSettings | NormSettings, **changes) -> Iterator[None]:
    """Change fields of ``settings`` (``SCAN``, ``CONV`` or ``NORM``) inside the ``with`` block; restored after."""
    names = {f.name for f in dataclasses.fields(settings)}
    unknown = set(changes) - names
    if unknown:
        raise AttributeError(f"{type(settings).__name__} has no {', '.join(sorted(unknown))}")
    saved = {name: getattr(settings, name) for name in changes}
    for name, value in changes.items():
        setattr(settings, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(settings, name, value)
