"""The scan kernels' settings against each other on one GPU, in one run: the window-tile forward
(``_scan_fwd_tile_kernel``, the default) at several tile shapes and the step-at-a-time forward
(``_scan_fwd_kernel``), the backward's pipelining depth, register budget and gradient stores, and
inference with the stores only a backward reads.

For each variant: (1) both directions' forward+backward against the float64 reference at a small shape
(fp32 and bf16 inputs), the largest error over the output and every gradient; (2) the same call at the
model's shapes (b 8, L 6273: 64 frames; b 32, L 1569: 16 frames), bf16 u, Δ and z, captured in a CUDA
graph; (3) where its GPU time goes at b 8, L 6273 (torch.profiler, by kernel). Then videomamba_small's
64-frame training step (batch 8, bf16 autocast, fused AdamW) under the fastest variant and the
default, the
variants that patch the launchers rather than settings (fp32 gradients cast after the backward;
inference storing checkpoints), the conv variants (``CONV`` fields: the conv + SiLU of both directions
timed alone, then in the model rows), and the ViT-S with SDPA, in the same process.

Usage, on the GPU machine from the repository root:
  PYTHONPATH=src python3 benchmarks/scan_tile_ab.py [--variants NAME ...] [--long-only] [--no-model]
      [--model-rounds N] [--model-steps S] [--model-variants NAME ...]
("default" is the window-8 forward on 16 channels and, on NVIDIA GPUs, the Gluon backward.)
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from unittest import mock
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scan_gpu as sg  # noqa: E402
from scan_gpu_sweep import _fresh_step  # noqa: E402

from videomamba.ops import ScanInputs, ScanOrder, selective_scan_pair  # noqa: E402
from videomamba.ops.triton import CONV, SCAN, override  # noqa: E402
from videomamba.ops.triton import scan as triton_scan  # noqa: E402

selective_scan_module = sys.modules["videomamba.ops.selective_scan"]  # the package exports a function of that name
from videomamba.ops.triton.settings import ScanSettings  # noqa: E402

# name -> SCAN fields: the window-tile forward's window steps (W), channels a program (BD), channel groups (G),
# pipelining, programs an SM planned for (from its registers: 65536 / (32 x registers))
UPCAST = "upcast"  # a variant key that is no SCAN field: cast the bf16 inputs to fp32 in the timed call
# a variant key that is no SCAN field: the backward writes du, ddelta and dz in fp32 and casts them after
FP32_GRADIENTS = "fp32 gradients"
# a variant key that is no SCAN field: inference stores the checkpoints and summed output as training does
INFERENCE_STORES = "inference stores"
# a variant key that is no SCAN field: CONV fields (the conv kernels, timed in the model rows alone)
CONV_FIELDS = "conv"
VARIANTS = {
    "default": {},
    "fwd step at a time": dict(forward_tile=None),
    "fwd tile W4 BD16 G4": dict(forward_tile=4, forward_tile_block_d=16, forward_tile_programs_per_sm=12),
    "fwd tile W4 BD32 G4": dict(forward_tile=4, forward_tile_block_d=32),
    "fwd tile W4 BD16 G4 pipelined": dict(forward_tile=4, forward_tile_block_d=16, forward_tile_programs_per_sm=12,
                                          forward_tile_stages=2),
    # the window tile's states in two parts a program (163 registers against 244): 12 programs an SM planned (two
    # forward segments and a summary pass at batch 8), or the 8 of the whole tile (one segment at batch 8, so the
    # extra programs an SM are used only where the batch fills them: inference at batch 32)
    "fwd tile 2 state parts": dict(forward_tile_state_parts=2, forward_tile_programs_per_sm=12),
    "fwd tile 2 state parts, planned 8": dict(forward_tile_state_parts=2),
    # the window tile in one part at every batch (the default takes 2 past one wave of programs: inference)
    "fwd tile 1 state part": dict(forward_tile_state_parts=1),
    # the step loops' pipelining depth (every pass but the tile forward): 2 stages compile the paired bf16
    # backward to 733 instructions a step against 787 at 4 (235 registers, 8 programs an SM)
    "stages 2": dict(stages=2),
    "stages 3": dict(stages=3),
    # the bf16 backward capped at 192 registers (10 programs an SM, no spill at 2 stages) or planned at the
    # 9 programs an SM its 210 uncapped registers allow
    "stages 2, bwd 192 registers": dict(stages=2, backward_builds={"fp32": (168, 12), "bf16": (192, 10)}),
    "bwd planned 9 an SM": dict(backward_builds={"fp32": (168, 12), "bf16": (None, 9)}),
    # the backward's tile as 8 groups of 4 channels: with bf16 inputs 4 channels and 4 states a thread (the
    # fp32 build's layout) where G 1 gives 8 channels and 2 states; 662 instructions a step against 787
    "bwd G8": dict(channel_groups=dict(ScanSettings().channel_groups, backward=8)),
    "bwd G8, stages 2": dict(channel_groups=dict(ScanSettings().channel_groups, backward=8), stages=2),
    # bf16 u, Δ and z cast to fp32 before the kernels (and their gradients back), timed with the casts: the
    # fp32 builds issue 588 instructions a backward step against 787 for the bf16 word reads
    "fp32 kernels, casts included": {UPCAST: True},
    # the backward before its bf16 stores went 4 channels (8 bytes) a vector: du, ddelta and dz written fp32, for
    # the same 4-channel tile (488 instructions a step against 491), then cast in two more passes
    "bwd fp32 gradients, cast after": {FP32_GRADIENTS: True},
    # the forward checkpoints every window (8 steps) at every length, as short sequences do: the backward
    # needs no window-entries pass, for 8x the checkpoint memory (the upper bound of removing that pass)
    "checkpoints every window": dict(short_sequence=1 << 30),
    # inference as before it skipped what only the backward reads (the model rows' clips/s tell)
    "inference stores checkpoints": {INFERENCE_STORES: True},
    # the backward kernel in plain Triton (the fallback where Gluon cannot run): the compiler's layouts, 5
    # conversions through shared memory a step, the window's states in a global scratch buffer
    "bwd in plain Triton": dict(backward_gluon=False),
    # the Gluon backward without its register cap: 203 registers, 9 programs an SM
    "bwd in Gluon, uncapped": dict(gluon_build=(None, 9)),
}
_NOT_SCAN = (UPCAST, FP32_GRADIENTS, INFERENCE_STORES, CONV_FIELDS)


@contextlib.contextmanager
def variant(name: str):
    """Within: the SCAN settings of variant ``name``, and its launcher patch where it has one."""
    settings = {k: v for k, v in VARIANTS[name].items() if k not in _NOT_SCAN}
    with contextlib.ExitStack() as stack:
        stack.enter_context(override(SCAN, **settings))
        stack.enter_context(override(CONV, **VARIANTS[name].get(CONV_FIELDS, {})))
        if VARIANTS[name].get(FP32_GRADIENTS):
            allocate = triton_scan._result
            backward = triton_scan._scan_backward

            def fp32_backward(*args, **kwargs):
                # the backward's bf16 results allocated fp32: the kernel stores fp32, ``_finish`` casts
                with mock.patch.object(triton_scan, "_result", lambda like, dtype, splits, batch: allocate(
                        like, torch.float32 if dtype == torch.bfloat16 else dtype, splits, batch)):
                    return backward(*args, **kwargs)
            stack.enter_context(mock.patch.object(triton_scan, "_scan_backward", fp32_backward))
        if VARIANTS[name].get(INFERENCE_STORES):
            stack.enter_context(mock.patch.object(selective_scan_module, "_needs_gradient", lambda *tensors: True))
        yield


def _pair_inputs(b: int, L: int, dtype: torch.dtype, seed: int = 0):
    """Both directions' inputs (u, Δ and z in ``dtype``; the rest fp32), leaves with gradients."""
    directions = []
    for s in (seed, seed + 1):
        x = sg.inputs(b, 768, L, seed=s)
        directions.append({k: (v.to(dtype) if k in ("u", "delta", "z") else v).detach().requires_grad_()
                           for k, v in x.items()})
    return directions


