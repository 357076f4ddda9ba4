"""Sweep the Triton scan's tiles on the GPU (one direction, fwd and fwd+bwd, d_inner 768, d_state 16,
fp32 inputs in (b, L, d) memory order as the mixer passes them): channels per program, warps,
pipeline stages, state split, chunk and the dB/dC reduction.
Usage: PYTHONPATH=src python3 benchmarks/scan_gpu_sweep.py"""

import torch
import triton.testing

import videomamba.ops.triton_scan as ts
from videomamba.ops import selective_scan

# (BLOCK_D, warps, stages, state split, chunk, atomic dB/dC)
SETTINGS = [(32, 1, 4, 1, 64, False), (32, 1, 4, 2, 64, False), (32, 1, 4, 4, 64, False), (32, 1, 3, 1, 64, False),
            (32, 1, 6, 2, 64, False), (32, 1, 4, 1, 32, False), (32, 1, 4, 1, 128, False), (32, 1, 4, 1, 64, True),
            (16, 1, 4, 1, 64, False), (16, 1, 4, 2, 64, False), (64, 2, 4, 2, 64, False), (32, 2, 4, 1, 64, False)]


def inputs(b: int, L: int) -> dict:
    g = torch.Generator(device="cuda").manual_seed(0)
    seq = lambda c, s=1.0: (s * torch.randn(b, L, c, generator=g, device="cuda")).transpose(1, 2)  # noqa: E731
    x = dict(u=seq(768), delta=seq(768, 0.5), A=-(torch.rand(768, 16, device="cuda") + 0.1), B=seq(16), C=seq(16),
             D=torch.randn(768, device="cuda"), z=seq(768), delta_bias=0.3 * torch.randn(768, device="cuda"))
    return {k: v.requires_grad_() for k, v in x.items()}


def main() -> None:
    print("| b | L | BLOCK_D | warps | stages | split | chunk | dB/dC | fwd ms | fwd+bwd ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    defaults = (ts.BLOCK_D, ts.NUM_WARPS, ts.STAGES, ts.N_SPLIT, ts.CHUNK, ts.ATOMIC_DBC)
    for b, L in ((8, 1569), (32, 1569), (8, 6273)):
        x = inputs(b, L)
        for setting in SETTINGS:
            ts.BLOCK_D, ts.NUM_WARPS, ts.STAGES, ts.N_SPLIT, ts.CHUNK, ts.ATOMIC_DBC = setting
            fwd = lambda: selective_scan(**x, delta_softplus=True, backend="triton")  # noqa: E731
            grad = torch.randn_like(fwd())
            with torch.no_grad():
                f = triton.testing.do_bench(fwd, rep=50)
            fb = triton.testing.do_bench(lambda: fwd().backward(grad), rep=50)
            block, warps, stages, split, chunk, atomic = setting
            print(f"| {b} | {L} | {block} | {warps} | {stages} | {split} | {chunk} | "
                  f"{'atomics' if atomic else 'partials'} | {f:.3f} | {fb:.3f} |", flush=True)
    ts.BLOCK_D, ts.NUM_WARPS, ts.STAGES, ts.N_SPLIT, ts.CHUNK, ts.ATOMIC_DBC = defaults


if __name__ == "__main__":
    main()
