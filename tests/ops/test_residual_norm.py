"""The fused residual add + RMSNorm kernels against F.rms_norm in float64, through Triton's interpreter on
the CPU (TRITON_INTERPRET=1 is set in a subprocess, before triton is imported) and on a GPU."""

import functools
import textwrap

import pytest
import torch

from tests.ops import triton_subprocess

pytest.importorskip("triton")

CHECK = textwrap.dedent("""
    import json, sys, torch
    import torch.nn.functional as F
    from videomamba.ops.residual_norm import add_rms_norm, _add_norm_op, _norm_op
    from videomamba.ops.triton import NORM, override
    from tests.ops.triton_subprocess import RESULTS_MARK
    device, cases = sys.argv[1], json.loads(sys.argv[2])
    torch.manual_seed(0)
    results = {case_id: [] for case_id in cases}
    for case_id, case in cases.items():
        if "shape" not in case:
            continue
        failures = results[case_id]
        shape, branch_dtype, out_dtype = case["shape"], case["branch"], getattr(torch, case["out"])
        residual = (torch.randn(*shape, device=device) * 3 + 1).requires_grad_()
        branch = (None if branch_dtype is None
                  else torch.randn(*shape, device=device).to(getattr(torch, branch_dtype)).requires_grad_())
        weight = (1 + 0.3 * torch.randn(shape[-1], device=device)).requires_grad_()
        with override(NORM, **case.get("settings", {})):
            total, normed = add_rms_norm(residual, branch, weight, 1e-5, out_dtype, use_triton=True)
            if branch is None and total is not residual:
                failures.append("without a branch, total is not the residual itself")
            if normed.dtype != out_dtype or total.dtype != torch.float32:
                failures.append(f"dtypes total {total.dtype}, normed {normed.dtype}")
            # the gradient total receives downstream (the next block's residual), and the normed output's
            # (held in the normed output's dtype: the gradient reaching a bf16 output is bf16)
            g_normed = torch.randn(*shape, device=device).to(out_dtype).float()
            g_total = torch.randn(*shape, device=device) if case["downstream"] else None
            loss = (normed.float() * g_normed).sum() + ((total * g_total).sum() if g_total is not None else 0)
            loss.backward()
        leaves = [t.detach().double().cpu().requires_grad_() for t in (residual, weight)]
        ref_branch = None if branch is None else branch.detach().double().cpu().requires_grad_()
        ref_total = leaves[0] + ref_branch if ref_branch is not None else leaves[0]
        ref_normed = F.rms_norm(ref_total, (shape[-1],), leaves[1], 1e-5)
        ref_loss = (ref_normed * g_normed.double().cpu()).sum()
        if g_total is not None:
            ref_loss = ref_loss + (ref_total * g_total.double().cpu()).sum()
        ref_loss.backward()
        tolerance = 1e-5 if out_dtype == torch.float32 else 1e-2
        checks = [("total", total, ref_total, 1e-6), ("normed", normed, ref_normed, tolerance),
                  ("dresidual", residual.grad, leaves[0].grad, 1e-5), ("dweight", weight.grad, leaves[1].grad, 1e-5)]
        if branch is not None:
            checks.append(("dbranch", branch.grad, ref_branch.grad, 1e-5 if branch.dtype == torch.float32 else 1e-2))
            if branch.grad.dtype != branch.dtype:
                failures.append(f"dbranch dtype {branch.grad.dtype}")
        for name, got, want, tol in checks:
            err = ((got.detach().double().cpu() - want).abs().max() / want.abs().max().clamp(min=1)).item()
            if not err < tol:
                failures.append(f"{name}: error {err:.1e} (tolerance {tol:.0e})")
    # the fake (meta) implementations give the real outputs' shapes and dtypes (torch.compile relies on
    # them), and the autograd registrations are consistent
    from tests.ops.test_selective_scan import opcheck_failures
    failures = results["opcheck-fake-implementation"]
    residual = torch.randn(3, 5, 24, device=device, requires_grad=True)
    branch = torch.randn(3, 5, 24, device=device, dtype=torch.bfloat16, requires_grad=True)
    weight = torch.randn(24, device=device, requires_grad=True)
    for dtype in (torch.float32, torch.bfloat16):
        failures += opcheck_failures(_add_norm_op, (residual, branch, weight, 1e-5, dtype), f"add {dtype}")
        failures += opcheck_failures(_norm_op, (residual, weight, 1e-5, dtype), f"norm {dtype}")
    print(RESULTS_MARK + json.dumps(results))
""")

# shape (..., D), the branch's dtype (None: no branch), the normed output's dtype, whether total's gradient
# arrives from downstream; settings: a tile of one row a program, and a backward with fewer programs than
# blocks of rows (each then loops)
CASES = {
    "bf16-branch-bf16-out": dict(shape=(2, 37, 48), branch="bfloat16", out="bfloat16", downstream=True),
    "fp32-branch-fp32-out": dict(shape=(3, 19, 40), branch="float32", out="float32", downstream=True),
    "no-downstream-gradient": dict(shape=(2, 21, 32), branch="bfloat16", out="float32", downstream=False),
    "no-branch": dict(shape=(2, 23, 48), branch=None, out="bfloat16", downstream=True),
    "no-branch-no-downstream": dict(shape=(45, 24), branch=None, out="float32", downstream=False),
    "row-a-program-looping-backward": dict(shape=(2, 29, 96), branch="bfloat16", out="bfloat16", downstream=True,
                                           settings=dict(block_elements=64, backward_programs=5)),
}
CASES["opcheck-fake-implementation"] = {}


