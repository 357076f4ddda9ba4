"""The Triton kernels against the float64 reference: on the CPU through Triton's interpreter
(TRITON_INTERPRET=1, set in a subprocess before triton is imported), on a GPU when there is one."""

import functools
import textwrap
from typing import NamedTuple

import pytest
import torch

from tests.ops import triton_subprocess

triton = pytest.importorskip("triton")

CHECK = textwrap.dedent("""
    import json, sys, torch
    from videomamba.ops import selective_scan
    from tests.ops.test_selective_scan import make_inputs, float64_truth, placed, opcheck_failures, SEQUENCE_INPUTS
    from tests.ops.triton_subprocess import RESULTS_MARK
    from videomamba.ops import ScanOrder
    import videomamba.ops.triton.scan as ts
    from videomamba.ops.triton import SCAN
    device, cases = sys.argv[1], json.loads(sys.argv[2])
    SCAN.short_sequence = 0  # the cases' own checkpoint intervals (the short-sequence rule has a test of its own)
    default_groups = dict(SCAN.channel_groups)
    results = {}
    for case_id, case in cases.items():
        if case_id.startswith("opcheck"):
            continue
        failures = results.setdefault(case_id, [])
        shape, softplus, segments = tuple(case["shape"]), case["softplus"], case["segments"]
        dtype = getattr(torch, case["dtype"])
        SCAN.chunk, SCAN.n_split, SCAN.segments = case["chunk"], case["splits"], segments
        SCAN.poison_outputs, SCAN.fast_softplus, SCAN.forward_tile = True, case["fast_softplus"], case["forward_tile"]
        SCAN.forward_tile_state_parts, SCAN.backward_gluon = case["tile_parts"], case["gluon"]
        groups = case["groups"]
        SCAN.channel_groups = default_groups if groups is None else {k: groups for k in default_groups}
        inputs = make_inputs(*shape, torch.float32, seed=sum(shape), with_optional=case["optional"])
        if dtype == torch.bfloat16:  # the truth sees the same rounded values
            inputs = {k: (v.to(dtype).float() if v is not None and v.dim() == 3 else v) for k, v in inputs.items()}
        order = ScanOrder(*case["order"])
        positions = order.positions(shape[2])
        in_steps = {k: (v.detach().clone().index_select(-1, positions) if v is not None and k in SEQUENCE_INPUTS else v)
                    for k, v in inputs.items()}
        truth_inputs, y_true, h_true = float64_truth(in_steps, softplus)  # the plain scan of the reordered inputs
        y_true = y_true.index_select(-1, torch.argsort(positions))
        inputs = {k: placed(v, device, dtype, case["layout"]) for k, v in inputs.items()}
        y, last = selective_scan(**inputs, delta_softplus=softplus, return_last_state=True, backend="triton", order=order)
        if case["layout"] == "bld" and y.stride(1) != 1:
            failures.append(f"output not in the input's memory order, strides {y.stride()}")
        g = torch.Generator().manual_seed(1)
        w_out = torch.randn(y.shape, generator=g, dtype=torch.float64)
        # the cases with segments leave the last state out of the loss, as a model does: the backward then
        # starts its adjoint from zero without a dlast tensor
        w_last = torch.randn(last.shape, generator=g, dtype=torch.float64) * (segments == 1)
        if segments == 1:
            ((y.double().cpu() * w_out).sum() + (last.double().cpu() * w_last).sum()).backward()
        else:
            (y.double().cpu() * w_out).sum().backward()
        ((y_true * w_out).sum() + (h_true * w_last).sum()).backward()
        pairs = [("out", y.detach().double().cpu(), y_true.detach()), ("last", last.detach().double().cpu(), h_true.detach())]
        unflip = lambda k, g: g.index_select(-1, torch.argsort(positions)) if k in SEQUENCE_INPUTS else g
        pairs += [("d" + k, v.grad.double().cpu(), unflip(k, truth_inputs[k].grad)) for k, v in inputs.items() if v is not None]
        tolerance = 2e-4 if dtype == torch.float32 else 2e-2  # bf16: the output and du, ddelta, dz are stored in bf16
        for name, got, want in pairs:
            err = ((got - want).abs().max() / want.abs().max().clamp(min=1.0)).item()
            if not err < tolerance:
                failures.append(f"{name}: error {err:.2e} over max |value|, tolerance {tolerance}")
    # the fake (meta) implementation gives the real outputs' shapes, strides (channels-last in, channels-last
    # out) and dtypes, which torch.compile relies on
    from videomamba.ops.selective_scan import _scan_op
    SCAN.chunk, SCAN.n_split, SCAN.segments, SCAN.forward_tile, SCAN.backward_gluon = 16, None, 2, None, False
    for case_id in [c for c in cases if c.startswith("opcheck")]:
        dtype = getattr(torch, cases[case_id]["dtype"])
        x = make_inputs(2, 8, 20, 4, torch.float32, seed=3)
        seq = lambda v: v.detach().to(dtype).transpose(1, 2).contiguous().transpose(1, 2).to(device).requires_grad_()
        args = (seq(x["u"]), seq(x["delta"]), x["A"].detach().float().to(device), seq(x["B"]), seq(x["C"]),
                x["D"].detach().float().to(device), seq(x["z"]), x["delta_bias"].detach().float().to(device), True,
                ScanOrder("spatial", 4, 0).code, 4, 0, "triton")
        results[case_id] = opcheck_failures(_scan_op, args, str(dtype))
    print(RESULTS_MARK + json.dumps(results))
""")


