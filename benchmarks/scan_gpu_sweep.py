"""Sweep the Triton scan's block of channels, warps and chunk on the GPU (one direction, fwd and
fwd+bwd, d_inner 768, d_state 16). Usage: PYTHONPATH=src python3 benchmarks/scan_gpu_sweep.py"""

import torch
import triton.testing

import videomamba.ops.triton_scan as ts
from videomamba.ops import selective_scan

print("| b | L | BLOCK_D | warps | chunk | dB/dC | fwd ms | fwd+bwd ms |\n|---|---|---|---|---|---|---|---|")
for b, L in ((8, 1569), (32, 1569)):
    g = torch.Generator(device="cuda").manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g, device="cuda")  # noqa: E731
    x = dict(u=r(b, 768, L), delta=0.5 * r(b, 768, L), A=-(torch.rand(768, 16, device="cuda") + 0.1), B=r(b, 16, L),
             C=r(b, 16, L), D=r(768), z=r(b, 768, L), delta_bias=0.3 * r(768))
    for v in x.values():
        v.requires_grad_()
    for block in (4, 8, 16, 32):
        for warps in (1, 2, 4):
            for chunk in (32, 64):
                for atomic in (True, False):
                    ts.BLOCK_D, ts.NUM_WARPS, ts.CHUNK, ts.ATOMIC_DBC = block, warps, chunk, atomic
                    fwd = lambda: selective_scan(**x, delta_softplus=True, backend="triton")  # noqa: E731
                    with torch.no_grad():
                        f = triton.testing.do_bench(fwd, rep=50)
                    fb = triton.testing.do_bench(lambda: fwd().sum().backward(), rep=50)
                    mode = "atomics" if atomic else "partials"
                    print(f"| {b} | {L} | {block} | {warps} | {chunk} | {mode} | {f:.3f} | {fb:.3f} |", flush=True)

print("\nversion 2 (chunk-parallel)\n")
print("| b | L | BLOCK_D | warps | chunk | dB/dC | fwd ms | fwd+bwd ms |\n|---|---|---|---|---|---|---|---|")
ts.VERSION = 2
for b, L in ((8, 1569), (32, 1569)):
    g = torch.Generator(device="cuda").manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g, device="cuda")  # noqa: E731
    x = dict(u=r(b, 768, L), delta=0.5 * r(b, 768, L), A=-(torch.rand(768, 16, device="cuda") + 0.1), B=r(b, 16, L),
             C=r(b, 16, L), D=r(768), z=r(b, 768, L), delta_bias=0.3 * r(768))
    for v in x.values():
        v.requires_grad_()
    for block in (2, 4, 8):
        for warps in (2, 4, 8):
            for chunk in (32, 64, 128):
                for atomic in (True, False):
                    ts.V2_BLOCK_D, ts.V2_NUM_WARPS, ts.CHUNK, ts.ATOMIC_DBC = block, warps, chunk, atomic
                    fwd = lambda: selective_scan(**x, delta_softplus=True, backend="triton")  # noqa: E731
                    try:
                        with torch.no_grad():
                            f = triton.testing.do_bench(fwd, rep=50)
                        fb = triton.testing.do_bench(lambda: fwd().sum().backward(), rep=50)
                    except Exception as err:  # a tile too large for the registers or shared memory
                        print(f"| {b} | {L} | {block} | {warps} | {chunk} | - | failed: {type(err).__name__} | |")
                        continue
                    mode = "atomics" if atomic else "partials"
                    print(f"| {b} | {L} | {block} | {warps} | {chunk} | {mode} | {f:.3f} | {fb:.3f} |", flush=True)