def _call(directions, backend: str = "triton", upcast: bool = False):
    """Both directions' scan; ``upcast``: u, Δ and z cast to fp32 first, the output back to their dtype."""
    dtype = directions[0]["u"].dtype
    if upcast:
        directions = [{k: (v.float() if k in ("u", "delta", "z") else v) for k, v in x.items()} for x in directions]
    z = directions[0]["z"]
    scans = [ScanInputs(**{k: v for k, v in x.items() if k != "z"}) for x in directions]
    y = selective_scan_pair(scans[0], scans[1], z, ScanOrder("reverse"), delta_softplus=True, backend=backend)
    return y.to(dtype) if upcast else y


def max_error(dtype: torch.dtype, upcast: bool = False) -> float:
    """Largest error over the output and every gradient, against the float64 reference, relative to the
    largest magnitude of each (b 2, L 1000, d_inner 768)."""
    got = _pair_inputs(2, 1000, dtype, seed=5)
    truth = [{k: v.detach().double().requires_grad_() for k, v in x.items()} for x in got]
    y, y_true = _call(got, upcast=upcast), _call(truth, "reference")
    w = torch.randn(y.shape, device=y.device, dtype=torch.float64)
    (y.double() * w).sum().backward()
    (y_true * w).sum().backward()
    errors = [((y.double() - y_true).abs().max() / y_true.abs().max().clamp(min=1)).item()]
    for x, t in zip(got, truth):
        for k in (k for k in x if x[k].grad is not None):  # direction 1's z is unused (the pair shares z)
            errors.append(((x[k].grad.double() - t[k].grad).abs().max() / t[k].grad.abs().max().clamp(min=1)).item())
    return max(errors)


