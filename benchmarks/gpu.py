"""The GPU benchmark of record: one run on one card prints every table docs/benchmarks.md reports for
the GPU, each with its baselines measured in the same run.

  scan     both directions' scan, forward+backward, per layer at the model's shapes (b 8, L 6273: 64
           frames; b 32, L 1569: 16 frames), bf16 and fp32, ours against mamba_ssm's CUDA scan x2,
           captured in CUDA graphs (GPU time), with the memory and exp floors of the card
  e2e      videomamba_small at 16 / 32 / 64 frames: training step (batch 8) and inference (batch 32),
           ours (also with activations recomputed, with 12 and 24 blocks recomputed), the same network on mamba_ssm's scan, and a
           ViT-S with flash attention (SDPA), eager
  sweep    16 / 32 / 64 / 128 frames against the ViT-S eager and torch.compile'd: training and
           inference, and the frame count from which VideoMamba is the faster
  profile  where the GPU time of a 64-frame training step and of inference goes, grouped by kernel
           family (the ViT-S's inference beside ours)

Usage, on the GPU machine from the repository root (mamba_ssm built first by
benchmarks/build_mamba_ssm.sh; without it its columns stay empty):
  PYTHONPATH=src python3 benchmarks/gpu.py [scan] [e2e] [sweep] [profile] [--frames 16 32 64]
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scan_gpu as sg  # noqa: E402  (the shared timing helpers and the mamba_ssm baseline)

DEV = "cuda"
EXP_RATE = 4.2e12  # exp2 per second measured on an H100 (16 per clock per SM)


def scan_floor_ms(b: int, d: int, L: int, n: int, element_bytes: int, bandwidth: float) -> tuple[float, float]:
    """(memory floor, exp floor) in ms of both directions' forward+backward: the forward reads u, Δ, z
    and writes y; the backward reads u, Δ, z, dy and writes du, dΔ, dz (B, C and their gradients are
    16 wide: small); two directions. Exps: the forward's and the backward's recompute, per state."""
    tensors = (4 + 7) * 2
    memory = tensors * b * d * L * element_bytes / bandwidth * 1e3
    exps = 2 * 2 * b * d * L * n / EXP_RATE * 1e3
    return memory, exps


def scan_table(have_mamba: bool) -> None:
    from videomamba.ops import ScanInputs, ScanOrder, selective_scan_pair

    sg.warm_up_gpu()
    bandwidth = sg.copy_bandwidth()
    print("## both directions' scan, forward+backward, one layer (d_inner 768, d_state 16), CUDA graphs, ms\n")
    print(f"Copy bandwidth measured: {bandwidth / 1e12:.2f} TB/s.\n")
    print("| b | L | inputs | ours | mamba_ssm x2 | mamba_ssm / ours | memory floor | exp floor | ours / max floor |")
    print("|---|---|---|---|---|---|---|---|---|")
    for b, L in ((8, 6273), (32, 1569), (8, 1569), (8, 3137)):
        for dtype in (torch.bfloat16, torch.float32):
            row = {}
            for kind in ("ours", "mamba_ssm"):
                if kind == "mamba_ssm" and not have_mamba:
                    continue
                directions = [{k: (v.to(dtype) if v.dim() == 3 and k in ("u", "delta", "z") else v).requires_grad_()
                               for k, v in sg.inputs(b, 768, L, seed=s, channels_last=kind == "ours").items()}
                              for s in (0, 1)]
                z = directions[0]["z"]
                if kind == "ours":
                    scans = [ScanInputs(**{k: v for k, v in x.items() if k != "z"}) for x in directions]
                    fwd = lambda: selective_scan_pair(scans[0], scans[1], z, ScanOrder("reverse"),  # noqa: E731
                                                      delta_softplus=True)
                else:
                    first = sg._scan_call("mamba_ssm", directions[0])
                    second = sg._scan_call("mamba_ssm", {**directions[1], "z": z})
                    fwd = lambda: first() + second()  # noqa: E731
                grad = torch.randn_like(fwd())
                leaves = [v for x in directions for v in x.values()]

                def step():
                    for v in leaves:
                        v.grad = None
                    fwd().backward(grad)
                try:
                    row[kind] = sg._graph_ms(step)
                except Exception as err:  # noqa: BLE001 - report and go on
                    print(f"({kind} b {b} L {L} {dtype}: not captured: {str(err)[:200]})")
                torch.cuda.empty_cache()
            memory, exps = scan_floor_ms(b, 768, L, 16, 2 if dtype == torch.bfloat16 else 4, bandwidth)
            ours = row.get("ours")
            mamba = row.get("mamba_ssm")
            print(f"| {b} | {L} | {str(dtype).split('.')[1]} | {ours:.3f} | {f'{mamba:.3f}' if mamba else '-'} | "
                  f"{f'{mamba / ours:.2f}x' if mamba else '-'} | {memory:.3f} | {exps:.3f} | "
                  f"{ours / max(memory, exps):.1f}x |", flush=True)
    print()


def _measure(model_fn, frames: int, run_fn=None, infer: bool = True) -> dict:
    """Train step ms and peak GiB (batch 8), inference clips/s (batch 32) of a fresh model."""
    model = model_fn()
    run = run_fn(model) if run_fn else model
    out = {}
    step = sg.training_step(model, frames, run)
    step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    out["train_ms"] = sg._median_ms(step, 5)
    out["train_gib"] = torch.cuda.max_memory_allocated() / 2**30
    del step
    torch.cuda.empty_cache()
    if infer:
        model.eval()
        inference = sg.inference(run, frames)
        inference()
        torch.cuda.reset_peak_memory_stats()
        out["infer_cps"] = 32 / sg._median_ms(inference, 5) * 1e3
        out["infer_gib"] = torch.cuda.max_memory_allocated() / 2**30
        del inference
    del model, run
    torch.cuda.empty_cache()
    return out


def _videomamba(frames: int, recomputed: bool | int = False, activations_recomputed: bool = False):
    def build():
        import videomamba

        model = videomamba.create_model("videomamba_small", num_frames=frames).to(DEV)
        model.grad_checkpointing = recomputed
        model.recompute_activations = activations_recomputed
        return model
    return build


def _vit():
    from videomamba.analysis.efficiency import ViTBaseline

    return ViTBaseline().to(DEV)


def end_to_end(have_mamba: bool, frame_counts=(16, 32, 64)) -> None:
    sg.warm_up_gpu()
    os.environ["VIDEOMAMBA_SCAN_BACKEND"] = "triton"
    print("## videomamba_small against mamba_ssm and a ViT-S: training (batch 8), inference (batch 32)\n")
    print("224x224, bf16 autocast, fused AdamW, eager; median of 5 steps after a warm-up (CUDA events).\n")
    print("| frames | model | train ms | train peak GiB | infer clips/s | infer peak GiB | train / ViT-S | "
          "peak / ViT-S | infer / ViT-S |")
    print("|---|---|---|---|---|---|---|---|---|")
    bars = []
    for frames in frame_counts:
        rows = {"ViT-S (SDPA)": _measure(_vit, frames)}
        rows["ours"] = _measure(_videomamba(frames), frames)
        rows["ours, activations recomputed"] = _measure(_videomamba(frames, activations_recomputed=True), frames,
                                                         infer=False)
        rows["ours, 12 blocks recomputed"] = _measure(_videomamba(frames, 12), frames, infer=False)
        rows["ours, 12 blocks + activations recomputed"] = _measure(
            _videomamba(frames, 12, activations_recomputed=True), frames, infer=False)
        rows["ours, 24 blocks recomputed"] = _measure(_videomamba(frames, True), frames, infer=False)
        if have_mamba:
            with sg._MambaSsmScan():
                rows["same network on mamba_ssm"] = _measure(_videomamba(frames), frames)
        vit = rows["ViT-S (SDPA)"]
        for name, r in rows.items():
            infer = r.get("infer_cps")
            infer_cells = (f"{infer:.0f} | {r['infer_gib']:.1f}" if infer else "- | -")
            infer_ratio = f"{infer / vit['infer_cps']:.2f}x" if infer else "-"
            print(f"| {frames} | {name} | {r['train_ms']:.1f} | {r['train_gib']:.1f} | {infer_cells} | "
                  f"{r['train_ms'] / vit['train_ms']:.2f}x | {r['train_gib'] / vit['train_gib']:.2f}x | {infer_ratio} |",
                  flush=True)
        bars.append((frames, rows))
    os.environ.pop("VIDEOMAMBA_SCAN_BACKEND", None)
    print()
    _print_bars(bars)


def _print_bars(bars: list[tuple[int, dict]]) -> None:
    """Ours against the same network on mamba_ssm (where it ran), per frame count: the speedups the
    e2e rows imply, training (step time) and inference (clips a second)."""
    rows = [(frames, r["ours"], r["same network on mamba_ssm"]) for frames, r in bars if "same network on mamba_ssm" in r]
    if not rows:
        return
    print("| frames | training: mamba_ssm ms / ours ms | inference: ours clips/s / mamba_ssm clips/s |\n|---|---|---|")
    for frames, ours, mamba in rows:
        print(f"| {frames} | {mamba['train_ms'] / ours['train_ms']:.2f}x | {ours['infer_cps'] / mamba['infer_cps']:.2f}x |")
    print()


def sweep(frame_counts=(16, 32, 64, 128)) -> None:
    sg.warm_up_gpu()
    os.environ["VIDEOMAMBA_SCAN_BACKEND"] = "triton"
    print("## frame sweep against the ViT-S, eager and torch.compile'd (default mode)\n")
    print("| frames | ours train ms | ViT-S train ms | ViT-S compiled train ms | ours infer clips/s | "
          "ViT-S infer clips/s | ViT-S compiled infer clips/s |")
    print("|---|---|---|---|---|---|---|")
    results = {}
    for frames in frame_counts:
        ours = _measure(_videomamba(frames), frames)
        vit = _measure(_vit, frames)
        try:
            compiled = _measure(_vit, frames, run_fn=lambda m: torch.compile(m))
        except Exception as err:  # noqa: BLE001 - report and go on
            print(f"(ViT-S compile at {frames} frames failed: {str(err)[:200]})")
            compiled = {"train_ms": float("nan"), "infer_cps": float("nan")}
        torch._dynamo.reset()
        results[frames] = (ours, vit, compiled)
        print(f"| {frames} | {ours['train_ms']:.1f} | {vit['train_ms']:.1f} | {compiled['train_ms']:.1f} | "
              f"{ours['infer_cps']:.0f} | {vit['infer_cps']:.0f} | {compiled['infer_cps']:.0f} |", flush=True)
    print()
    from videomamba.analysis.efficiency import projected_crossover

    frames = list(results)
    for what, key, better in (("training", "train_ms", min), ("inference", "infer_cps", max)):
        for label, index in (("eager", 1), ("compiled", 2)):
            wins = [f for f, r in results.items() if better(r[0][key], r[index][key]) == r[0][key]]
            # time per step (training) or per clip (inference): linear for VideoMamba, quadratic for attention
            cost = (lambda r: r[key]) if key == "train_ms" else (lambda r: 1e3 / r[key])  # noqa: E731
            try:
                crossing = projected_crossover(frames, [cost(results[f][0]) for f in frames],
                                               [cost(results[f][index]) for f in frames])
            except ValueError:
                crossing = None
            projected = f"; projected crossover at {crossing:.0f} frames" if crossing else ""
            print(f"- {what}, against the {label} ViT-S: VideoMamba faster at "
                  f"{', '.join(map(str, wins)) if wins else 'none'} of {', '.join(map(str, frames))} frames"
                  f"{projected}")
    os.environ.pop("VIDEOMAMBA_SCAN_BACKEND", None)
    print()


FAMILIES = (  # (family, pattern on the kernel name), first match wins
    ("scan backward", r"_scan_bwd|_segment_bwd|_window_entries|_sum_parts|_pair_gate_bwd"),
    ("scan forward", r"_scan_fwd|_segment_fwd|_pair_gate_fwd"),
    ("conv + SiLU", r"_conv"),
    ("attention", r"flash|fmha|attention|cudnn_generated_fort_native_sdpa"),
    ("GEMM", r"gemm|cutlass|xmma|nvjet|sm90_|ampere_|cublas|matmul"),
    ("norm", r"norm|rms"),
    ("optimizer", r"adam|multi_tensor|foreach"),
    ("copy / cast", r"copy|cast|direct_copy|to_copy|contiguous"),
    ("elementwise / reduce", r"elementwise|reduce|softmax|silu|softplus|exp|mul|add"),
)


def _profiled(run, title: str) -> None:
    """Profile one call of ``run`` (warmed up by one call before) and print its GPU time by kernel family."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    run()
    torch.cuda.synchronize()
    with torch_profile(activities=[ProfilerActivity.CUDA]) as prof:
        run()
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.self_device_time_total > 0]
    total = sum(e.self_device_time_total for e in events)
    groups: dict[str, list] = {}
    for e in events:
        family = next((f for f, pattern in FAMILIES if re.search(pattern, e.key, re.IGNORECASE)), "other")
        groups.setdefault(family, []).append(e)
    print(f"## {title} (torch.profiler)\n")
    print(f"GPU time {total / 1e3:.1f} ms in one profiled call.\n")
    print("| family | ms | share | largest kernels (ms) |\n|---|---|---|---|")
    for family, members in sorted(groups.items(), key=lambda kv: -sum(e.self_device_time_total for e in kv[1])):
        ms = sum(e.self_device_time_total for e in members) / 1e3
        top = sorted(members, key=lambda e: -e.self_device_time_total)[:3]
        names = "; ".join(f"{e.key[:48]} {e.self_device_time_total / 1e3:.1f}" for e in top)
        print(f"| {family} | {ms:.1f} | {ms * 1e3 / total:.0%} | {names} |")
    print()