class ScanCase(NamedTuple):
    """One interpreter / GPU check of ``selective_scan``'s Triton kernels against the float64 scan of the
    reordered inputs: output, last state and every gradient."""

    shape: tuple[int, int, int, int]  # (b, d, L, n)
    order: tuple[str, int, int] = ("forward", 0, 0)  # ScanOrder(mode, frame_tokens, prefix)
    layout: str = "bld"  # memory order: "bld" channels last (as the mixer passes them), "bdl"
    dtype: str = "float32"
    chunk: int = 16  # steps between the forward's state checkpoints
    segments: int = 1  # segment-parallel forward and backward
    splits: int = 1  # the states split over programs (partial sums)
    groups: int | None = None  # channel groups per thread (None: the default per kernel)
    softplus: bool = True
    optional: bool = True  # D, z and Δ's bias given
    fast_softplus: bool = True  # through the approximate log2 (the default on NVIDIA GPUs)
    # the forward a window of this many steps at a time in registers (SCAN.forward_tile, the default on the GPU);
    # None: a step at a time (``_scan_fwd_kernel``)
    forward_tile: int | None = None
    tile_parts: int = 1  # the window tile's states in this many parts a program (SCAN.forward_tile_state_parts)
    gluon: bool = False  # the backward in Gluon (SCAN.backward_gluon; the GPU alone: the interpreter has no Gluon)

    @property
    def id(self) -> str:
        b, d, L, n = self.shape
        words = [f"L{L}-b{b}-d{d}-n{n}", self.order[0] + (f"{self.order[1]}+{self.order[2]}" if self.order[1] else ""),
                 "channels-last" if self.layout == "bld" else "channels-first", self.dtype, f"chunk{self.chunk}"]
        words += [f"{self.segments}-segments"] * (self.segments > 1) + [f"states-split-{self.splits}"] * (self.splits > 1)
        words += [f"{self.groups}-channel-groups"] * (self.groups is not None)
        words += ["no-softplus"] * (not self.softplus) + ["no-D-z-bias"] * (not self.optional)
        words += ["accurate-softplus"] * (not self.fast_softplus)
        words += [f"fwd-tile{self.forward_tile}"] * (self.forward_tile is not None)
        words += [f"{self.tile_parts}-state-parts"] * (self.tile_parts > 1)
        words += ["gluon-backward"] * self.gluon
        return "_".join(words)


