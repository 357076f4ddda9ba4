"""CPU speed of the selective scan backends and of whole models (forward and training step).

Usage: python benchmarks/scan_cpu.py [--threads 2] [--quick] [--models-only]
Times are medians of repeated runs on this machine; the reference (plain autograd loop) is measured
in the same run, and speed-ups are ratios to it. Reference forward+backward is slow (minutes at
L=1569), so it is timed once there.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time

import torch

import videomamba
from videomamba.ops import selective_scan


def _inputs(b, d, L, n):
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return dict(u=r(b, d, L), delta=0.5 * r(b, d, L), A=-(torch.rand(d, n, generator=g) * 2 + 0.05),
                B=r(b, n, L), C=r(b, n, L), D=r(d), z=r(b, d, L), delta_bias=0.3 * r(d))


def _median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_scan(backend, b, d, L, n, backward, repeats):
    inputs = _inputs(b, d, L, n)
    if backward:
        for v in inputs.values():
            v.requires_grad_()

    def run():
        out = selective_scan(**inputs, delta_softplus=True, backend=backend)
        if backward:
            out.sum().backward()
    run()  # warm-up (builds the compiled kernel on first use)
    return _median_time(run, repeats)


def time_model(name, batch, train, repeats, recompute_activations=False, **overrides):
    model = videomamba.create_model(name, **overrides)
    model.recompute_activations = recompute_activations
    cfg = model.cfg
    video = torch.randn(batch, 3, cfg.num_frames, cfg.img_size, cfg.img_size)
    if train:
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        labels = torch.randint(0, cfg.num_classes, (batch,))

        def run():
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(video), labels).backward()
            opt.step()
    else:
        model.eval()

        def run():
            with torch.no_grad():
                model(video)
    run()
    return _median_time(run, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2, help="batch of the scan shapes")
    parser.add_argument("--quick", action="store_true", help="skip the reference at L=1569 fwd+bwd")
    parser.add_argument("--models-only", action="store_true", help="only the whole-model table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# CPU scan benchmark, {datetime.date.today()}, {platform.processor() or platform.machine()}, "
          f"{args.threads} threads, torch {torch.__version__}\n")
    if not args.models_only:
        print("| shape (b, d_inner, L, d_state) | pass | reference ms | chunked ms | compiled ms | compiled vs reference |")
        print("|---|---|---|---|---|---|")
        nano = videomamba.create_model("videomamba_nano").cfg
        nano_shape = (16, nano.embed_dim * nano.expand, 1 + nano.grid[0] * nano.grid[1] * nano.grid[2], nano.d_state)
        shapes = [(args.batch, 384, L, 16) for L in (197, 785, 1569)] + [nano_shape]
        for b, d, L, n in shapes:
            for backward in (False, True):
                few = 1 if (backward and L >= 785) else 3
                ref = None if (args.quick and backward and L == 1569) else time_scan("reference", b, d, L, n, backward, few)
                chunked = time_scan("chunked", b, d, L, n, backward, 3)
                compiled = time_scan("cpu", b, d, L, n, backward, 5)
                ref_s = f"{1e3 * ref:.1f}" if ref else "-"
                ratio = f"{ref / compiled:.0f}x" if ref else "-"
                print(f"| ({b}, {d}, {L}, {n}) | {'fwd+bwd' if backward else 'fwd'} | {ref_s} | "
                      f"{1e3 * chunked:.1f} | {1e3 * compiled:.1f} | {ratio} |", flush=True)
    print("\n| model | input | batch | forward ms (clips/s) | train step ms (clips/s) | "
          "train step, activations recomputed ms (x stored) |")
    print("|---|---|---|---|---|---|")
    for name, batch, overrides in (("videomamba_nano", 16, {}), ("videomamba_tiny", 2, {"num_frames": 8, "img_size": 112})):
        fwd = time_model(name, batch, False, 3, **overrides)
        step = time_model(name, batch, True, 5, **overrides)
        recomputed = time_model(name, batch, True, 5, recompute_activations=True, **overrides)
        cfg = videomamba.create_model(name, **overrides).cfg
        print(f"| {name} | {cfg.num_frames}x{cfg.img_size}x{cfg.img_size} | {batch} | {1e3 * fwd:.0f} ({batch / fwd:.1f}) | "
              f"{1e3 * step:.0f} ({batch / step:.1f}) | {1e3 * recomputed:.0f} ({recomputed / step:.2f}x) |", flush=True)


if __name__ == "__main__":
    main()