def profile(frames: int = 64) -> None:
    """Where the GPU time of a training step (batch 8) and of inference (batch 32) goes, ours and the
    ViT-S's inference beside it."""
    import videomamba

    os.environ["VIDEOMAMBA_SCAN_BACKEND"] = "triton"
    model = videomamba.create_model("videomamba_small", num_frames=frames).to(DEV)
    step = sg.training_step(model, frames)
    _profiled(step, f"where a training step goes: videomamba_small, {frames} frames, batch 8")
    del step
    torch.cuda.empty_cache()
    model.eval()
    _profiled(sg.inference(model, frames), f"where inference goes: videomamba_small, {frames} frames, batch 32")
    os.environ.pop("VIDEOMAMBA_SCAN_BACKEND", None)
    del model
    torch.cuda.empty_cache()
    vit = _vit().eval()
    _profiled(sg.inference(vit, frames), f"where inference goes: ViT-S (SDPA), {frames} frames, batch 32")
    del vit
    torch.cuda.empty_cache()


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("parts", nargs="*", help="the tables to print: scan, e2e, profile, sweep (default: all)")
    parser.add_argument("--frames", type=int, nargs="+", default=None,
                        help="frame counts for e2e and sweep (default 16 32 64; sweep 16 32 64 128)")
    args = parser.parse_args()
    unknown = set(args.parts) - {"scan", "e2e", "profile", "sweep"}
    if unknown:
        parser.error(f"unknown tables {sorted(unknown)}; choose from scan, e2e, profile, sweep")
    have_mamba = sg.header("GPU benchmark")
    parts = args.parts or ["scan", "e2e", "profile", "sweep"]
    frames = {} if args.frames is None else {"frame_counts": tuple(args.frames)}
    tables = {"scan": lambda: scan_table(have_mamba), "e2e": lambda: end_to_end(have_mamba, **frames),
              "profile": profile, "sweep": lambda: sweep(**frames)}
    for part in parts:
        try:  # one table failing (out of memory, a compile error) leaves the others to run
            tables[part]()
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