REV, SPATIAL8, TEMPORAL8, TEMPORAL8_CLS = ("reverse", 0, 0), ("spatial", 8, 1), ("temporal", 8, 0), ("temporal", 8, 1)
BF16 = "bfloat16"
SCAN_CASES = [
    # one chunk or many, forward and reversed, tiny shapes (L 1, n 4)
    ScanCase((2, 40, 37, 16), layout="bdl"),
    ScanCase((1, 8, 5, 4), layout="bdl", chunk=64, softplus=False, optional=False),
    ScanCase((1, 33, 70, 16), layout="bdl", chunk=32),
    ScanCase((1, 4, 1, 16), layout="bdl", chunk=64),
    ScanCase((2, 20, 70, 16), REV, layout="bdl", chunk=32),
    ScanCase((1, 8, 5, 4), REV, layout="bdl", chunk=64, softplus=False, optional=False),
    # channels last, forward and reversed; bf16 inputs
    ScanCase((2, 40, 37, 16)),
    ScanCase((2, 33, 70, 16), REV, chunk=32),
    ScanCase((2, 40, 37, 16), REV, dtype=BF16),
    # the per-frame orders (spatial / temporal reversal: frames of 8 tokens, with and without a class token)
    ScanCase((2, 40, 41, 16), SPATIAL8),
    ScanCase((1, 33, 40, 16), TEMPORAL8),
    ScanCase((2, 20, 41, 16), TEMPORAL8_CLS, layout="bdl", dtype=BF16, chunk=32),
    # the states split over 2 or 4 programs (partial sums)
    ScanCase((2, 40, 37, 16), splits=2),
    ScanCase((1, 33, 70, 16), REV, layout="bdl", chunk=32, splits=4),
    ScanCase((1, 8, 5, 4), layout="bdl", chunk=64, splits=4, softplus=False, optional=False),
    ScanCase((2, 40, 37, 16), REV, dtype=BF16, splits=2),
    # segment-parallel: 3-5 segments (the last one short), with splits, orders, one chunk per segment
    ScanCase((2, 40, 70, 16), segments=3),
    ScanCase((1, 33, 70, 16), REV, layout="bdl", chunk=8, splits=2, segments=4),
    ScanCase((2, 40, 41, 16), SPATIAL8, chunk=8, segments=5),
    ScanCase((1, 20, 70, 16), ("temporal", 7, 0), dtype=BF16, segments=5),
    ScanCase((1, 8, 5, 4), layout="bdl", chunk=2, segments=3, softplus=False, optional=False),
    # segments of 6 chunks summarised in blocks (SUMMARY_CHUNKS), several blocks folded per segment
    ScanCase((1, 20, 70, 16), REV, chunk=4, segments=3),
    # every kernel's lanes at 1 (whole channels per thread), 2, 4 or 8 channel groups
    ScanCase((2, 40, 37, 16), REV, groups=1),
    ScanCase((1, 33, 70, 16), layout="bdl", splits=2, segments=3, groups=2),
    ScanCase((2, 40, 41, 16), SPATIAL8, dtype=BF16, chunk=8, segments=5, groups=4),
    ScanCase((1, 12, 37, 16), REV, dtype=BF16, chunk=4, groups=8),
    ScanCase((1, 8, 5, 4), layout="bdl", chunk=2, segments=3, groups=1, softplus=False, optional=False),
    # softplus through the accurate log
    ScanCase((2, 40, 37, 16), REV, segments=3, fast_softplus=False),
    ScanCase((1, 20, 70, 16), ("temporal", 7, 0), dtype=BF16, segments=5, fast_softplus=False),
    # the window-tile forward: whole and partial windows (a window of 8 on chunks of 8 and 16, of 4 and 2), every
    # order, bf16, segments, splits, no optional inputs
    ScanCase((1, 20, 37, 16), REV, forward_tile=8),
    ScanCase((1, 20, 41, 16), SPATIAL8, dtype=BF16, chunk=8, segments=3, forward_tile=8),
    ScanCase((1, 20, 41, 16), TEMPORAL8_CLS, layout="bdl", chunk=8, splits=2, forward_tile=2),
    ScanCase((1, 8, 5, 4), layout="bdl", chunk=64, softplus=False, optional=False, forward_tile=8),
    ScanCase((2, 20, 70, 16), chunk=16, segments=3, forward_tile=4),
    # the window tile's states in two parts: with segments, with the states also split over programs, n 4
    ScanCase((1, 20, 41, 16), SPATIAL8, dtype=BF16, chunk=8, segments=3, forward_tile=8, tile_parts=2),
    ScanCase((1, 20, 41, 16), TEMPORAL8_CLS, layout="bdl", chunk=8, splits=2, forward_tile=2, tile_parts=2),
    ScanCase((1, 8, 5, 4), layout="bdl", chunk=64, softplus=False, optional=False, forward_tile=8, tile_parts=2),
]
# the Gluon backward (GPU only): every order, fp32 and bf16, both memory orders, the last state's gradient,
# segments, the states split over 2 and 4 programs (4, 2 and 1 states a program), windows of 2, 4 and 8 steps,
# no optional inputs, the accurate softplus
GLUON_CASES = [
    ScanCase((2, 40, 37, 16), layout="bdl", gluon=True),
    ScanCase((1, 8, 5, 4), layout="bdl", chunk=64, softplus=False, optional=False, gluon=True),
    ScanCase((2, 33, 70, 16), REV, chunk=32, gluon=True),
    ScanCase((2, 40, 37, 16), REV, dtype=BF16, gluon=True),
    ScanCase((2, 40, 41, 16), SPATIAL8, gluon=True),
    ScanCase((2, 20, 41, 16), TEMPORAL8_CLS, layout="bdl", dtype=BF16, chunk=32, gluon=True),
    ScanCase((1, 33, 70, 16), REV, layout="bdl", chunk=8, splits=2, segments=4, gluon=True),
    ScanCase((2, 40, 37, 16), REV, dtype=BF16, splits=4, gluon=True),
    ScanCase((1, 8, 5, 4), layout="bdl", chunk=2, segments=3, splits=4, softplus=False, optional=False, gluon=True),
    ScanCase((1, 20, 70, 16), ("temporal", 7, 0), dtype=BF16, segments=5, fast_softplus=False, gluon=True),
    ScanCase((1, 20, 70, 16), REV, chunk=4, segments=3, gluon=True),
]
OPCHECKS = {f"opcheck-fake-implementation-{dtype}": {"dtype": dtype} for dtype in ("float32", "bfloat16")}


