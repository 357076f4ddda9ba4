"""The Triton kernels against the float64 reference: on the CPU through Triton's interpreter
(TRITON_INTERPRET=1, set in a subprocess before triton is imported), on a GPU when there is one."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

triton = pytest.importorskip("triton")

CHECK = textwrap.dedent("""
    import sys, torch
    from videomamba.ops import selective_scan
    from tests.ops.test_selective_scan import make_inputs, float64_truth, reversed_truth, SEQUENCE_INPUTS
    device = sys.argv[1]
    failures = []
    cases = [((2, 40, 37, 16), True, True, 16, False, True), ((1, 8, 5, 4), False, False, 64, False, True),
             ((1, 33, 70, 16), True, True, 32, False, True), ((1, 4, 1, 16), True, True, 64, False, True),
             ((2, 20, 70, 16), True, True, 32, True, True), ((1, 8, 5, 4), False, False, 64, True, True),
             ((2, 40, 37, 16), True, True, 16, False, False), ((2, 20, 70, 16), True, True, 32, True, False)]
    # version 2 (chunk-parallel) on a subset: partial last chunk, no softplus/optionals, reversed, partial sums
    cases = [case + (1,) for case in cases] + [
        ((1, 8, 37, 16), True, True, 16, False, True, 2), ((1, 8, 5, 4), False, False, 64, False, True, 2),
        ((1, 6, 70, 16), True, True, 32, True, True, 2), ((2, 5, 37, 16), True, True, 16, True, False, 2)]
    for shape, softplus, optional, chunk, rev, atomic, version in cases:
        import videomamba.ops.triton_scan as ts
        ts.CHUNK, ts.ATOMIC_DBC, ts.VERSION = chunk, atomic, version
        inputs = make_inputs(*shape, torch.float32, seed=sum(shape), with_optional=optional)
        inputs = {k: (v.detach().to(device).requires_grad_() if v is not None else None) for k, v in inputs.items()}
        truth = reversed_truth if rev else float64_truth
        truth_inputs, y_true, h_true = truth({k: (v.cpu() if v is not None else None) for k, v in inputs.items()}, softplus)
        y, last = selective_scan(**inputs, delta_softplus=softplus, return_last_state=True, backend="triton", reverse=rev)
        g = torch.Generator().manual_seed(1)
        w_out = torch.randn(y.shape, generator=g, dtype=torch.float64)
        w_last = torch.randn(last.shape, generator=g, dtype=torch.float64)
        ((y.double().cpu() * w_out).sum() + (last.double().cpu() * w_last).sum()).backward()
        ((y_true * w_out).sum() + (h_true * w_last).sum()).backward()
        pairs = [("out", y.detach().double().cpu(), y_true.detach()), ("last", last.detach().double().cpu(), h_true.detach())]
        unflip = lambda k, g: g.flip(-1) if (rev and k in SEQUENCE_INPUTS) else g
        pairs += [("d" + k, v.grad.double().cpu(), unflip(k, truth_inputs[k].grad)) for k, v in inputs.items() if v is not None]
        for name, got, want in pairs:
            err = ((got - want).abs().max() / want.abs().max().clamp(min=1.0)).item()
            if not err < 2e-4:
                failures.append(f"v{version} {shape} reverse={rev} atomic={atomic} {name}: {err:.2e}")
    print("FAILURES:", failures)
    sys.exit(1 if failures else 0)
""")


def run_check(device: str, interpret: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRITON_INTERPRET": "1" if interpret else "0"}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return subprocess.run([sys.executable, "-c", CHECK, device], env=env, cwd=root, capture_output=True, text=True,
                          timeout=900)


def test_triton_kernels_in_the_interpreter_match_float64():
    result = run_check("cpu", interpret=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


@pytest.mark.gpu
def test_triton_kernels_on_the_gpu_match_float64():
    result = run_check("cuda", interpret=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


@pytest.mark.gpu
def test_cuda_picks_triton():
    from videomamba.ops import choose_backend

    u = torch.zeros(1, 1, 1, device="cuda")
    assert choose_backend(u, torch.zeros(1, 16, device="cuda")) == "triton"
