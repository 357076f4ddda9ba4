"""A/B of the Triton scan's module settings on the GPU, one setting per process (so that a checkout of
another commit can run the same program: ``PYTHONPATH=<its src> python3 benchmarks/scan_gpu_ab.py ...``).

scan: both directions' forward+backward (d_inner 768, d_state 16, fp32, the backward direction reversed)
captured in a CUDA graph at the eight benchmark shapes (``short``: b 8, L 785 and 1569; b 32, L 785), the
min of three medians, then every kernel of one step at b 8, L 785 in µs, and the registers the JIT gave.
step: videomamba_small's training step (batch 8, 224x224, bf16 autocast, fused AdamW) in a CUDA graph at
32 and 64 frames, for each (label, settings) pair.

Usage: PYTHONPATH=src python3 benchmarks/scan_gpu_ab.py scan LABEL ['{"SETTING": value}'] [short]
       PYTHONPATH=src python3 benchmarks/scan_gpu_ab.py step '[["label", {"SETTING": value}], ...]'
(JSON lists become tuples.)"""

import json
import os
import sys

import torch
from torch.profiler import ProfilerActivity, profile

from videomamba.ops.triton import SCAN
from scan_gpu import _graph_ms, _model, graphed_step_ms, warm_up_gpu  # benchmarks/ is on the path
from scan_gpu_sweep import _fresh_step, _paired_call, report_compiled

SHAPES = ((8, 785), (8, 1569), (8, 3137), (8, 6273), (32, 785), (32, 1569), (32, 3137), (32, 6273))
SHORT = ((8, 785), (8, 1569), (32, 785))


def use(settings: dict) -> None:
    """Set fields of ``ops.triton.SCAN`` by their upper-case names (JSON lists as tuples)."""
    for name, value in settings.items():
        setattr(SCAN, name.lower(), tuple(value) if isinstance(value, list) else value)


def scan(label: str, shapes=SHAPES) -> None:
    """The paired scan's graphed forward+backward at ``shapes``; kernels of one step at b 8, L 785."""
    warm_up_gpu()
    for b, L in shapes:
        fwd, grad, leaves = _paired_call(b, L)
        step = _fresh_step(fwd, grad, leaves)
        ms = min(_graph_ms(step, replays=20) for _ in range(3))
        print(f"| {label} | {b} | {L} | {ms:.3f} |", flush=True)
        if (b, L) == (8, 785):
            for _ in range(3):
                step()
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                step()
                torch.cuda.synchronize()
            kernels = [(e.name, e.time_range.elapsed_us()) for e in prof.events()
                       if e.device_type == torch.autograd.DeviceType.CUDA]
            print(f"kernels {label}, b 8, L 785 (µs): " + ", ".join(f"{k[:28]} {us:.1f}" for k, us in kernels))
        del fwd, grad, leaves, step
        torch.cuda.empty_cache()
    report_compiled()


def training_steps(configs: list) -> None:
    """videomamba_small's graphed training step at 32 and 64 frames under each (label, settings)."""
    os.environ["VIDEOMAMBA_SCAN_BACKEND"] = "triton"
    defaults = {name: getattr(SCAN, name.lower()) for _, settings in configs for name in settings}
    warm_up_gpu()
    for frames in (32, 64):
        for label, settings in configs:
            use({**defaults, **settings})
            model = _model("triton", frames)
            print(f"| {frames} | {label} | {graphed_step_ms(model, frames):.1f} |", flush=True)
            model = None
            torch.cuda.empty_cache()
    report_compiled()


def main() -> None:
    mode, rest = sys.argv[1], sys.argv[2:]
    if mode == "scan":
        use(json.loads(rest[1]) if len(rest) > 1 else {})
        scan(rest[0], SHORT if "short" in rest[2:] else SHAPES)
    elif mode == "step":
        training_steps(json.loads(rest[0]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