def _scan_cases(gpu: bool = False) -> dict[str, dict]:
    listed = SCAN_CASES + GLUON_CASES * gpu
    cases = {case.id: case._asdict() for case in listed}
    assert len(cases) == len(listed), "two scan cases share an id"
    return {**cases, **OPCHECKS}


@pytest.mark.parametrize("case", list(_scan_cases()))
def test_triton_scan_in_the_interpreter_matches_float64(case):
    _assert_case_passed("scan", "cpu", case)


@pytest.mark.gpu
@pytest.mark.parametrize("case", list(_scan_cases(gpu=True)))
def test_triton_scan_on_the_gpu_matches_float64(case):
    _assert_case_passed("scan", "cuda", case)


CHECK_PAIR = textwrap.dedent("""
    import json, sys, torch
    from videomamba.ops import ScanInputs, ScanOrder, selective_scan_pair
    from videomamba.ops.selective_scan import _pair_op
    from tests.ops.test_selective_scan import make_inputs, placed, opcheck_failures
    from tests.ops.triton_subprocess import RESULTS_MARK
    import videomamba.ops.triton.scan as ts
    from videomamba.ops.triton import SCAN
    device, cases = sys.argv[1], json.loads(sys.argv[2])
    SCAN.short_sequence = 0  # the cases' own checkpoint intervals (the short-sequence rule has a test of its own)
    results = {}
    # both directions in one launch against the two scans by the float64 reference
    for case_id, case in cases.items():
        if case_id.startswith("opcheck"):
            continue
        failures = results.setdefault(case_id, [])
        shape, order, layout, dtype = tuple(case["shape"]), ScanOrder(*case["order"]), case["layout"], getattr(torch, case["dtype"])
        SCAN.chunk, SCAN.segments, SCAN.n_split, SCAN.poison_outputs = case["chunk"], case["segments"], case["splits"], True
        SCAN.forward_tile, SCAN.forward_tile_state_parts = case["forward_tile"], case["tile_parts"]
        SCAN.backward_gluon = case["gluon"]
        directions = [make_inputs(*shape, torch.float64, seed=sum(shape) + k, with_optional=case["optional"]) for k in (0, 1)]
        z = directions[0].pop("z")
        directions[1].pop("z")
        if dtype == torch.bfloat16:  # the truth sees the same rounded values
            rounded = lambda v: v if v is None or v.dim() < 3 else v.detach().to(dtype).double().requires_grad_()
            directions = [{k: rounded(v) for k, v in inputs.items()} for inputs in directions]
            z = rounded(z)
        got = [{k: placed(v, device, dtype, layout) for k, v in inputs.items()} for inputs in directions]
        z_got = placed(z, device, dtype, layout)
        y = selective_scan_pair(ScanInputs(**got[0]), ScanInputs(**got[1]), z_got, order, True, backend="triton")
        y_true = selective_scan_pair(ScanInputs(**directions[0]), ScanInputs(**directions[1]), z, order, True,
                                     backend="reference")
        if layout == "bld" and y.stride(1) != 1:
            failures.append(f"output not in the input's memory order, strides {y.stride()}")
        w = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        (y.double().cpu() * w).sum().backward()
        (y_true * w).sum().backward()
        pairs = [("out", y.detach().double().cpu(), y_true.detach())]
        pairs += [(f"d{k} direction {i}", v.grad.double().cpu(), directions[i][k].grad)
                  for i in (0, 1) for k, v in got[i].items() if v is not None]
        if z is not None:
            pairs.append(("dz", z_got.grad.double().cpu(), z.grad))
        tolerance = 2e-4 if dtype == torch.float32 else 2e-2
        for name, value, want in pairs:
            err = ((value - want).abs().max() / want.abs().max().clamp(min=1.0)).item()
            if not err < tolerance:
                failures.append(f"{name}: error {err:.2e} over max |value|, tolerance {tolerance}")
    SCAN.chunk, SCAN.n_split, SCAN.segments, SCAN.forward_tile, SCAN.backward_gluon = 16, None, 2, None, False
    for case_id in [c for c in cases if c.startswith("opcheck")]:
        dtype = getattr(torch, cases[case_id]["dtype"])
        x = [make_inputs(2, 8, 20, 4, torch.float32, seed=3 + k) for k in (0, 1)]
        seq = lambda v: v.detach().to(dtype).transpose(1, 2).contiguous().transpose(1, 2).to(device).requires_grad_()
        both = lambda key: torch.stack([x[0][key].detach(), x[1][key].detach()]).float().to(device).requires_grad_()
        args = (seq(x[0]["u"]), seq(x[1]["u"]), seq(x[0]["delta"]), seq(x[1]["delta"]), both("A"), seq(x[0]["B"]),
                seq(x[1]["B"]), seq(x[0]["C"]), seq(x[1]["C"]), both("D"), seq(x[0]["z"]), both("delta_bias"), True,
                ScanOrder("spatial", 4, 0).code, 4, 0)
        results[case_id] = opcheck_failures(_pair_op, args, f"pair {dtype}")
    print(RESULTS_MARK + json.dumps(results))
""")

