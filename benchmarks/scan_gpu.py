"""GPU scan benchmark: correctness of the Triton kernels against float64, then timings against the
chunked PyTorch scan and mamba_ssm's CUDA selective_scan_fn (if built), with the memory and exp
floors, and a training step of videomamba_small.

Usage (GPU machine): bash benchmarks/build_mamba_ssm.sh; PYTHONPATH=src python3 benchmarks/scan_gpu.py
"""

from __future__ import annotations

import datetime
import sys

import torch
import triton.testing

import videomamba.ops.triton_scan as triton_scan
from videomamba.ops import selective_scan

DEV = "cuda"


def triton_version(version: int) -> None:
    """Switch the Triton backend between version 1 (sequential) and 2 (chunk-parallel)."""
    triton_scan.VERSION = version


def inputs(b, d, L, n=16, dtype=torch.float32, seed=0):
    g = torch.Generator(device=DEV).manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, device=DEV)  # noqa: E731
    return dict(u=r(b, d, L).to(dtype), delta=(0.5 * r(b, d, L)).to(dtype),
                A=-(torch.rand(d, n, generator=g, device=DEV) * 2 + 0.05), B=r(b, n, L).to(dtype),
                C=r(b, n, L).to(dtype), D=r(d), z=r(b, d, L).to(dtype), delta_bias=0.3 * r(d))


def correctness() -> None:
    print("## correctness: Triton vs float64 (chunked scan in float64 on the GPU), max error / max |value|\n")
    print("| version | reverse | b | d_inner | L | dtype | out | du | ddelta | dA | dB | dC | dD | dz | dbias |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    worst = 0.0
    cases = [(1, 384, 1), (2, 384, 197), (8, 768, 785), (4, 1152, 1569), (1, 768, 3137), (1, 384, 6273)]
    for version, reverse, b, d, L, dtype in [(v, r, *c, t) for v in (1, 2) for r in (False, True) for c in cases
                                             for t in (torch.float32, torch.bfloat16)]:
        triton_version(version)
        x = inputs(b, d, L, dtype=dtype, seed=L + d)
        ref = {k: v.double().requires_grad_() for k, v in x.items()}
        got = {k: v.clone().requires_grad_() for k, v in x.items()}
        y_ref = selective_scan(**ref, delta_softplus=True, backend="chunked", reverse=reverse)
        y = selective_scan(**got, delta_softplus=True, backend="triton", reverse=reverse)
        w = torch.randn_like(y_ref)
        (y_ref * w).sum().backward()
        (y.double() * w).sum().backward()
        errs = [((y.double() - y_ref).abs().max() / y_ref.abs().max().clamp(min=1)).item()]
        for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias"):
            a, r = got[k].grad.double(), ref[k].grad
            errs.append(((a - r).abs().max() / r.abs().max().clamp(min=1)).item())
        worst = max(worst, max(errs) if dtype == torch.float32 else 0)
        print(f"| {version} | {reverse} | {b} | {d} | {L} | {str(dtype)[6:]} | "
              + " | ".join(f"{e:.1e}" for e in errs) + " |", flush=True)
    triton_version(1)
    print(f"\nworst fp32 error: {worst:.2e}\n")


def floors(b, d, L, n=16) -> tuple[float, float]:
    x = torch.empty(2**28, device=DEV)
    ms = triton.testing.do_bench(lambda: x.clone())
    bandwidth = 2 * x.numel() * 4 / (ms * 1e-3)
    bytes_fwd = 4 * (4 * b * d * L + 2 * b * n * L)  # u, delta, z read, out written; B, C read (fp32)
    exps = b * d * L * n
    return bytes_fwd / bandwidth * 1e3, exps / 4.2e12 * 1e3


def timings(have_mamba: bool) -> None:
    if have_mamba:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    print("## scan alone, one direction, d_inner 768, d_state 16, fp32 inputs, ms (do_bench median)\n")
    print("| b | L | pass | triton v1 | triton v2 | chunked | mamba_ssm | mem floor | exp floor |")
    print("|---|---|---|---|---|---|---|---|---|")
    columns = ("triton", "triton_v2", "chunked", "mamba_ssm")
    for b in (8, 32):
        for L in (785, 1569, 3137, 6273):
            x = inputs(b, 768, L)
            for name in x:
                x[name].requires_grad_()
            mem_floor, exp_floor = floors(b, 768, L)
            row = {}
            for backend in columns:
                if backend == "chunked" and b * L > 8 * 1569:
                    continue  # materialises (b, d, L, 16) tensors several times: skipped where it cannot fit
                if backend == "mamba_ssm" and not have_mamba:
                    continue

                def fwd():
                    if backend == "mamba_ssm":
                        return selective_scan_fn(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"],
                                                 x["delta_bias"], delta_softplus=True)
                    triton_version(2 if backend == "triton_v2" else 1)
                    return selective_scan(**x, delta_softplus=True, backend=backend.replace("_v2", ""))

                def fwd_bwd():
                    fwd().sum().backward()

                with torch.no_grad():
                    row[(backend, "fwd")] = triton.testing.do_bench(fwd)
                row[(backend, "fwd+bwd")] = triton.testing.do_bench(fwd_bwd)
            for pass_ in ("fwd", "fwd+bwd"):
                cells = [f"{row[(k, pass_)]:.3f}" if (k, pass_) in row else "-" for k in columns]
                print(f"| {b} | {L} | {pass_} | " + " | ".join(cells) + f" | {mem_floor:.3f} | {exp_floor:.3f} |", flush=True)
    triton_version(1)
    print()


class _MambaSsmScan:
    """Within this context the mixers call mamba_ssm's CUDA ``selective_scan_fn`` and gather the
    backward order (flip-based, as Vim and OpenGVLab's VideoMamba do): the mamba_ssm baseline."""

    def __enter__(self):
        import videomamba.models.mixer as mixer
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

        def scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, reverse=False):
            assert not reverse, "the baseline gathers; it never asks for a reversed scan"
            return selective_scan_fn(u.contiguous(), delta.contiguous(), A, B.contiguous(), C.contiguous(), D,
                                     z.contiguous() if z is not None else None, delta_bias, delta_softplus)

        self.mixer, self.original = mixer, mixer.selective_scan
        mixer.selective_scan = scan
        return self

    def __exit__(self, *exc):
        self.mixer.selective_scan = self.original
        return False


