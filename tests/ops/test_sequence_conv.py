"""The conv + SiLU Triton kernels against the PyTorch conv1d path, through Triton's interpreter on
the CPU (TRITON_INTERPRET=1 is set in a subprocess, before triton is imported) and on a GPU."""

import functools
import textwrap

import pytest
import torch

from tests.ops import triton_subprocess

pytest.importorskip("triton")

CHECK = textwrap.dedent("""
    import json, sys, torch
    from videomamba.ops import ScanOrder
    from videomamba.ops.sequence_conv import sequence_conv_silu
    from tests.ops.triton_subprocess import RESULTS_MARK
    device, cases = sys.argv[1], json.loads(sys.argv[2])
    torch.manual_seed(0)
    fwd, rev = ScanOrder("forward"), ScanOrder("reverse")
    results = {case_id: [] for case_id in cases}
    for case_id, case in cases.items():
        if "shape" not in case:
            continue
        failures = results[case_id]
        (b, d, L, k), scan_order, dtype = case["shape"], ScanOrder(*case["order"]), getattr(torch, case["dtype"])
        order, grad_order = case["layout"], case["grad_layout"]
        x = torch.randn(b, L, d).transpose(1, 2) if order == "bld" else torch.randn(b, d, L)
        x = x.to(device=device, dtype=dtype).requires_grad_()
        w = torch.randn(d, 1, k, device=device, requires_grad=True)
        bias = torch.randn(d, device=device, requires_grad=True)
        y = sequence_conv_silu(x, w, bias, use_triton=True, order=scan_order)
        ref = [t.detach().double().cpu().requires_grad_() for t in (x, w, bias)]
        # the reference: conv1d on the copy permuted into the scan's order, permuted back
        positions = scan_order.positions(L)
        conv = torch.nn.functional.conv1d(ref[0].index_select(-1, positions), ref[1], ref[2], padding=k - 1, groups=d)
        y_ref = torch.nn.functional.silu(conv[..., :L]).index_select(-1, torch.argsort(positions))
        g = torch.randn(b, L, d, dtype=torch.float64).transpose(1, 2) if grad_order == "bld" else torch.randn(b, d, L, dtype=torch.float64)
        y.backward(g.to(device=device, dtype=dtype))
        y_ref.backward(g)
        if y.stride(1) != 1:
            failures.append(f"output not channels-last, strides {y.stride()}")
        tolerance = 1e-5 if dtype == torch.float32 else 2e-2
        for name, got, want in (("out", y, y_ref), ("dx", x.grad, ref[0].grad), ("dweight", w.grad, ref[1].grad),
                                ("dbias", bias.grad, ref[2].grad)):
            err = ((got.detach().double().cpu() - want).abs().max() / want.abs().max().clamp(min=1)).item()
            if not err < tolerance:
                failures.append(f"{name}: error {err:.1e}")
    # the fake (meta) implementations give the real outputs' shapes, strides and dtypes (torch.compile
    # relies on them), and the autograd registration is consistent
    from videomamba.ops.sequence_conv import _conv_silu_op
    from tests.ops.test_selective_scan import opcheck_failures
    for dtype in (torch.float32, torch.bfloat16):
        failures = results["opcheck-fake-implementation"]
        x = torch.randn(2, 9, 24).transpose(1, 2).to(device=device, dtype=dtype).requires_grad_()
        w = torch.randn(24, 1, 4, device=device, requires_grad=True)
        bias = torch.randn(24, device=device, requires_grad=True)
        for scan_order in (fwd, rev, ScanOrder("spatial", 3, 0)):
            failures += opcheck_failures(_conv_silu_op, (x, w, bias, scan_order.code, scan_order.frame_tokens,
                                                         scan_order.prefix), f"{dtype} {scan_order}")
    # the FLOP counter sees the op: K multiply-accumulates per output element
    from torch.utils.flop_counter import FlopCounterMode
    x = torch.randn(2, 9, 24, device=device).transpose(1, 2)
    with FlopCounterMode(display=False) as counter:
        sequence_conv_silu(x, torch.randn(24, 1, 4, device=device), torch.randn(24, device=device), use_triton=True)
    if counter.get_total_flops() != 2 * 2 * 24 * 9 * 4:
        results["flop-count"].append(f"FLOP count {counter.get_total_flops()}, expected {2 * 2 * 24 * 9 * 4}")
    print(RESULTS_MARK + json.dumps(results))
""")


