"""GPU benchmark of the fast path: correctness of the Triton kernels against float64, then timings of
the scan against mamba_ssm's CUDA ``selective_scan_fn`` (if built) and the chunked PyTorch scan, with
the memory and exp floors, then training and inference of videomamba_small against the same model
on mamba_ssm (flip-based, as Vim) and a flash-attention ViT-S.

Usage (GPU machine): bash benchmarks/build_mamba_ssm.sh; PYTHONPATH=src python3 benchmarks/scan_gpu.py
[correctness] [model-check] [timings] [graphed] [both] [e2e] [graphed-steps] [host] [profile] [compile] [orders]
(all when none is named; graphed, graphed-steps: the scan's forward+backward, the whole training step,
captured in CUDA graphs: GPU time without the host's; both: both directions of a mixer, paired in one
launch, as two scans and as mamba_ssm's two calls)
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys

import torch
import triton.testing

import videomamba.ops.triton.gate as triton_gate
import videomamba.ops.triton.scan as triton_scan
from videomamba.ops.triton import CONV, SCAN
from videomamba.ops import selective_scan

DEV = "cuda"
D_STATE = 16


def inputs(b, d, L, dtype=torch.float32, seed=0, channels_last=True):
    """Random scan inputs (never zeros); channels_last: (b, L, d) in memory, as the mixer passes them."""
    g = torch.Generator(device=DEV).manual_seed(seed)

    def seq(channels, scale=1.0):
        if channels_last:
            return (scale * torch.randn(b, L, channels, generator=g, device=DEV)).to(dtype).transpose(1, 2)
        return (scale * torch.randn(b, channels, L, generator=g, device=DEV)).to(dtype)

    return dict(u=seq(d), delta=seq(d, 0.5), A=-(torch.rand(d, D_STATE, generator=g, device=DEV) * 2 + 0.05),
                B=seq(D_STATE), C=seq(D_STATE), D=torch.randn(d, generator=g, device=DEV), z=seq(d),
                delta_bias=0.3 * torch.randn(d, generator=g, device=DEV))


def warm_up_gpu(seconds: float = 2.0) -> None:
    """Keep the GPU busy for a while before timing: an idle card starts at low clocks, and the first
    shape measured ran slower than the same kernels later."""
    a = torch.randn(4096, 4096, device=DEV)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    while True:
        for _ in range(20):
            a = (a @ a).tanh_()
        end.record()
        end.synchronize()
        if start.elapsed_time(end) > seconds * 1e3:
            return


def relative_errors(got: dict, ref: dict, y, y_ref) -> list[float]:
    """max |error| / max |value| of the output and of every gradient."""
    errs = [((y.double() - y_ref).abs().max() / y_ref.abs().max().clamp(min=1)).item()]
    for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias"):
        a, r = got[k].grad.double(), ref[k].grad
        errs.append(((a - r).abs().max() / r.abs().max().clamp(min=1)).item())
    return errs


def correctness() -> None:
    print("## correctness: Triton vs float64 (chunked scan in float64 on the GPU), max error / max |value|\n")
    print("Fresh random inputs per case, every output buffer poisoned with NaN before the kernels run.\n")
    print("| reverse | b | d_inner | L | dtype | order | out | du | ddelta | dA | dB | dC | dD | dz | dbias |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    SCAN.poison_outputs = True
    worst = {torch.float32: 0.0, torch.bfloat16: 0.0}
    cases = [(1, 384, 1), (2, 384, 197), (8, 768, 785), (4, 1152, 1569), (1, 768, 3137), (1, 384, 6273),
             (32, 768, 197), (16, 768, 785)]
    seed = 0
    for reverse in (False, True):
        for b, d, L in cases:
            for dtype in (torch.float32, torch.bfloat16):
                for channels_last in (True, False):
                    seed += 1
                    x = inputs(b, d, L, dtype=dtype, seed=seed, channels_last=channels_last)
                    ref = {k: v.detach().double().requires_grad_() for k, v in x.items()}
                    got = {k: v.detach().clone().requires_grad_() for k, v in x.items()}
                    y_ref = selective_scan(**ref, delta_softplus=True, backend="chunked", reverse=reverse)
                    y = selective_scan(**got, delta_softplus=True, backend="triton", reverse=reverse)
                    w = torch.randn_like(y_ref)
                    (y_ref * w).sum().backward()
                    (y.double() * w).sum().backward()
                    errs = relative_errors(got, ref, y, y_ref)
                    worst[dtype] = max(worst[dtype], max(errs))
                    print(f"| {reverse} | {b} | {d} | {L} | {str(dtype)[6:]} | {'BLD' if channels_last else 'BDL'} | "
                          + " | ".join(f"{e:.1e}" for e in errs) + " |", flush=True)
    SCAN.poison_outputs = False
    print(f"\nworst: fp32 {worst[torch.float32]:.2e}, bf16 inputs {worst[torch.bfloat16]:.2e} "
          "(bf16: out, du, ddelta, dz are stored in bf16)\n")


def whole_model_check() -> None:
    """Each scan order through a whole (small) model: the Triton path (conv and scan kernels computing
    the backward order's positions) in fp32 against the chunked scan in float64 (which gathers them)."""
    import videomamba

    print("Error / max |reference| per tensor; a parameter whose float64 gradient is exactly zero (the last")
    print("layer's forward-direction A: the class token is read at position 0, before any decay) is")
    print("reported by its largest |gradient| instead.\n")
    print("| scan order | logits | worst parameter gradient | largest gradient where float64 gives 0 |")
    print("|---|---|---|---|")
    for order in ("spatiotemporal", "spatial", "temporal", "none"):
        torch.manual_seed(0)
        model = videomamba.create_model("videomamba_tiny", num_frames=8, img_size=112, num_classes=10, depth=4,
                                        scan_order=order).to(DEV)
        clip = torch.randn(2, 3, 8, 112, 112, device=DEV)
        results = []
        for backend, dtype in (("triton", torch.float32), ("chunked", torch.float64)):
            os.environ["VIDEOMAMBA_SCAN_BACKEND"] = backend
            model = model.to(dtype)
            model.zero_grad()
            logits = model(clip.to(dtype))
            logits.square().sum().backward()
            results.append((logits.detach().double(), [p.grad.double() for p in model.parameters()]))
        os.environ.pop("VIDEOMAMBA_SCAN_BACKEND")
        (lt, gt), (lr, gr) = results
        err = lambda a, r: ((a - r).abs().max() / r.abs().max()).item()  # noqa: E731
        nonzero = [(a, r) for a, r in zip(gt, gr) if r.abs().max() > 0]
        zero = [a.abs().max().item() for a, r in zip(gt, gr) if r.abs().max() == 0]
        print(f"| {order} | {err(lt, lr):.1e} | {max(err(a, r) for a, r in nonzero):.1e} | "
              f"{max(zero) if zero else 0:.1e} |", flush=True)
    print()


def copy_bandwidth() -> float:
    """Bytes read + written per second by a device-to-device copy of 1 GiB."""
    x = torch.empty(2**28, device=DEV)
    ms = triton.testing.do_bench(lambda: x.clone(), return_mode="median")
    return 2 * x.numel() * 4 / (ms * 1e-3)


def floors(b, d, L, n=D_STATE) -> tuple[float, float]:
    bandwidth = copy_bandwidth()
    bytes_fwd = 4 * (4 * b * d * L + 2 * b * n * L)  # u, delta, z read, out written; B, C read (fp32)
    exps = b * d * L * n
    return bytes_fwd / bandwidth * 1e3, exps / 4.2e12 * 1e3


def _scan_call(backend: str, x: dict):
    """One direction's scan on inputs ``x`` as a closure: mamba_ssm's ``selective_scan_fn``, or ours with
    ``backend`` "triton", "triton_rev" (the reversed order read in place), "triton_bdl" or "chunked"."""
    if backend == "mamba_ssm":
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

        # mamba_ssm takes a variable B and C in u's dtype (what its model's x_proj gives under autocast)
        return lambda: selective_scan_fn(x["u"], x["delta"], x["A"], x["B"].to(x["u"].dtype), x["C"].to(x["u"].dtype),
                                         x["D"], x["z"], x["delta_bias"], delta_softplus=True)
    return lambda: selective_scan(**x, delta_softplus=True, backend=backend.split("_")[0],
                                  reverse=backend == "triton_rev")


def timings(have_mamba: bool) -> None:
    warm_up_gpu()
    print("## scan alone, d_inner 768, d_state 16, fp32 inputs, ms (do_bench median)\n")
    print("Triton: (b, L, d) inputs as the mixer passes them; 'rev' is the backward direction read in place;")
    print("'BDL' the same kernels on (b, d, L) contiguous inputs, what mamba_ssm gets. One direction each.\n")
    print("| b | L | pass | Triton | Triton rev | Triton BDL | chunked | mamba_ssm | mamba_ssm / Triton | mem floor | "
          "exp floor |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    columns = ("triton", "triton_rev", "triton_bdl", "chunked", "mamba_ssm")
    for b in (8, 32):
        for L in (785, 1569, 3137, 6273):
            x_bld = {k: v.requires_grad_() for k, v in inputs(b, 768, L).items()}
            x_bdl = {k: v.requires_grad_() for k, v in inputs(b, 768, L, channels_last=False).items()}
            mem_floor, exp_floor = floors(b, 768, L)
            row = {}
            for backend in columns:
                if backend == "chunked" and b * L > 8 * 1569:
                    continue  # materialises (b, d, L, 16) tensors several times: skipped where it cannot fit
                if backend == "mamba_ssm" and not have_mamba:
                    continue
                x = x_bld if backend in ("triton", "triton_rev") else x_bdl
                fwd = _scan_call(backend, x)
                grad = torch.randn_like(fwd())
                with torch.no_grad():
                    row[(backend, "fwd")] = triton.testing.do_bench(fwd, return_mode="median")
                row[(backend, "fwd+bwd")] = triton.testing.do_bench(lambda: fwd().backward(grad), return_mode="median",
                                                                    grad_to_none=list(x.values()))
            for pass_ in ("fwd", "fwd+bwd"):
                cells = [f"{row[(k, pass_)]:.3f}" if (k, pass_) in row else "-" for k in columns]
                ratio = (f"{row[('mamba_ssm', pass_)] / row[('triton', pass_)]:.2f}x"
                         if ("mamba_ssm", pass_) in row else "-")
                print(f"| {b} | {L} | {pass_} | " + " | ".join(cells) + f" | {ratio} | {mem_floor:.3f} | "
                      f"{exp_floor:.3f} |", flush=True)
            del x_bld, x_bdl
            torch.cuda.empty_cache()
    print()


def _graph_ms(fn, replays: int = 50) -> float:
    """GPU time of ``fn`` captured in a CUDA graph (after warm-up on a side stream), median of 5 rounds
    of ``replays`` replays: the kernels alone, without the host's Python and launch time."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    rounds = []
    for _ in range(5):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(replays):
            graph.replay()
        end.record()
        torch.cuda.synchronize()
        rounds.append(start.elapsed_time(end) / replays)
    del graph
    return sorted(rounds)[2]


def graphed_timings(have_mamba: bool) -> None:
    """Forward+backward of one direction, Triton and mamba_ssm, each captured in a CUDA graph: the GPU
    time without the host's (where the eager timings are host-bound, at the small shapes)."""
    warm_up_gpu()
    print("## scan alone in CUDA graphs (GPU time), d_inner 768, d_state 16, fp32, fwd+bwd ms, one direction\n")
    print("| b | L | Triton | mamba_ssm | mamba_ssm / Triton |")
    print("|---|---|---|---|---|")
    for b in (8, 32):
        for L in (785, 1569, 3137, 6273):
            row = {}
            for backend in ("triton", "mamba_ssm"):
                if backend == "mamba_ssm" and not have_mamba:
                    continue
                x = {k: v.requires_grad_() for k, v in inputs(b, 768, L, channels_last=backend == "triton").items()}
                fwd = _scan_call(backend, x)
                grad = torch.randn_like(fwd())

                def step():
                    for v in x.values():
                        v.grad = None  # the graph writes fresh gradients rather than adding to captured ones
                    fwd().backward(grad)
                try:
                    row[backend] = _graph_ms(step)
                except Exception as err:  # noqa: BLE001 - report and go on
                    print(f"({backend} b {b} L {L}: not captured: {str(err)[:200]})")
            cells = [f"{row[k]:.3f}" if k in row else "-" for k in ("triton", "mamba_ssm")]
            ratio = f"{row['mamba_ssm'] / row['triton']:.2f}x" if len(row) == 2 else "-"
            print(f"| {b} | {L} | " + " | ".join(cells) + f" | {ratio} |", flush=True)
            torch.cuda.empty_cache()
    print()


def both_directions(have_mamba: bool, shapes=((8, 785), (8, 1569), (8, 3137), (8, 6273), (32, 785), (32, 1569),
                                                (32, 3137), (32, 6273))) -> None:
    """Both directions of a mixer's scan, forward+backward, as the model runs them: ours paired (one launch
    of each kernel, ``selective_scan_pair``), ours as two scans (the backward one reversed in place), and
    mamba_ssm's ``selective_scan_fn`` twice on (b, d, L) inputs (its model also flips copies: not counted
    here). Eager (do_bench median: host time included) and captured in CUDA graphs (GPU time)."""
    from videomamba.ops import ScanInputs, ScanOrder, selective_scan_pair

    warm_up_gpu()
    print("## both directions, d_inner 768, d_state 16, fp32 inputs, forward+backward ms\n")
    print("| b | L | paired | two scans | mamba_ssm x2 | mamba / paired | paired, graphed | two scans, graphed | "
          "mamba x2, graphed | mamba / paired, graphed |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    reverse = ScanOrder("reverse")
    for b, L in shapes:
        row = {}
        for kind in ("paired", "two", "mamba_ssm"):
            if kind == "mamba_ssm" and not have_mamba:
                continue
            directions = [{k: v.requires_grad_() for k, v in inputs(b, 768, L, seed=s,
                                                                     channels_last=kind != "mamba_ssm").items()}
                          for s in (0, 1)]
            z = directions[0]["z"]
            scans = [ScanInputs(**{k: v for k, v in x.items() if k != "z"}) for x in directions]
            if kind == "paired":
                fwd = lambda: selective_scan_pair(scans[0], scans[1], z, reverse, delta_softplus=True)  # noqa: E731
            elif kind == "two":
                fwd = lambda: (selective_scan(**scans[0]._asdict(), z=z, delta_softplus=True)  # noqa: E731
                               + selective_scan(**scans[1]._asdict(), z=z, delta_softplus=True, order=reverse))
            else:
                first = _scan_call("mamba_ssm", directions[0])
                second = _scan_call("mamba_ssm", {**directions[1], "z": z})
                fwd = lambda: first() + second()  # noqa: E731
            grad = torch.randn_like(fwd())
            leaves = [v for x in directions for v in x.values()]
            row[kind] = triton.testing.do_bench(lambda: fwd().backward(grad), return_mode="median", grad_to_none=leaves)

            def step():
                for v in leaves:
                    v.grad = None
                fwd().backward(grad)
            try:
                row[kind + " graphed"] = _graph_ms(step)
            except Exception as err:  # noqa: BLE001 - report and go on
                print(f"({kind} b {b} L {L}: not captured: {str(err)[:200]})")
            torch.cuda.empty_cache()
        cell = lambda k: f"{row[k]:.3f}" if k in row else "-"  # noqa: E731
        ratio = lambda a, b_: f"{row[a] / row[b_]:.2f}x" if a in row and b_ in row else "-"  # noqa: E731
        print(f"| {b} | {L} | {cell('paired')} | {cell('two')} | {cell('mamba_ssm')} | {ratio('mamba_ssm', 'paired')} "
              f"| {cell('paired graphed')} | {cell('two graphed')} | {cell('mamba_ssm graphed')} | "
              f"{ratio('mamba_ssm graphed', 'paired graphed')} |", flush=True)
    print()


class _MambaSsmScan:
    """Within this context the mixers call mamba_ssm's CUDA ``selective_scan_fn`` on contiguous
    (B, d, L) copies, the backward direction on copies gathered into its order and its output gathered
    back (flip-based, as Vim and OpenGVLab's VideoMamba do): the mamba_ssm baseline."""

    def __enter__(self):
        import videomamba.models.mixer as mixer
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

        def scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
            # B and C in u's dtype, as mamba_ssm requires of a variable B and C (our mixer keeps them fp32)
            return selective_scan_fn(u.contiguous(), delta.contiguous(), A, B.to(u.dtype).contiguous(),
                                     C.to(u.dtype).contiguous(), D, z.contiguous() if z is not None else None,
                                     delta_bias, delta_softplus)

        def pair(forward, backward, z=None, order=None, delta_softplus=False, recompute=None):
            # ``recompute`` (the mixer's activation recompute scope) is ignored: the baseline stores what
            # mamba_ssm's scan stores
            if order.mode == "reverse":
                to_steps = back = lambda t: t.flip(-1)  # noqa: E731
            else:
                positions = order.positions(z.shape[-1], z.device)
                inverse = torch.argsort(positions)
                to_steps, back = (lambda t: t[..., positions]), (lambda t: t[..., inverse])  # noqa: E731
            gathered = {k: to_steps(v) if k in ("u", "delta", "B", "C") else v for k, v in backward._asdict().items()}
            return (scan(**forward._asdict(), z=z, delta_softplus=delta_softplus)
                    + back(scan(**gathered, z=to_steps(z), delta_softplus=delta_softplus)))

        self.mixer, self.originals = mixer, (mixer.selective_scan, mixer.selective_scan_pair)
        mixer.selective_scan, mixer.selective_scan_pair = scan, pair
        return self

    def __exit__(self, *exc):
        self.mixer.selective_scan, self.mixer.selective_scan_pair = self.originals
        return False


def _median_ms(fn, repeats: int) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def training_step(model: torch.nn.Module, frames: int, run=None):
    """One training step as a closure: batch 8 of random 224x224 clips, bf16 autocast, cross-entropy,
    fused AdamW. ``run`` calls the model (e.g. its torch.compile'd wrapper); default the model."""
    run = model if run is None else run  # (a compiled module has no truth value)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    video = torch.randn(8, 3, frames, 224, 224, device=DEV)
    labels = torch.randint(0, 400, (8,), device=DEV)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            torch.nn.functional.cross_entropy(run(video).float(), labels).backward()
        opt.step()
    return step


def inference(run, frames: int):
    """Inference on batch 32 of random 224x224 clips, bf16 autocast, as a closure."""
    batch = torch.randn(32, 3, frames, 224, 224, device=DEV)

    @torch.no_grad()
    def infer():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            run(batch)
    return infer


def _model(backend: str | None, frames: int) -> torch.nn.Module:
    """videomamba_small on the GPU for a scan path ``backend`` (its label; "mamba_ssm", which runs under
    ``_MambaSsmScan``, and "chunked" gather the backward order), or the ViT-S for None."""
    import videomamba
    from videomamba.analysis.efficiency import ViTBaseline

    model = (videomamba.create_model("videomamba_small", num_frames=frames) if backend
             else ViTBaseline()).to(DEV)  # the ViT's positions are built for any length
    return model


def end_to_end(have_mamba: bool, frame_counts: tuple[int, ...] = (8, 16, 32, 64),
               triton_settings: dict[str, dict] | None = None) -> None:
    """Training step and inference of videomamba_small on our kernels, on mamba_ssm's, on the chunked
    PyTorch scan (8 frames) and of the ViT-S. ``triton_settings``: named sets of module settings of
    ``ops.triton.SCAN`` (``"SEGMENTS"``) or ``ops.triton.CONV`` (``"sequence_conv.GRAD_WARPS"``), each
    timed as a row of its own (default: the defaults)."""
    warm_up_gpu()
    print("## training step (batch 8) and inference (batch 32), 224x224, bf16 autocast, AdamW\n")
    print("Median of 5 timed steps after one warm-up (CUDA events).\n")
    print("| model | frames | scan | train step ms | train clips/s | train peak GiB | infer clips/s | infer peak GiB |")
    print("|---|---|---|---|---|---|---|---|")
    def place(key: str):
        return (CONV, key.split(".", 1)[1].lower()) if key.startswith("sequence_conv.") else (SCAN, key.lower())

    triton_settings = triton_settings or {"triton": {}}
    variants = [("videomamba_small", name) for name in triton_settings] + [
        ("videomamba_small", "mamba_ssm"), ("videomamba_small", "chunked"), ("vit_s", None)]
    for frames in frame_counts:
        for name, backend in variants:
            if (backend == "chunked" and frames > 8) or (backend == "mamba_ssm" and not have_mamba):
                continue
            settings = triton_settings.get(backend, {})
            if backend == "chunked" or backend in triton_settings:
                os.environ["VIDEOMAMBA_SCAN_BACKEND"] = "chunked" if backend == "chunked" else "triton"
            defaults = {key: getattr(*place(key)) for key in settings}
            for key, value in settings.items():
                setattr(*place(key), value)
            patch = _MambaSsmScan() if backend == "mamba_ssm" else contextlib.nullcontext()
            with patch:
                model = _model(backend, frames)
                step = training_step(model, frames)
                step()
                torch.cuda.reset_peak_memory_stats()
                ms = _median_ms(step, 5)
                peak = torch.cuda.max_memory_allocated() / 2**30
                del step  # its optimizer state and clips
                model.eval()
                infer = inference(model, frames)
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                infer_ms = _median_ms(infer, 5)
                infer_peak = torch.cuda.max_memory_allocated() / 2**30
            for key, value in defaults.items():
                setattr(*place(key), value)
            print(f"| {name} | {frames} | {backend or 'sdpa'} | {ms:.1f} | {8 / ms * 1e3:.2f} | {peak:.1f} | "
                  f"{32 / infer_ms * 1e3:.2f} | {infer_peak:.1f} |", flush=True)
            del model, infer
            torch.cuda.empty_cache()
    os.environ.pop("VIDEOMAMBA_SCAN_BACKEND", None)
    print()


def host_time(have_mamba: bool, repeats: int = 300) -> None:
    """Host time per call of one direction's scan (forward, forward+backward) and of the conv + SiLU
    (forward+backward), Triton against mamba_ssm, on a tiny input (batch 1, d_inner 768, L 64) whose GPU
    work is a few microseconds: the rate at which the host issues the calls (the GPU only synchronised
    at the end) is the host's cost per call."""
    import time

    from videomamba.ops import ScanOrder, sequence_conv_silu
    print("## host time per call (batch 1, d_inner 768, L 64: GPU work negligible), us\n")
    x = {k: v.requires_grad_() for k, v in inputs(1, 768, 64).items()}
    xc = {k: v.requires_grad_() for k, v in inputs(1, 768, 64, channels_last=False).items()}
    conv_x = torch.randn(1, 64, 768, device=DEV).transpose(1, 2).requires_grad_()
    weight = torch.randn(768, 1, 4, device=DEV, requires_grad=True)
    bias = torch.randn(768, device=DEV, requires_grad=True)

    def called(forward):
        """forward() as a call that also runs its backward when ``train``."""
        def call(train: bool):
            y = forward()
            if train:
                y.backward(torch.ones_like(y))
        return call

    ours = called(_scan_call("triton_rev", x))  # the backward direction, read in place
    theirs = called(_scan_call("mamba_ssm", xc)) if have_mamba else None
    conv_ours = called(lambda: sequence_conv_silu(conv_x, weight, bias, order=ScanOrder("reverse")))

    import videomamba.ops.triton.conv as sc

    launching = [0.0, 0]  # seconds inside Triton's launcher (JITFunction.__getitem__(grid)(...)), launches

    class _Timed:
        def __init__(self, kernel):
            self.kernel = kernel

        def __getitem__(self, grid):
            launch = self.kernel[grid]

            def run(*args, **kwargs):
                start = time.perf_counter()
                result = launch(*args, **kwargs)
                launching[0] += time.perf_counter() - start
                launching[1] += 1
                return result
            return run

    kernels = {(module, name): getattr(module, name) for module in (triton_scan, triton_gate, sc)
               for name in dir(module)
               if name.startswith("_") and name.endswith("_kernel")}

    def per_call(fn, train: bool, timed: bool = False) -> tuple[float, float, float]:
        for _ in range(10):
            fn(train)
        torch.cuda.synchronize()
        if timed:
            for (module, name), kernel in kernels.items():
                setattr(module, name, _Timed(kernel))
        launching[:] = [0.0, 0]
        start = time.perf_counter()
        for _ in range(repeats):
            fn(train)
        torch.cuda.synchronize()
        total = (time.perf_counter() - start) / repeats * 1e6
        for (module, name), kernel in kernels.items():
            setattr(module, name, kernel)
        return total, launching[0] / repeats * 1e6, launching[1] / repeats

    print("| call | Triton path | of which in Triton's launcher (launches) | mamba_ssm |\n|---|---|---|---|")
    for name, ours_fn, theirs_fn, train in (("scan forward", ours, theirs, False), ("scan forward+backward", ours, theirs, True),
                                            ("conv + SiLU forward+backward", conv_ours, None, True)):
        with torch.set_grad_enabled(train):
            mine = per_call(ours_fn, train)[0]
            _, in_launcher, launches = per_call(ours_fn, train, timed=True)
            other = per_call(theirs_fn, train)[0] if theirs_fn else None
        print(f"| {name} | {mine:.0f} | {in_launcher:.0f} ({launches:.0f}) | {'-' if other is None else f'{other:.0f}'} |",
              flush=True)
    print()


def graphed_step_ms(model: torch.nn.Module, frames: int) -> float:
    """GPU time of ``model``'s training step (batch 8, 224x224, bf16 autocast, fused AdamW) captured whole in
    one CUDA graph after three warm-up steps on a side stream: the median of 10 replays, in ms."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True, capturable=True)
    video = torch.randn(8, 3, frames, 224, 224, device=DEV)
    labels = torch.randint(0, 400, (8,), device=DEV)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
            loss = torch.nn.functional.cross_entropy(model(video).float(), labels)
        loss.backward()
        opt.step()

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        step()
    return _median_ms(graph.replay, 10)


def graphed_training_steps(have_mamba: bool, frame_counts: tuple[int, ...] = (32, 64)) -> None:
    """The training step of each model captured whole (forward, backward, fused AdamW) in one CUDA graph
    and replayed: its GPU time, with the host's Python and launches taken off every model alike (the
    eager steps at 16-32 frames are host-bound on some machines)."""
    warm_up_gpu()
    print("## training step captured in a CUDA graph (batch 8, 224x224, bf16 autocast, fused AdamW), ms\n")
    print("| frames | videomamba_small (Triton) | videomamba_small (mamba_ssm) | ViT-S (sdpa) | mamba_ssm / Triton |")
    print("|---|---|---|---|---|")
    for frames in frame_counts:
        row = {}
        for backend in ("triton", "mamba_ssm", None):
            if backend == "mamba_ssm" and not have_mamba:
                continue
            if backend == "triton":
                os.environ["VIDEOMAMBA_SCAN_BACKEND"] = "triton"
            with _MambaSsmScan() if backend == "mamba_ssm" else contextlib.nullcontext():
                model = _model(backend, frames)
                try:
                    row[backend] = graphed_step_ms(model, frames)
                except Exception as err:  # noqa: BLE001 - report and go on
                    print(f"({backend or 'vit'} at {frames} frames: not captured: {str(err)[:300]})")
            model = None  # free it before the next model
            torch.cuda.empty_cache()
        os.environ.pop("VIDEOMAMBA_SCAN_BACKEND", None)
        cells = [f"{row[k]:.1f}" if k in row else "-" for k in ("triton", "mamba_ssm", None)]
        ratio = f"{row['mamba_ssm'] / row['triton']:.2f}x" if "mamba_ssm" in row and "triton" in row else "-"
        print(f"| {frames} | " + " | ".join(cells) + f" | {ratio} |", flush=True)
    print()


def profile_step(frames: int = 64) -> None:
    """Where a videomamba_small training step (batch 8, Triton path) spends its GPU time."""
    import videomamba
    from torch.profiler import ProfilerActivity, profile

    os.environ["VIDEOMAMBA_SCAN_BACKEND"] = "triton"
    step = training_step(videomamba.create_model("videomamba_small", num_frames=frames).to(DEV), frames)
    step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    events = sorted(prof.key_averages(), key=lambda e: -e.device_time_total)
    total = sum(e.self_device_time_total for e in events)
    print(f"## where a training step goes: videomamba_small, {frames} frames, batch 8, Triton path\n")
    print(f"GPU time {total / 1e3:.1f} ms in one profiled step.\n")
    print("| kernel | calls | ms | share |\n|---|---|---|---|")
    for e in events[:24]:
        print(f"| {e.key[:70]} | {e.count} | {e.self_device_time_total / 1e3:.1f} | "
              f"{e.self_device_time_total / total:.0%} |")
    os.environ.pop("VIDEOMAMBA_SCAN_BACKEND", None)
    print()


def compiled_vs_eager(frames: int = 64, modes: tuple[str, ...] = ("eager", "default", "reduce-overhead"),
                      infer: bool = True) -> None:
    """videomamba_small (Triton path) under torch.compile against eager: training step at batch 8 and
    inference at batch 32; the custom ops' fake implementations let dynamo trace the whole model.
    "reduce-overhead" also captures CUDA graphs, which takes the host's launch and Python time off
    the step (the optimizer step stays eager)."""
    import time

    import videomamba

    os.environ["VIDEOMAMBA_SCAN_BACKEND"] = "triton"
    print(f"## torch.compile against eager: videomamba_small, {frames} frames, Triton path\n")
    print("| mode | train step ms | train clips/s | infer clips/s (batch 32) | first step s |\n|---|---|---|---|---|")
    for mode in modes:
        torch.manual_seed(0)
        model = videomamba.create_model("videomamba_small", num_frames=frames).to(DEV)
        run = model if mode == "eager" else torch.compile(model, mode=mode)
        step = training_step(model, frames, run)
        start = time.time()
        step()
        torch.cuda.synchronize()
        compile_s = time.time() - start
        ms = _median_ms(step, 5)
        del step
        infer_cps = "-"
        if infer:
            model.eval()
            infer_cps = f"{32 / _median_ms(inference(run, frames), 5) * 1e3:.2f}"
        print(f"| {mode} | {ms:.1f} | {8 / ms * 1e3:.2f} | {infer_cps} | {compile_s:.0f} |", flush=True)
        del model, run
        torch.cuda.empty_cache()
    os.environ.pop("VIDEOMAMBA_SCAN_BACKEND", None)
    print()


def scan_orders(frames: int = 16) -> None:
    """Each backward scan order (the kernels compute its positions): videomamba_small, Triton path."""
    import videomamba

    os.environ["VIDEOMAMBA_SCAN_BACKEND"] = "triton"
    print(f"## backward scan orders: videomamba_small, {frames} frames, Triton path\n")
    print("| scan order | train step ms (batch 8) | infer clips/s (batch 32) |\n|---|---|---|")
    for order in ("spatiotemporal", "spatial", "temporal"):
        model = videomamba.create_model("videomamba_small", num_frames=frames, scan_order=order).to(DEV)
        ms = _median_ms(training_step(model, frames), 5)
        infer_ms = _median_ms(inference(model, frames), 5)  # no dropout or drop-path by default
        print(f"| {order} | {ms:.1f} | {32 / infer_ms * 1e3:.1f} |", flush=True)
        del model
        torch.cuda.empty_cache()
    os.environ.pop("VIDEOMAMBA_SCAN_BACKEND", None)
    print()


def header(title: str) -> bool:
    """Print the run's title line (date, card, software); return whether mamba_ssm's CUDA scan is built."""
    print(f"# {title}, {datetime.date.today()}, {torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"triton {triton.__version__}\n")
    try:
        import selective_scan_cuda  # noqa: F401
    except ImportError:
        print("mamba_ssm is not built here: its columns stay empty\n")
        return False
    return True


def main() -> None:
    have_mamba = header("GPU scan benchmark")
    parts = sys.argv[1:] or ["correctness", "model-check", "timings", "graphed", "both", "e2e", "graphed-steps",
                             "profile", "compile", "orders"]
    if "correctness" in parts:
        correctness()
    if "model-check" in parts:
        whole_model_check()
    if "timings" in parts:
        timings(have_mamba)
    if "graphed" in parts:
        graphed_timings(have_mamba)
    if "both" in parts:
        both_directions(have_mamba)
    if "e2e" in parts:
        end_to_end(have_mamba)
    if "host" in parts:
        host_time(have_mamba)
    if "graphed-steps" in parts:
        graphed_training_steps(have_mamba)
    if "profile" in parts:
        profile_step()
    if "compile" in parts:
        for frames in (32, 64):
            compiled_vs_eager(frames)
    if "orders" in parts:
        scan_orders()


if __name__ == "__main__":
    main()