def end_to_end(have_mamba: bool) -> None:
    import contextlib
    import os

    import videomamba
    from videomamba.analysis.efficiency import ViTBaseline

    print("## training step (batch 8) and inference (batch 32), 224x224, bf16 autocast, AdamW\n")
    print("| model | frames | scan | train step ms | train clips/s | train peak GiB | infer clips/s | infer peak GiB |")
    print("|---|---|---|---|---|---|---|---|")
    variants = [("videomamba_small", "triton"), ("videomamba_small", "triton_v2"), ("videomamba_small", "mamba_ssm"),
                ("videomamba_small", "chunked"), ("vit_s", None)]
    for frames in (8, 16, 32, 64):
        for name, backend in variants:
            if (backend == "chunked" and frames > 8) or (backend == "mamba_ssm" and not have_mamba):
                continue
            if backend in ("triton", "triton_v2", "chunked"):
                os.environ["VIDEOMAMBA_SCAN_BACKEND"] = backend.replace("_v2", "")
            triton_version(2 if backend == "triton_v2" else 1)
            patch = _MambaSsmScan() if backend == "mamba_ssm" else contextlib.nullcontext()
            with patch:
                model = (videomamba.create_model("videomamba_small", num_frames=frames) if backend
                         else ViTBaseline()).to(DEV)  # the ViT's positions are built for any length
                if backend == "mamba_ssm":
                    model.read_reversal_in_place = False
                opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
                video = torch.randn(8, 3, frames, 224, 224, device=DEV)
                labels = torch.randint(0, 400, (8,), device=DEV)

                def step():
                    opt.zero_grad(set_to_none=True)
                    with torch.autocast("cuda", dtype=torch.bfloat16):
                        loss = torch.nn.functional.cross_entropy(model(video).float(), labels)
                    loss.backward()
                    opt.step()
                step()
                torch.cuda.reset_peak_memory_stats()
                ms = triton.testing.do_bench(step, warmup=1, rep=200)
                peak = torch.cuda.max_memory_allocated() / 2**30
                del opt
                model.eval()
                batch = torch.randn(32, 3, frames, 224, 224, device=DEV)

                @torch.no_grad()
                def infer():
                    with torch.autocast("cuda", dtype=torch.bfloat16):
                        model(batch)
                infer()
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                infer_ms = triton.testing.do_bench(infer, warmup=1, rep=200)
                infer_peak = torch.cuda.max_memory_allocated() / 2**30
            print(f"| {name} | {frames} | {backend or 'sdpa'} | {ms:.1f} | {8 / ms * 1e3:.2f} | {peak:.1f} | "
                  f"{32 / infer_ms * 1e3:.2f} | {infer_peak:.1f} |", flush=True)
            del model, batch, video
            torch.cuda.empty_cache()
    os.environ.pop("VIDEOMAMBA_SCAN_BACKEND", None)
    triton_version(1)


def main() -> None:
    print(f"# GPU scan benchmark, {datetime.date.today()}, {torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"triton {triton.__version__}\n")
    try:
        import selective_scan_cuda  # noqa: F401
        have_mamba = True
    except ImportError:
        have_mamba = False
        print("mamba_ssm is not built here: its column stays empty\n")
    parts = sys.argv[1:] or ["correctness", "timings", "e2e"]
    if "correctness" in parts:
        correctness()
    if "timings" in parts:
        timings(have_mamba)
    if "e2e" in parts:
        end_to_end(have_mamba)


if __name__ == "__main__":
    main()