CHECK_PAIR = textwrap.dedent("""
    import json, sys, torch
    from videomamba.ops import ScanOrder
    from videomamba.ops.sequence_conv import sequence_conv_silu_pair, _conv_silu_pair_op
    from tests.ops.test_selective_scan import opcheck_failures
    from tests.ops.triton_subprocess import RESULTS_MARK
    device, cases = sys.argv[1], json.loads(sys.argv[2])
    torch.manual_seed(0)
    results = {case_id: [] for case_id in cases}
    # both directions in one launch (the second in the order given) against two float64 conv1d references;
    # the two output gradients in the strides the paired scan hands back (views of one stacked buffer) or apart
    for case_id, case in cases.items():
        if "shape" not in case:
            continue
        failures = results[case_id]
        (b, d, L, k), order, dtype = case["shape"], ScanOrder(*case["order"]), getattr(torch, case["dtype"])
        stacked_grads = case["stacked_grads"]
        x = torch.randn(b, L, d).transpose(1, 2).to(device=device, dtype=dtype).requires_grad_()
        w = torch.randn(2, d, 1, k, device=device, requires_grad=True)
        bias = torch.randn(2, d, device=device, requires_grad=True)
        y_fwd, y_bwd = sequence_conv_silu_pair(x, w, bias, order, use_triton=True)
        ref = [t.detach().double().cpu().requires_grad_() for t in (x, w, bias)]
        refs = []
        for direction, steps in ((0, torch.arange(L)), (1, order.positions(L))):
            conv = torch.nn.functional.conv1d(ref[0].index_select(-1, steps), ref[1][direction], ref[2][direction],
                                              padding=k - 1, groups=d)
            refs.append(torch.nn.functional.silu(conv[..., :L]).index_select(-1, torch.argsort(steps)))
        if stacked_grads:
            g = torch.randn(2 * b, L, d, dtype=torch.float64).transpose(1, 2)
            grads = (g[:b], g[b:])
        else:
            grads = (torch.randn(b, d, L, dtype=torch.float64), torch.randn(b, L, d, dtype=torch.float64).transpose(1, 2))
        torch.autograd.backward([y_fwd, y_bwd], [t.to(device=device, dtype=dtype) for t in grads])
        torch.autograd.backward(refs, list(grads))
        tolerance = 1e-5 if dtype == torch.float32 else 2e-2
        for name, got, want in (("out", y_fwd, refs[0]), ("out backward direction", y_bwd, refs[1]),
                                ("dx", x.grad, ref[0].grad), ("dweight", w.grad, ref[1].grad),
                                ("dbias", bias.grad, ref[2].grad)):
            err = ((got.detach().double().cpu() - want).abs().max() / want.abs().max().clamp(min=1)).item()
            if not err < tolerance:
                failures.append(f"{name}: error {err:.1e}")
        if y_fwd.stride(1) != 1 or y_bwd.stride(1) != 1:
            failures.append("outputs not channels-last")
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(2, 9, 24).transpose(1, 2).to(device=device, dtype=dtype).requires_grad_()
        w = torch.randn(2, 24, 1, 4, device=device, requires_grad=True)
        bias = torch.randn(2, 24, device=device, requires_grad=True)
        for order in (ScanOrder("reverse"), ScanOrder("spatial", 3, 0)):
            results["opcheck-fake-implementation"] += opcheck_failures(_conv_silu_pair_op, (x, w, bias, order.code, order.frame_tokens,
                                                              order.prefix), f"pair {dtype} {order}")
    print(RESULTS_MARK + json.dumps(results))
""")


def _case_id(shape, order, dtype, extra: str) -> str:
    b, d, L, k = shape
    return "_".join([f"L{L}-b{b}-d{d}-k{k}", order[0] + (f"{order[1]}+{order[2]}" if order[1] else ""), dtype, extra])


