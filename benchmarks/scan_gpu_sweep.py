"""Sweep the Triton scan's tiles on the GPU (one direction, fwd and fwd+bwd, d_inner 768, d_state 16):
version 1's channels per program, warps and chunk, and version 2's; both dB/dC reductions.
Usage: PYTHONPATH=src python3 benchmarks/scan_gpu_sweep.py"""

import itertools

import torch
import triton.testing

import videomamba.ops.triton_scan as ts
from videomamba.ops import selective_scan


def inputs(b: int, L: int) -> dict:
    g = torch.Generator(device="cuda").manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g, device="cuda")  # noqa: E731
    x = dict(u=r(b, 768, L), delta=0.5 * r(b, 768, L), A=-(torch.rand(768, 16, device="cuda") + 0.1), B=r(b, 16, L),
             C=r(b, 16, L), D=r(768), z=r(b, 768, L), delta_bias=0.3 * r(768))
    return {k: v.requires_grad_() for k, v in x.items()}


def sweep(version: int, blocks, warps, chunks) -> None:
    """Time every tile setting of one kernel version; settings that do not compile are reported."""
    print(f"\nversion {version}\n")
    print("| b | L | BLOCK_D | warps | chunk | dB/dC | fwd ms | fwd+bwd ms |\n|---|---|---|---|---|---|---|---|")
    ts.VERSION = version
    for b, L in ((8, 1569), (32, 1569)):
        x = inputs(b, L)
        for block, warp, chunk, atomic in itertools.product(blocks, warps, chunks, (True, False)):
            if version == 1:
                ts.BLOCK_D, ts.NUM_WARPS = block, warp
            else:
                ts.V2_BLOCK_D, ts.V2_NUM_WARPS = block, warp
            ts.CHUNK, ts.ATOMIC_DBC = chunk, atomic
            mode = "atomics" if atomic else "partials"
            fwd = lambda: selective_scan(**x, delta_softplus=True, backend="triton")  # noqa: E731
            try:
                with torch.no_grad():
                    f = triton.testing.do_bench(fwd, rep=50)
                fb = triton.testing.do_bench(lambda: fwd().sum().backward(), rep=50)
            except Exception as err:  # a tile too large for the registers or shared memory
                print(f"| {b} | {L} | {block} | {warp} | {chunk} | {mode} | failed: {type(err).__name__} | |")
                continue
            print(f"| {b} | {L} | {block} | {warp} | {chunk} | {mode} | {f:.3f} | {fb:.3f} |", flush=True)


sweep(1, blocks=(4, 8, 16, 32), warps=(1, 2, 4), chunks=(32, 64))
sweep(2, blocks=(2, 4, 8), warps=(2, 4, 8), chunks=(32, 64, 128))