def step_ms(b: int, L: int, upcast: bool = False) -> tuple[float, dict[str, float]]:
    """(graphed forward+backward ms, GPU µs by kernel of one step) at (b, L), bf16 u, Δ, z."""
    directions = _pair_inputs(b, L, torch.bfloat16)
    step = _fresh_step(lambda: _call(directions, upcast=upcast), torch.randn_like(_call(directions)),
                       [v for x in directions for v in x.values()])
    ms = min(sg._graph_ms(step, replays=10) for _ in range(2))
    kernels: dict[str, float] = {}
    if (b, L) == (8, 6273):
        step()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            step()
            torch.cuda.synchronize()
        for e in prof.key_averages():
            if e.self_device_time_total > 0:
                kernels[e.key] = e.self_device_time_total / 1e3
    return ms, kernels


def conv_ms(b: int = 8, L: int = 6273, d: int = 768) -> float:
    """Both directions' conv + SiLU forward+backward of one layer at (b, L), bf16 channels-last x, the
    spatio-temporal reversal for the second, captured in a CUDA graph (ms)."""
    from videomamba.ops.sequence_conv import sequence_conv_silu_pair

    x = torch.randn(b, L, d, device="cuda", dtype=torch.bfloat16).transpose(1, 2).requires_grad_()
    w = torch.randn(2, d, 1, 4, device="cuda", requires_grad=True)
    bias = torch.randn(2, d, device="cuda", requires_grad=True)

    def both() -> torch.Tensor:
        first, second = sequence_conv_silu_pair(x, w, bias, ScanOrder("reverse"), use_triton=True)
        return first + second

    step = _fresh_step(both, torch.randn_like(both()), [x, w, bias])
    return min(sg._graph_ms(step, replays=10) for _ in range(2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), help="variant names (default: all)")
    parser.add_argument("--no-model", action="store_true", help="skip the 64-frame training steps")
    parser.add_argument("--long-only", action="store_true", help="time b 8, L 6273 alone (not b 32, L 1569)")
    parser.add_argument("--model-rounds", type=int, default=1,
                        help="measure the model rows this many times, interleaved (a fresh model's step scatters)")
    parser.add_argument("--model-steps", type=int, default=5, help="training steps in each model row's median")
    parser.add_argument("--model-variants", nargs="*", default=None,
                        help="the variants with a model row (default: the fastest, the launcher patches, the conv's)")
    args = parser.parse_args()
    sg.header("scan kernels A/B")
    sg.warm_up_gpu()
    print("| variant | max error fp32 | max error bf16 | b 8, L 6273 ms | b 32, L 1569 ms | "
          "largest kernels at b 8, L 6273 (ms) |\n|---|---|---|---|---|---|")
    timed = {}
    for name in args.variants:
        if CONV_FIELDS in VARIANTS[name]:
            with variant(name):
                ms = conv_ms()
            print(f"| {name}: conv + SiLU of both directions, fwd+bwd, b 8, L 6273 | {ms:.3f} ms against "
                  f"{conv_ms():.3f} by default |||||", flush=True)
            continue
        try:
            upcast = VARIANTS[name].get(UPCAST, False)
            with variant(name):
                errors = [max_error(dtype, upcast) for dtype in (torch.float32, torch.bfloat16)]
                long_ms, kernels = step_ms(8, 6273, upcast)
                torch.cuda.empty_cache()
                short_ms = float("nan") if args.long_only else step_ms(32, 1569, upcast)[0]
                torch.cuda.empty_cache()
        except Exception as err:  # noqa: BLE001 - report and go on
            print(f"| {name} | failed: {str(err)[:300]} |", flush=True)
            torch.cuda.empty_cache()
            continue
        timed[name] = long_ms
        top = sorted(kernels.items(), key=lambda kv: -kv[1])[:5]
        print(f"| {name} | {errors[0]:.1e} | {errors[1]:.1e} | {long_ms:.3f} | {short_ms:.3f} | "
              + "; ".join(f"{k[:32]} {v:.3f}" for k, v in top) + " |", flush=True)
    print()
    if args.no_model:
        return
    import gpu

    best = min(timed, key=timed.get) if timed else "default"
    if args.model_variants is not None:
        chosen = [name for name in args.model_variants if name != "default"]
    else:
        chosen = [name for name in dict.fromkeys([best, "fwd step at a time", "bwd fp32 gradients, cast after",
                                                  "inference stores checkpoints"])
                  if name in timed and name != "default" and UPCAST not in VARIANTS[name]]
        chosen += [name for name in args.variants if CONV_FIELDS in VARIANTS[name]]
    print(f"## videomamba_small, 64 frames, batch 8: the default against {', '.join(chosen)}\n")
    print("| model | train ms | peak GiB | infer clips/s |\n|---|---|---|---|")
    rows = [("ViT-S (SDPA)", None), ("ours, default", "default")] + [(f"ours, {name}", name) for name in chosen]
    median = sg._median_ms
    with mock.patch.object(sg, "_median_ms", lambda fn, repeats: median(fn, max(repeats, args.model_steps))):
        for _ in range(args.model_rounds):
            for label, settings in rows:
                try:
                    if settings is None:
                        r = gpu._measure(gpu._vit, 64)
                    else:
                        with variant(settings):
                            r = gpu._measure(gpu._videomamba(64), 64)
                except Exception as err:  # noqa: BLE001 - report and go on to the other rows
                    print(f"| {label} | failed: {str(err)[:300]} |||", flush=True)
                    torch.cuda.empty_cache()
                    continue
                print(f"| {label} | {r['train_ms']:.1f} | {r['train_gib']:.1f} | {r['infer_cps']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