@functools.cache
def _results(device: str) -> dict[str, list[str]]:
    return triton_subprocess.run_cases(CHECK, device, device == "cpu", CASES, timeout=600)


@pytest.mark.parametrize("case", list(CASES))
def test_add_rms_norm_kernels_in_the_interpreter_match_float64(case):
    failures = _results("cpu").get(case, "case not run")
    assert failures == [], failures


@pytest.mark.gpu
@pytest.mark.parametrize("case", list(CASES))
def test_add_rms_norm_kernels_on_the_gpu_match_float64(case):
    failures = _results("cuda").get(case, "case not run")
    assert failures == [], failures


COMPILE = textwrap.dedent("""
    import sys, torch
    from videomamba.ops.residual_norm import add_rms_norm
    torch.manual_seed(0)

    def blocks(residual, first, second, w1, w2):
        # a first block (no branch yet), a second one (its sum feeds the next add), the final norm's add
        residual, normed = add_rms_norm(residual, None, w1, 1e-5, torch.bfloat16, use_triton=True)
        residual, normed2 = add_rms_norm(residual, first + normed, w2, 1e-5, torch.bfloat16, use_triton=True)
        # the last sum feeds nothing but its norm: its gradient arrives as None
        total, out = add_rms_norm(residual, second * normed2, w1, 1e-5, use_triton=True)
        return (out * out).sum()

    leaves = [torch.randn(2, 7, 24), torch.randn(2, 7, 24).bfloat16(), torch.randn(2, 7, 24).bfloat16(),
              torch.rand(24) + 0.5, torch.rand(24) + 0.5]
    results = []
    for fn in (blocks, torch.compile(blocks, fullgraph=True, backend="aot_eager")):
        args = [t.clone().requires_grad_() for t in leaves]
        loss = fn(*args)
        loss.backward()
        results.append([loss] + [a.grad for a in args])
    errors = [((a.double() - b.double()).abs().max() / b.double().abs().max().clamp(min=1)).item()
              for a, b in zip(*results)]
    print("errors", errors)
    sys.exit(0 if max(errors) < 1e-6 else 1)
""")


def test_fused_ops_trace_into_one_graph_and_match_eager():
    """Both custom ops under torch.compile(fullgraph=True) (schemas, fake implementations, autograd
    registrations, a sum's gradient given or None): loss and every gradient as eager, in the interpreter."""
    triton_subprocess.assert_check_passes(COMPILE, "cpu", interpret=True, timeout=600)


MODEL = textwrap.dedent("""
    import sys, torch
    from unittest import mock
    import videomamba
    from videomamba.ops import residual_norm
    device = sys.argv[1]
    torch.manual_seed(0)
    model = videomamba.create_model("videomamba_nano", embed_dim=32, depth=3, num_frames=4, img_size=32,
                                    num_classes=5, drop_path_rate=0.2).to(device)
    with torch.no_grad():  # norm weights away from their initial ones, so that the kernels' use of them shows
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    video = torch.randn(2, 3, 4, 32, 32, device=device)
    results = []
    for fused in (True, False):
        torch.manual_seed(1)  # the same drop-path draws
        model.zero_grad()
        with mock.patch.object(residual_norm, "fused_available", lambda residual: fused):
            logits, internals = model.forward_with_internals(video, record=("features",))
            loss = torch.nn.functional.cross_entropy(logits, torch.tensor([1, 3], device=device))
            loss.backward()
        grads = [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]
        results.append([logits.detach()] + [f.detach() for f in internals.features] + grads)
    assert len(results[0]) == len(results[1]) > 3 + 3
    errors = [((a.double() - b.double()).abs().max() / b.double().abs().max().clamp(min=1)).item()
              for a, b in zip(*results)]
    print("largest error", max(errors))
    sys.exit(0 if max(errors) < 1e-5 else 1)
""")


def test_model_with_the_fused_norm_matches_the_pytorch_path():
    """A whole model (3 blocks, drop path on, in training) through the fused ops, in the interpreter:
    logits, every block's residual stream and every parameter's gradient as with F.rms_norm on the
    sum, in float32."""
    triton_subprocess.assert_check_passes(MODEL, "cpu", interpret=True, timeout=600)


@pytest.mark.gpu
def test_model_with_the_fused_norm_matches_the_pytorch_path_on_the_gpu():
    triton_subprocess.assert_check_passes(MODEL, "cuda", interpret=False, timeout=600)


def test_pytorch_path_is_the_add_then_rms_norm():
    """Off the kernels: exactly the residual plus the branch, then nn.RMSNorm, then the cast."""
    from videomamba.ops.residual_norm import add_rms_norm

    torch.manual_seed(0)
    residual, branch = torch.randn(2, 7, 24), torch.randn(2, 7, 24).bfloat16()
    norm = torch.nn.RMSNorm(24, eps=1e-5)
    torch.nn.init.normal_(norm.weight)
    total, normed = add_rms_norm(residual, branch, norm.weight, 1e-5, torch.bfloat16, use_triton=False)
    assert torch.equal(total, residual + branch.float())
    assert torch.equal(normed, norm(residual + branch.float()).bfloat16())
    same, normed = add_rms_norm(residual, None, norm.weight, 1e-5)
    assert same is residual and torch.equal(normed, norm(residual))


def test_add_rms_norm_rejects_mismatched_shapes():
    from videomamba.ops.residual_norm import add_rms_norm

    with pytest.raises(ValueError, match="branch"):
        add_rms_norm(torch.zeros(2, 3, 8), torch.zeros(2, 4, 8), torch.ones(8), 1e-5)
    with pytest.raises(ValueError, match="weight"):
        add_rms_norm(torch.zeros(2, 3, 8), None, torch.ones(6), 1e-5)