# both directions in one launch: the backward direction's order, memory layout, dtype, chunk, segments, state
# splits, optional inputs
PAIR_CASES = [ScanCase((2, 40, 41, 16), REV), ScanCase((2, 33, 41, 16), SPATIAL8, chunk=8, segments=3),
              ScanCase((1, 40, 40, 16), TEMPORAL8, layout="bdl", chunk=8, segments=4, splits=2),
              ScanCase((2, 40, 41, 16), REV, dtype=BF16, chunk=8, segments=3),
              ScanCase((1, 8, 5, 4), REV, layout="bdl", chunk=64, optional=False),
              ScanCase((1, 20, 41, 16), REV, dtype=BF16, chunk=8, segments=3, forward_tile=8),
              ScanCase((2, 20, 41, 16), REV, dtype=BF16, chunk=8, segments=2, forward_tile=8, tile_parts=2)]
GLUON_PAIR_CASES = [ScanCase((2, 40, 41, 16), REV, dtype=BF16, chunk=8, segments=3, gluon=True),
                    ScanCase((1, 40, 40, 16), TEMPORAL8, layout="bdl", chunk=8, segments=4, splits=2, gluon=True),
                    ScanCase((1, 20, 41, 16), REV, dtype=BF16, chunk=8, segments=3, forward_tile=8, gluon=True)]


def _pair_cases(gpu: bool = False) -> dict[str, dict]:
    return {**{"pair_" + case.id: case._asdict() for case in PAIR_CASES + GLUON_PAIR_CASES * gpu}, **OPCHECKS}


