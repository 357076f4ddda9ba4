"""Host (CPU-side) cost of the GPU path's scan and conv calls, measured without a GPU: the Triton
kernels are replaced by launchers that do nothing, so what is timed is Python, the custom-op or
autograd.Function machinery, the wrappers' small tensor ops and autograd, on tiny CPU tensors.
Both paths in one run: plain eager calls (autograd.Function, ``ops.eager``) and the custom ops
(what runs under torch.compile or FlopCounterMode, forced here by patching ``custom_op_needed``).
At 8-16 frames a videomamba_small training step on an H100 is bound by this host time.

``--model``: the same for a whole model, videomamba_small's 24 blocks on the GPU path (Triton scan, conv
and norm launchers, bf16 autocast) at width 32 on 17 tokens, so that the CPU's arithmetic is small
beside the Python and dispatch around it: a training step's forward+backward and an inference call.
The Triton launcher's own cost (binding 60-70 arguments a kernel) is not in it: it needs a GPU.

Usage: PYTHONPATH=src python benchmarks/scan_host_overhead.py [--repeats 300] [--model]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import statistics
import time

import torch
import triton

import videomamba.ops.sequence_conv as sequence_conv
import videomamba.ops.triton.conv as triton_conv
import videomamba.ops.triton.gate as triton_gate
import videomamba.ops.triton.norm as triton_norm
import videomamba.ops.triton.reduce as triton_reduce
import videomamba.ops.triton.scan as triton_scan
from videomamba.ops.triton import SCAN
from videomamba.ops import (ScanInputs, ScanOrder, selective_scan, selective_scan_pair, sequence_conv_silu,
                           sequence_conv_silu_pair)

scan_module = importlib.import_module("videomamba.ops.selective_scan")  # the package exports a function of that name


class _NoLaunch:
    """Stands in for a Triton kernel: ``kernel[grid](...)`` does nothing."""

    def __getitem__(self, grid):
        return lambda *args, **kwargs: None


@contextlib.contextmanager
def _custom_ops(forced: bool):
    """Within: the scan and conv go through their custom ops (``forced``) or the eager path."""
    saved = scan_module.custom_op_needed, sequence_conv.custom_op_needed
    if forced:
        scan_module.custom_op_needed = sequence_conv.custom_op_needed = lambda: True
    try:
        yield
    finally:
        scan_module.custom_op_needed, sequence_conv.custom_op_needed = saved


def _stub_kernels() -> None:
    """Every Triton kernel the launchers call becomes a ``_NoLaunch``, whichever module they import it into."""
    for module in (triton_scan, triton_gate, triton_conv, triton_reduce, triton_norm):
        for name, value in list(vars(module).items()):
            if isinstance(value, triton.runtime.JITFunction):
                setattr(module, name, _NoLaunch())


def _microseconds(fn, repeats: int, rounds: int = 10) -> tuple[float, float]:
    """Host time per call of ``fn`` on the eager path and through the custom ops: medians over
    ``rounds`` rounds that alternate between the two (the first path timed in a run came out slower
    in either order, so neither goes first throughout)."""
    for forced in (False, True):
        with _custom_ops(forced):
            fn()
    times = {False: [], True: []}
    for round_index in range(rounds):
        for forced in ((False, True) if round_index % 2 == 0 else (True, False)):
            with _custom_ops(forced):
                start = time.perf_counter()
                for _ in range(repeats // rounds):
                    fn()
                times[forced].append((time.perf_counter() - start) / (repeats // rounds) * 1e6)
    return statistics.median(times[False]), statistics.median(times[True])


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def model_host_time(repeats: int) -> None:
    """Host ms of a videomamba_small step (forward+backward, batch 1) and of an inference call on the GPU
    path with the kernels stubbed (``--model``)."""
    import functools
    import os

    import videomamba
    import videomamba.models.mixer as mixer
    import videomamba.ops.residual_norm as residual_norm
    import videomamba.ops.triton.common as triton_common

    os.environ["VIDEOMAMBA_SCAN_BACKEND"] = "triton"
    # the choices the GPU path makes by device, made here for CPU tensors
    residual_norm.fused_available = lambda residual: residual.dtype == torch.float32
    mixer.sequence_conv_silu_pair = functools.partial(sequence_conv.sequence_conv_silu_pair, use_triton=True)
    triton_common.nvidia = lambda device: True
    torch.set_num_threads(1)
    frames = 8
    model = videomamba.create_model("videomamba_small", num_frames=frames, img_size=32, embed_dim=32)
    video, label = torch.randn(1, 3, frames, 32, 32), torch.randint(0, 400, (1,))

    def train():
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(video).float(), label)
        loss.backward()

    def infer():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            model(video)

    print("| videomamba_small (24 blocks), GPU path, kernels stubbed | host ms |\n|---|---|")
    for name, fn in (("training forward+backward", train), ("inference", infer)):
        print(f"| {name} | {_median_ms(fn, repeats):.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1000)
    parser.add_argument("--model", action="store_true", help="a whole model's step instead of the ops")
    args = parser.parse_args()
    _stub_kernels()
    if args.model:
        model_host_time(args.repeats)
        return
    SCAN.segments = 4  # both passes run, as at batch 8 on a GPU
    batch, channels, length, n = 2, 64, 256, 16

    def seq(width):  # channels-last (b, L, d) storage, as the mixer passes them
        return torch.randn(batch, length, width).transpose(1, 2).requires_grad_()

    x = dict(u=seq(channels), delta=seq(channels), A=-torch.rand(channels, n).requires_grad_(), B=seq(n), C=seq(n),
             D=torch.randn(channels).requires_grad_(), z=seq(channels),
             delta_bias=torch.randn(channels).requires_grad_())
    conv_in, weight, bias = seq(channels), torch.randn(channels, 1, 4), torch.randn(channels)
    order = ScanOrder("reverse")

    def scan_train():
        selective_scan(**x, delta_softplus=True, backend="triton", order=order).sum().backward()

    def scan_infer():
        with torch.no_grad():
            selective_scan(**x, delta_softplus=True, backend="triton", order=order)

    def conv_train():
        sequence_conv_silu(conv_in, weight, bias, use_triton=True, order=order).sum().backward()

    # both directions of a mixer: two calls, or one paired call
    x_bwd = {k: (v.detach().clone().requires_grad_() if v is not None else None) for k, v in x.items()}
    directions = [ScanInputs(**{k: v for k, v in inputs.items() if k != "z"}) for inputs in (x, x_bwd)]
    weights = torch.stack([weight, weight.clone()]).requires_grad_()
    biases = torch.stack([bias, bias.clone()]).requires_grad_()

    def two_scans_train():
        (selective_scan(**directions[0]._asdict(), z=x["z"], delta_softplus=True, backend="triton")
         + selective_scan(**directions[1]._asdict(), z=x["z"], delta_softplus=True, backend="triton", order=order)
         ).sum().backward()

    def paired_scan_train():
        selective_scan_pair(*directions, x["z"], order, delta_softplus=True, backend="triton").sum().backward()

    def two_convs_train():
        (sequence_conv_silu(conv_in, weights[0], biases[0], use_triton=True)
         + sequence_conv_silu(conv_in, weights[1], biases[1], use_triton=True, order=order)).sum().backward()

    def paired_conv_train():
        sum(sequence_conv_silu_pair(conv_in, weights, biases, order, use_triton=True)).sum().backward()

    print("| call | eager path (autograd.Function), us | custom op, us | ratio |")
    print("|---|---|---|---|")
    for name, fn in (("scan forward (no grad)", scan_infer), ("scan forward+backward", scan_train),
                     ("conv+SiLU forward+backward", conv_train),
                     ("both directions' scans, two calls, forward+backward", two_scans_train),
                     ("both directions' scans, paired, forward+backward", paired_scan_train),
                     ("both directions' convs, two calls, forward+backward", two_convs_train),
                     ("both directions' convs, paired, forward+backward", paired_conv_train)):
        eager, custom = _microseconds(fn, args.repeats)
        print(f"| {name} | {eager:.0f} | {custom:.0f} | {custom / eager:.2f}x |", flush=True)

if __name__ == "__main__":
    main()