FWD, REV = ("forward", 0, 0), ("reverse", 0, 0)
# (b, d, L, kernel), scan order, dtype, input memory order, gradient memory order
CONV_CASES = {_case_id(shape, order, dtype, f"input-{layout}-grad-{grad}"):
              {"shape": shape, "order": order, "dtype": dtype, "layout": layout, "grad_layout": grad}
              for shape, order, dtype, layout, grad in [
                  ((2, 40, 37, 4), FWD, "float32", "bld", "bld"), ((2, 40, 37, 4), REV, "float32", "bld", "bdl"),
                  ((1, 70, 1, 4), FWD, "float32", "bld", "bld"), ((1, 3, 5, 4), REV, "float32", "bdl", "bld"),
                  ((2, 65, 70, 3), REV, "float32", "bld", "bld"), ((2, 40, 37, 4), FWD, "bfloat16", "bld", "bld"),
                  ((2, 40, 41, 4), ("spatial", 8, 1), "float32", "bld", "bld"),
                  ((1, 24, 40, 4), ("temporal", 8, 0), "float32", "bld", "bdl"),
                  ((2, 40, 37, 4), ("temporal", 4, 1), "bfloat16", "bld", "bld")]}
CONV_CASES.update({"opcheck-fake-implementation": {}, "flop-count": {}})
# both directions: the backward one's order, dtype, output gradients as views of one buffer or apart
PAIR_CASES = {"pair_" + _case_id(shape, order, dtype, "stacked-grads" if stacked else "separate-grads"):
              {"shape": shape, "order": order, "dtype": dtype, "stacked_grads": stacked}
              for shape, order, dtype, stacked in [
                  ((2, 40, 37, 4), REV, "float32", True), ((1, 70, 1, 4), REV, "float32", False),
                  ((2, 40, 41, 4), ("spatial", 8, 1), "float32", True), ((1, 24, 40, 3), ("temporal", 8, 0), "float32", False),
                  ((2, 40, 37, 4), ("temporal", 4, 1), "bfloat16", True), ((2, 65, 70, 4), REV, "bfloat16", False)]}
PAIR_CASES["opcheck-fake-implementation"] = {}


@functools.cache
def _results(check: str, device: str) -> dict[str, list[str]]:
    """Every case of one check script run once per device (in the interpreter on the CPU)."""
    script, cases = {"single": (CHECK, CONV_CASES), "pair": (CHECK_PAIR, PAIR_CASES)}[check]
    return triton_subprocess.run_cases(script, device, device == "cpu", cases, timeout=600)


def _assert_case_passed(check: str, device: str, case: str) -> None:
    failures = _results(check, device).get(case, "case not run")
    assert failures == [], failures


@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv_silu_kernels_in_the_interpreter_match_pytorch(case):
    _assert_case_passed("single", "cpu", case)


@pytest.mark.parametrize("case", list(PAIR_CASES))
def test_paired_conv_kernels_in_the_interpreter_match_pytorch(case):
    _assert_case_passed("pair", "cpu", case)


@pytest.mark.gpu
@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv_silu_kernels_on_the_gpu_match_pytorch(case):
    _assert_case_passed("single", "cuda", case)


@pytest.mark.gpu
@pytest.mark.parametrize("case", list(PAIR_CASES))
def test_paired_conv_kernels_on_the_gpu_match_pytorch(case):
    _assert_case_passed("pair", "cuda", case)


def test_pytorch_paths_agree_in_both_memory_orders():
    """The reference itself: channels-last (NHWC conv2d) and (B, d, L) (conv1d) give the same result."""
    torch.manual_seed(0)
    from videomamba.ops.sequence_conv import sequence_conv_silu

    x = torch.randn(2, 37, 24, dtype=torch.float64)
    w, bias = torch.randn(24, 1, 4, dtype=torch.float64), torch.randn(24, dtype=torch.float64)
    for reverse in (False, True):
        a = sequence_conv_silu(x.transpose(1, 2), w, bias, reverse, use_triton=False)
        b = sequence_conv_silu(x.transpose(1, 2).contiguous(), w, bias, reverse, use_triton=False)
        assert a.stride(1) == 1
        torch.testing.assert_close(a, b)
        if reverse:  # the anti-causal conv is the causal one on the flipped sequence
            flipped = sequence_conv_silu(x.transpose(1, 2).flip(-1).contiguous(), w, bias, False, use_triton=False)
            torch.testing.assert_close(a, flipped.flip(-1))