def _interpreter_cost(case: dict) -> float:
    """A case's run time in the interpreter, roughly: its programs (batch x blocks of 32 channels x state
    splits) times its steps, and a constant for the opchecks and the smallest cases."""
    if "shape" not in case:
        return 2e3
    b, d, L, _ = case["shape"]
    return b * -(-d // 32) * case["splits"] * L * 32 + 2e3


@functools.cache
def _results(check: str, device: str) -> dict[str, list[str]]:
    """Every case of one check script run once per device (in the interpreter on the CPU)."""
    gpu = device != "cpu"
    script, cases = {"scan": (CHECK, _scan_cases(gpu)), "pair": (CHECK_PAIR, _pair_cases(gpu))}[check]
    # two processes at once: the interpreter runs on one core, and the scan check is the suite's longest test
    return triton_subprocess.run_cases(script, device, device == "cpu", cases, timeout=900, processes=2,
                                       cost=_interpreter_cost)


def _assert_case_passed(check: str, device: str, case: str) -> None:
    failures = _results(check, device).get(case, "case not run")
    assert failures == [], failures


@pytest.mark.parametrize("case", list(_pair_cases()))
def test_paired_scan_in_the_interpreter_matches_two_float64_scans(case):
    _assert_case_passed("pair", "cpu", case)


@pytest.mark.gpu
@pytest.mark.parametrize("case", list(_pair_cases(gpu=True)))
def test_paired_scan_on_the_gpu_matches_two_float64_scans(case):
    _assert_case_passed("pair", "cuda", case)


COMPILE_PAIR = textwrap.dedent("""
    import sys, torch
    from videomamba.ops import ScanInputs, ScanOrder, selective_scan_pair, sequence_conv_silu_pair
    from tests.ops.test_selective_scan import make_inputs
    import videomamba.ops.triton.scan as ts
    from videomamba.ops.triton import SCAN
    device = sys.argv[1]
    SCAN.short_sequence = 0  # the cases' own checkpoint intervals (the short-sequence rule has a test of its own)
    SCAN.chunk = 16
    directions = [{k: v.detach().to(device).requires_grad_() if v is not None else None
                   for k, v in make_inputs(1, 8, 20, 4, torch.float32, seed=seed).items()} for seed in (0, 1)]
    z = directions[0].pop("z")
    directions[1].pop("z")
    x = torch.randn(1, 20, 8, device=device).transpose(1, 2).requires_grad_()
    w = torch.randn(2, 8, 1, 4, device=device, requires_grad=True)
    b = torch.randn(2, 8, device=device, requires_grad=True)

    def mixer_core(x):  # the paired conv and scan as the mixer calls them
        u = sequence_conv_silu_pair(x, w, b, ScanOrder("reverse"), use_triton=True)
        inputs = [ScanInputs(**{**d, "u": u_i * d["u"]}) for d, u_i in zip(directions, u)]
        return selective_scan_pair(*inputs, z, ScanOrder("reverse"), delta_softplus=True, backend="triton")

    leaves = [x, w, b, z] + [v for d in directions for v in d.values() if v is not None]
    results = []
    for fn in (mixer_core, torch.compile(mixer_core, fullgraph=True)):  # fullgraph: a graph break raises
        y = fn(x)
        grads = torch.autograd.grad(y.square().sum(), leaves)
        results.append([y, *grads])
    errors = [(a - b_).abs().max().item() for a, b_ in zip(*results)]
    print("max differences compiled - eager:", max(errors))
    # the FLOP counter sees both paired ops: two scans at 9 MACs per (b, d, L, N), two convs at K per (b, d, L),
    # 2 FLOPs a MAC
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        mixer_core(x)
    flops, expected = counter.get_total_flops(), 2 * 2 * (9 * 1 * 8 * 20 * 4 + 1 * 8 * 20 * 4)
    print("FLOPs", flops, "expected", expected)
    sys.exit(0 if max(errors) < 1e-5 and flops == expected else 1)
""")


def test_paired_ops_compile_in_one_graph_and_match_eager():
    """The paired conv and scan under torch.compile(fullgraph=True) (their fake implementations, schemas,
    autograd, outputs that alias nothing), output and every gradient against eager, in the interpreter;
    and the FLOP counter's count of both."""
    triton_subprocess.assert_check_passes(COMPILE_PAIR, "cpu", interpret=True, timeout=900)


INFERENCE_PAIR = textwrap.dedent("""
    import sys, torch
    from unittest import mock
    from videomamba.ops import ScanInputs, ScanOrder, selective_scan, selective_scan_pair
    from tests.ops.test_selective_scan import make_inputs, placed
    import videomamba.ops.triton.scan as ts
    device, failures = sys.argv[1], []
    forward_calls = []
    scan_forward = ts._scan_forward
    def recorded(*args, **kwargs):
        out = scan_forward(*args, **kwargs)
        forward_calls.append(out[2] is not None)
        return out
    for dtype, with_z, order in ((torch.float32, True, ScanOrder("reverse")),
                                 (torch.bfloat16, True, ScanOrder("spatial", 4, 1)),
                                 (torch.bfloat16, False, ScanOrder("reverse"))):
        directions = [make_inputs(1, 16, 21, 16, torch.float64, seed=11 + k) for k in (0, 1)]
        z = directions[0].pop("z")
        z = z if with_z else None
        directions[1].pop("z")
        got = [{k: placed(v, device, dtype, "bld") for k, v in d.items()} for d in directions]
        z = placed(z, device, dtype, "bld")
        inputs = [ScanInputs(**d) for d in got]
        label = f"{dtype}, z {with_z}, {order}"
        with mock.patch.object(ts, "_scan_forward", recorded):
            trained = selective_scan_pair(*inputs, z, order, delta_softplus=True, backend="triton")
            with torch.no_grad():
                inferred = selective_scan_pair(*inputs, z, order, delta_softplus=True, backend="triton")
        if forward_calls != [True, False]:
            failures.append(f"{label}: checkpoints written by the calls {forward_calls}, want [True, False]")
        forward_calls.clear()
        if inferred.requires_grad or inferred.dtype != trained.dtype or inferred.stride() != trained.stride():
            failures.append(f"{label}: inference output {inferred.dtype} {inferred.stride()} grad {inferred.requires_grad}")
        if not torch.equal(inferred, trained.detach()):
            failures.append(f"{label}: inference differs by {(inferred.double() - trained.double()).abs().max().item()}")
        # one direction alike, with its last state
        with mock.patch.object(ts, "_scan_forward", recorded):
            trained = selective_scan(**got[1], z=z, delta_softplus=True, order=order, backend="triton",
                                     return_last_state=True)
            with torch.no_grad():
                inferred = selective_scan(**got[1], z=z, delta_softplus=True, order=order, backend="triton",
                                          return_last_state=True)
        if forward_calls != [True, False]:
            failures.append(f"{label}, one direction: checkpoints written by the calls {forward_calls}")
        forward_calls.clear()
        if not all(torch.equal(a, b.detach()) for a, b in zip(inferred, trained)):
            failures.append(f"{label}, one direction: inference differs from the training path")
    print("\\n".join(failures))
    sys.exit(1 if failures else 0)
""")


def test_paired_scan_without_gradients_skips_what_the_backward_reads():
    """Under no_grad the paired scan writes no checkpoints and no summed output (0.6 GB a layer at 64 frames,
    batch 32), one direction no checkpoints, and both give the training path's output bit for bit, in the
    interpreter."""
    triton_subprocess.assert_check_passes(INFERENCE_PAIR, "cpu", interpret=True, timeout=900)


@pytest.mark.gpu
def test_paired_scan_without_gradients_skips_what_the_backward_reads_on_the_gpu():
    triton_subprocess.assert_check_passes(INFERENCE_PAIR, "cuda", interpret=False, timeout=900)


@pytest.mark.gpu
def test_cuda_picks_triton():
    from videomamba.ops import choose_backend

    u = torch.zeros(1, 1, 1, device="cuda")
    assert choose_backend(u, torch.zeros(1, 16, device="cuda")) == "triton"


def test_segment_rule_fills_the_gpu_without_overfilling_it(monkeypatch):
    """Segments bring batch x channel blocks up to the programs an SM holds (forward: PROGRAMS_PER_SM; the
    backward: its build's, BACKWARD_BUILDS) on the card, or past one wave where that is faster, each at
    least MIN_SEGMENT_CHUNKS chunks long; SEGMENTS forces a count, or the forward's and backward's apart;
    the CPU (interpreter) uses one."""
    import videomamba.ops.triton.scan as ts
    from videomamba.ops.triton import SCAN

    monkeypatch.setattr(ts, "_sm_count", lambda device: 132)  # an H100
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    chunks = -(-6273 // ts.checkpoint_interval(6273))  # 64 frames of VideoMamba-S
    # the window-tile forward (the default): programs of 16 channels, 8 an SM. Both directions of batch 8 are 768
    # programs, one wave without a summary pass; one direction is cut in 5 segments as the backward is
    assert ts._segments(16, 768, chunks, cuda, False, True) == (99, 1)
    assert ts._segments(8, 768, chunks, cuda, False, True) == ts._segments(8, 768, chunks, cuda, True, True) == (20, 5)
    # the step-at-a-time forward: 32 channels a program, 16 an SM
    monkeypatch.setattr(SCAN, "forward_tile", None)
    # the model's bf16 build (read as words): 8 backward programs an SM
    bf16 = [ts._segments(8, 768, chunks, cuda, backward, reads_words=True)[1] for backward in (False, True)]
    assert bf16 == [11, 5]
    assert [ts._segments(32, 768, chunks, cuda, backward, True)[1] for backward in (False, True)] == [5, 1]
    assert ts._segments(8, 768, 3, cuda, False) == (3, 1)  # too short to cut
    assert ts._segments(8, 768, chunks, cpu, False)[1] == 1
    for backward in (False, True):  # one direction of batch 8: one wave, never more programs than fit
        for words in (False, True):
            seg_chunks, segments = ts._segments(8, 768, chunks, cuda, backward, words)
            per_sm = ts._backward_build(words)[1] if backward else SCAN.programs_per_sm[0]
            assert 8 * 24 * segments <= 132 * per_sm and seg_chunks * segments >= chunks
    # both directions in one launch (a batch of 2 x 8): 2 backward segments would fill 73 % of one wave,
    # 5 run in two waves and measured faster; 5 forward segments fill one wave of 16 programs an SM (1 %
    # faster than 4 on the H100); 2 x 32 is more than one wave already, and 2 backward segments beat 1
    assert [ts._segments(16, 768, chunks, cuda, backward, True)[1] for backward in (False, True)] == [5, 5]
    assert [ts._segments(64, 768, chunks, cuda, backward, True)[1] for backward in (False, True)] == [1, 2]
    assert ts._segments(16, 768, 4, cuda, True)[1] == 2  # never below MIN_SEGMENT_CHUNKS chunks a segment
    # the fp32 build, capped at 12 backward programs an SM: both directions of batch 8 at L 785 (99 chunks of
    # 8 steps) in 4 backward segments, one wave of 1536 programs on 1584 slots
    assert ts._segments(16, 768, 99, cuda, True) == (25, 4) and ts._segments(16, 768, 99, cuda, True, True)[1] == 5
    assert ts._backward_build(False) == SCAN.backward_builds["fp32"]
    monkeypatch.setattr(SCAN, "backward_max_registers", 200)
    assert ts._backward_build(True) == (200, SCAN.backward_builds["bf16"][1])
    monkeypatch.setattr(SCAN, "segments", 7)
    assert ts._segments(1, 64, 20, cpu, True) == (3, 7)
    monkeypatch.setattr(SCAN, "segments", (None, 4))
    assert ts._segments(8, 768, chunks, cuda, True)[1] == 4 and ts._segments(8, 768, chunks, cuda, False)[1] == 11
    # the Gluon backward (the default on NVIDIA GPUs) plans for its build's 12 programs an SM: both directions of
    # batch 8 in 4 segments, one wave of 1536 programs on 1584 slots; the CPU never runs it
    monkeypatch.setattr(SCAN, "segments", None)
    monkeypatch.setattr(SCAN, "backward_max_registers", None)
    assert ts._backward_build(True, gluon=True) == SCAN.gluon_build and not ts._gluon_backward(cpu, 8, 16)
    assert ts._segments(16, 768, chunks, cuda, True, True, gluon=True) == (25, 4)


def test_window_tile_takes_two_state_parts_past_one_wave(monkeypatch):
    """The window-tile forward runs its states in two parts where its programs fill more than one wave of
    the one-part tile (inference at batch 32), in one where they fit one (training at batch 8); a setting
    forces either; the CPU (interpreter) takes one."""
    import videomamba.ops.triton.scan as ts
    from videomamba.ops.triton import SCAN

    monkeypatch.setattr(ts, "_sm_count", lambda device: 132)  # an H100
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    programs = [directions * batch * 768 // SCAN.forward_tile_block_d for directions, batch in ((2, 8), (2, 32))]
    assert [ts._tile_state_parts(p, cuda) for p in programs] == [1, 2] and ts._tile_state_parts(programs[1], cpu) == 1
    assert ts._tile_state_parts(132 * SCAN.forward_tile_programs_per_sm, cuda) == 1
    monkeypatch.setattr(SCAN, "forward_tile_state_parts", 2)
    assert ts._tile_state_parts(programs[0], cuda) == 2


def test_an_older_gluon_leaves_the_plain_backward_in_charge():
    """A Triton whose Gluon lacks what the kernel is written against imports the package all the same, and the
    backward runs the plain kernel (Gluon's API moves between releases)."""
    import subprocess
    import sys

    pytest.importorskip("triton.experimental.gluon")
    script = ("import torch, triton.experimental.gluon as g; del g.constexpr_function; "
              "import videomamba.ops.triton.scan as s; "
              "assert s._scan_bwd_gluon_kernel is None and not s._gluon_backward(torch.device('cuda'), 8, 16)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_gluon_backward_plan_fits_the_shared_memory():
    """The programs an SM that the segment rule plans for the Gluon backward (``SCAN.gluon_build``) fit an
    H100 SM's 228 KiB of shared memory with the model's window and 16 states (1 KiB reserved a block), and a
    window too long for the kernel's limit sends the backward to the plain kernel."""
    import videomamba.ops.triton.scan as ts
    from videomamba.ops.triton import SCAN

    per_program = ts.gluon_shared_bytes(ts._window(SCAN.chunk), 16) + 1024
    assert SCAN.gluon_build[1] * per_program <= 228 * 1024, (SCAN.gluon_build, per_program)
    assert ts.gluon_shared_bytes(ts._window(SCAN.chunk), 16) <= ts._GLUON_SHARED < ts.gluon_shared_bytes(64, 64)
    if ts._scan_bwd_gluon_kernel is not None:  # the launcher's decision: the model's window, not a 64-step one
        cuda = torch.device("cuda")
        assert ts._gluon_backward(cuda, ts._window(SCAN.chunk), 16) and not ts._gluon_backward(cuda, 64, 64)


def test_bf16_is_read_as_words_only_where_every_word_lies_in_the_storage():
    import videomamba.ops.triton.scan as ts

    storage = torch.zeros(1, 10, 8, dtype=torch.bfloat16)  # 160 bytes
    assert ts._reads_words(storage.transpose(1, 2))
    assert not ts._reads_words(storage.view(-1)[1:].view(1, 79)[:, :8])  # starts 2 bytes into a word
    assert not ts._reads_words(torch.zeros(3, dtype=torch.bfloat16))  # storage ends mid-word
    assert not ts._reads_words(storage.float())
    assert ts._as_float(storage.transpose(1, 2)).dtype == torch.bfloat16
    odd = storage.view(-1)[1:].view(1, 79)[:, :8].unsqueeze(-1)  # converted instead, in its memory order
    assert ts._as_float(odd).dtype == torch.float32


def test_short_sequences_checkpoint_every_recompute_window():
    """Below SCAN.short_sequence steps the forward checkpoints every SCAN.short_chunk steps, the backward's recompute
    window (no window-entries pass; measured faster at L 785 on an H100); a given chunk wins; the fake
    implementation's checkpoint shape follows the same rule; the summary blocks keep their length in steps."""
    import videomamba.ops.triton.scan as ts

    assert ts.checkpoint_interval(785) == 8 == ts._window(8) and ts.checkpoint_interval(1569) == 64
    # the largest divisor of the segment's chunks up to SUMMARY_CHUNKS x CHUNK steps (16 chunks of 8, 2 of 64)
    assert ts._summary_blocks(20, 99, 8) == (10, 2, 10) and ts._summary_blocks(5, 25, 64) == (1, 5, 25)
    assert ts._summary_blocks(50, 99, 8) == (10, 5, 10) and ts._summary_blocks(12, 99, 64) == (2, 6, 50)
    assert ts._summary_blocks(25, 99, 8) == (5, 5, 20) and ts._summary_blocks(13, 99, 8) == (13, 1, 8)
    assert ts.checkpoint_interval(785, 16) == 16 and ts.checkpoint_interval(6273, 128) == 128
    assert ts.checkpoint_shape(2, 768, 16, 785) == (2, 99, 16, 768)
    assert ts.checkpoint_shape(2, 768, 16, 1569) == (2, 25, 16, 768)
