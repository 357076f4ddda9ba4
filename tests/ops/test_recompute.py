import pytest
import torch
import torch.nn.functional as F

import videomamba
from videomamba.ops import recompute as recompute_module
from videomamba.ops.recompute import Recompute


class Counted:
    """A deterministic op that counts its calls."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args):
        self.calls += 1
        return self.fn(*args)


def _chain(x, w1, w2, scope):
    """x -> linear (recipe) -> transposed view -> tanh-cumsum (recipe) -> products that save views of both."""
    hidden = scope.run(lambda a, w: F.linear(a, w), x, w1)
    wave = scope.run(lambda h: torch.tanh(h.transpose(1, 2)).cumsum(-1), hidden)
    return (wave.transpose(1, 2) * hidden).sum() + (hidden.transpose(1, 2) @ w2).square().sum()


def test_recomputed_chain_gives_identical_gradients_and_drops_its_outputs():
    torch.manual_seed(0)
    x = torch.randn(3, 7, 5, dtype=torch.float64, requires_grad=True)
    w1 = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    w2 = torch.randn(7, 4, dtype=torch.float64, requires_grad=True)
    grads, dropped = [], []
    for enabled in (False, True):
        with Recompute(enabled) as scope:
            loss = _chain(x, w1, w2, scope)
        grads.append(torch.autograd.grad(loss, (x, w1, w2)))
        dropped.append(scope.dropped_bytes)
    for a, b in zip(*grads):
        assert torch.equal(a, b)
    assert dropped[0] == 0
    assert dropped[1] == 2 * 3 * 7 * 6 * 8  # hidden and wave, each once although saved by several ops


def test_each_recipe_runs_once_per_backward_and_chains_hold_recipes():
    torch.manual_seed(0)
    x = torch.randn(4, 8, requires_grad=True)
    first = Counted(lambda a: a.exp())
    second = Counted(lambda a: a * 3.0)
    with Recompute() as scope:
        a = scope.run(first, x)
        b = scope.run(second, a)
        loss = (a * a).sum() + b.pow(3).sum() + (a * b).sum()
    assert not scope._outputs  # the scope keeps nothing once closed
    assert (first.calls, second.calls) == (1, 1)
    loss.backward()
    assert (first.calls, second.calls) == (2, 2)  # the backward made each once, the second from the first's
    ref = x.detach().clone().requires_grad_()
    e = ref.exp()
    ((e * e).sum() + (3 * e).pow(3).sum() + (e * 3 * e).sum()).backward()
    torch.testing.assert_close(x.grad, ref.grad)


def test_views_come_back_with_their_geometry():
    x = torch.randn(2, 3, 4, requires_grad=True)
    seen = []

    def consumer(t):
        class Keep(torch.autograd.Function):
            @staticmethod
            def forward(ctx, v):
                ctx.save_for_backward(v)
                return v.clone()

            @staticmethod
            def backward(ctx, g):
                (v,) = ctx.saved_tensors
                seen.append((v.shape, v.stride(), v.storage_offset(), v.clone()))
                return g

        return Keep.apply(t)

    with Recompute() as scope:
        made = scope.run(lambda a: a * 2, x)
        view = made.transpose(0, 2)[1:]
        expected = view.detach().clone()
        out = consumer(view)
    out.sum().backward()
    shape, stride, offset, value = seen[0]
    assert (shape, stride, offset) == (view.shape, view.stride(), view.storage_offset())
    assert torch.equal(value, expected)


def test_recompute_runs_under_the_forwards_autocast():
    torch.manual_seed(0)
    x = torch.randn(8, 16, requires_grad=True)
    w = torch.randn(12, 16, requires_grad=True)
    grads = []
    for enabled in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16), Recompute(enabled) as scope:
            h = scope.run(F.linear, x, w)
            assert h.dtype == torch.bfloat16
            loss = (h.float().sin() * h.float()).sum()
        grads.append(torch.autograd.grad(loss, (x, w)))
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_a_recipe_that_allocates_differently_is_an_error():
    sizes = iter([6, 12])  # the recomputed output's storage is twice the forward's
    x = torch.randn(6, requires_grad=True)
    with Recompute() as scope:
        out = scope.run(lambda a: a.new_ones(next(sizes))[:6], x)
        loss = (out * x).sum()
    with pytest.raises(RuntimeError, match="bytes of storage"):
        loss.backward()


def test_disabled_scope_is_a_plain_call():
    calls = Counted(lambda a: a + 1)
    x = torch.randn(3, requires_grad=True)
    with Recompute(enabled=False) as scope:
        y = scope.run(calls, x)
        (y * y).sum().backward()
    assert calls.calls == 1 and scope.dropped_bytes == 0


@pytest.mark.parametrize("scan_order", ["spatiotemporal", "spatial", "temporal", "none"])
def test_model_gradients_are_the_same_with_activations_recomputed(scan_order, monkeypatch):
    dropped = []
    exit_scope = Recompute.__exit__

    def record(self, *exc):
        dropped.append(self.dropped_bytes)
        return exit_scope(self, *exc)

    monkeypatch.setattr(recompute_module.Recompute, "__exit__", record)
    torch.manual_seed(0)
    model = videomamba.create_model("videomamba_nano", embed_dim=32, depth=2, num_frames=4, img_size=32,
                                    scan_order=scan_order).double().train()
    video = torch.randn(2, 3, 4, 32, 32, dtype=torch.float64)
    grads = []
    for setting in (False, True):
        model.recompute_activations = setting
        model.zero_grad()
        dropped.clear()
        model(video).square().sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
        assert len(dropped) == 2 and (sum(dropped) > 0) == setting  # one scope per block
    for a, b in zip(*grads):
        assert torch.equal(a, b)


@pytest.mark.gpu
def test_model_on_the_gpu_recomputes_the_mixers_large_activations(monkeypatch):
    """bf16 autocast on the GPU path (Triton conv and scan): the same gradients bit for bit, and the in_proj
    halves, both conv outputs, both Δ and the gated output (7 x B x L x d_inner bf16 elements a block) not
    stored; the peak of the forward lower."""
    dropped = []
    exit_scope = Recompute.__exit__
    monkeypatch.setattr(recompute_module.Recompute, "__exit__",
                        lambda self, *exc: (dropped.append(self.dropped_bytes), exit_scope(self, *exc))[1])
    torch.manual_seed(0)
    model = videomamba.create_model("videomamba_tiny", depth=2, num_frames=8, num_classes=10).cuda().train()
    video = torch.randn(2, 3, 8, 224, 224, device="cuda")
    grads, peaks = [], []
    for setting in (False, True):
        model.recompute_activations = setting
        model.zero_grad(set_to_none=True)
        dropped.clear()
        torch.cuda.reset_peak_memory_stats()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(video).float().square().sum()
        peaks.append(torch.cuda.max_memory_allocated())
        loss.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    tokens = 1 + 4 * 14 * 14
    d_inner = 2 * model.cfg.embed_dim
    assert dropped == [7 * 2 * tokens * d_inner * 2] * 2  # x, z, two conv outputs, two Δ, the gated output
    for a, b in zip(*grads):
        assert torch.equal(a, b)


GATE_AGAIN = """
import sys, torch
from videomamba.ops.triton.gate import gate_forward, gate_output
device = sys.argv[1]
torch.manual_seed(0)
for dtype in (torch.bfloat16, torch.float32):
    y = torch.randn(2 * 3, 70, 37, device=device).to(dtype).transpose(1, 2)  # (directions x b, d, L), channels last
    z = torch.randn(3, 70, 37, device=device).to(dtype).transpose(1, 2)
    out, total = gate_forward(y, z)
    again = gate_output(total, z)
    assert again.stride() == out.stride() and torch.equal(again, out), dtype
    exact = (y[:3].double() + y[3:].double()).to(dtype).double() * torch.nn.functional.silu(z.double())
    # two bf16 roundings (the sum, then out); the interpreter rounds toward zero, so up to 2 ** -7 each
    torch.testing.assert_close(out.double(), exact, rtol=2e-2 if dtype == torch.bfloat16 else 1e-6, atol=1e-5)
"""


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_gate_output_again_is_the_forwards_bit_for_bit(device):
    """The recompute of a paired scan's gated output from the stored sum (Triton interpreter on the CPU)."""
    from tests.ops.triton_subprocess import assert_check_passes

    assert_check_passes(GATE_AGAIN, device, interpret=device == "cpu", timeout=300)
