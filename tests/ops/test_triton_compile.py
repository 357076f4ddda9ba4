"""Every Triton kernel variant compiles for sm_90 here, without a GPU (the interpreter test does not
run the compiler)."""

import pytest

from videomamba.ops.triton import SCAN
from videomamba.ops.triton import compile_check as triton_compile_check
from videomamba.ops.triton import scan as scan_launch
from videomamba.ops.triton import scan_gluon


@pytest.mark.skipif(not triton_compile_check.available(), reason="Triton without its NVIDIA backend tools")
def test_every_kernel_compiles_for_hopper():
    rows = {row.name: row for row in triton_compile_check.kernel_resources(capability=90, processes=2)}
    scans = ("forward", "backward", "segment summary forward", "segment summary backward", "window entries")
    orders = ("", " reversed", " spatial order", " temporal order")
    convs = ("conv+silu forward", "conv+silu output grad", "conv+silu input grad")
    assert set(rows) == ({f"{k}{r}" for k in scans for r in orders}
                         | {f"{k}{v}" for k in scans for v in (" bf16", " paired", " paired bf16")}
                         | {f"{k}{v}" for k in convs for v in ("", " paired", " paired bf16")}
                         | {f"pair gate {k}{v}" for k in ("forward", "output again", "backward") for v in ("", " bf16")}
                         | {"forward tile paired bf16", "forward tile paired bf16, 2 state parts"}
                         | {"add + rms norm forward", "add + rms norm backward"}
                         | ({"backward gluon paired bf16", "backward gluon"} if scan_gluon.gluon is not None
                            else set()))
    # the default tiles fit the registers, also in the model's build (paired, bf16, the one closest to the
    # limit); a spill costs local-memory traffic a
    # step. The fp32 backward alone is capped on purpose (``BACKWARD_BUILDS``: 12 programs an SM, measured
    # faster with its few spilled bytes); its cap holds and the spill stays small
    cap = SCAN.backward_builds["fp32"][0]
    for row in rows.values():
        capped = cap if row.name.startswith("backward") and "bf16" not in row.name and "gluon" not in row.name else None
        assert 0 < row.registers <= (capped or 255) and row.shared >= 0, row
        # the Gluon backward's cap (``SCAN.gluon_build``) spills a little (64 bytes) in one direction's fp32
        # build with z
        assert row.spill_stack <= (32 if capped else 64 if row.name == "backward gluon" else 0), row
    for kernel in scans:
        # the step loops' loads are issued ahead as asynchronous copies, also for bf16 inputs (read as words;
        # Triton leaves 2-byte loads synchronous)
        assert rows[kernel].async_copies > 0 and rows[f"{kernel} bf16"].async_copies == rows[kernel].async_copies

    # compiled as the JIT compiles a model's call (aligned pointers and strides), the state tile takes the
    # vectorised layout, 4 states of 4 channels a thread: the fp32 backward's sums over the channels (dB,
    # dC) and the states then take at most 64 shuffles a step, where whole channels per thread (the scalar
    # accesses, ``VECTOR_ACCESS``) would take 160 for dB and dC alone; the forward sums over 4 states lanes
    assert rows["backward"].shuffles <= 64 and rows["forward"].shuffles <= 16, (rows["backward"], rows["forward"])
    # bf16 results are stored 4 channels a vector, so the bf16 builds keep that tile: as many shuffles as the fp32
    # builds (16-byte bf16 stores gave the backward 8 channels and 2 states a thread, and 100 shuffles a step
    # paired; the step forward 56)
    for kernel in ("backward", "backward paired", "forward"):
        bf16 = rows[kernel.replace(" paired", "") + (" paired bf16" if "paired" in kernel else " bf16")]
        assert bf16.shuffles == rows[kernel].shuffles, (bf16, rows[kernel])
    # the window tile in two parts of its states holds half the tile live: one-warp programs an SM (65536
    # registers) at least 1.5x as many, for at most 5 % more instructions a window
    whole, halves = rows["forward tile paired bf16"], rows["forward tile paired bf16, 2 state parts"]
    resident = [65536 // (32 * row.registers) for row in (whole, halves)]
    assert resident[1] >= 1.5 * resident[0] and max(halves.loops) <= 1.05 * max(whole.loops), (whole, halves)
    if scan_gluon.gluon is not None:
        # the Gluon backward, in the model's build: its layouts are chosen so that nothing crosses between them a
        # step (no barrier in its step loops: one a window, and two outside, where the plain kernel has 18), its
        # window's states sit in shared memory (window x 16 states x block_d fp32), each step issues fewer
        # instructions than the plain kernel's, the recompute and the adjoint both, and its cap holds the
        # programs an SM that the segment rule plans for
        gluon, plain = rows["backward gluon paired bf16"], rows["backward paired bf16"]
        assert gluon.barriers <= 4 < plain.barriers and gluon.async_copies == 0, (gluon, plain)
        assert gluon.shared >= scan_launch._window(SCAN.chunk) * 16 * SCAN.block_d * 4, gluon
        assert all(g < p for g, p in zip(gluon.loops[1:3], plain.loops[1:3])), (gluon, plain)
        assert 65536 // (32 * gluon.registers) >= SCAN.gluon_build[1], gluon
    # both directions in one launch select their inputs and positions once per program: within 32 registers
    # of one direction's kernels (no spill either way, above)
    for kernel in scans:
        assert abs(rows[f"{kernel} paired"].registers - rows[f"{kernel} reversed"].registers) <= 32, rows[kernel]


def test_hidden_alignment_gives_whole_channels_per_thread():
    """The layout follows what the compiler knows of the alignment: with the channel offsets' alignment
    hidden (``VECTOR_ACCESS`` False, what a compile without the JIT's specialisation also saw, and what the
    check reported until 2026-11-26) the backward's tile holds whole channels per thread and its dB/dC sums
    take 5 shuffle levels for each of the 2 x 16 states, against at most 64 shuffles in the vectorised
    build above."""
    scalar = dict(SCAN.vector_access, backward=False)
    saved = SCAN.vector_access
    try:
        SCAN.vector_access = scalar
        rows = {row.name: row for row in triton_compile_check.kernel_resources(capability=90, kernels=("backward",))}
    finally:
        SCAN.vector_access = saved
    assert rows["backward"].shuffles >= 160, rows["backward"]
