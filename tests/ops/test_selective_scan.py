"""Every scan backend against an independent float64 recurrence, output and every gradient."""

import contextlib
import zlib

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from videomamba.ops import selective_scan
from videomamba.ops import cpu_kernel

BACKENDS = ["reference", "chunked"] + (["cpu"] if cpu_kernel.available() else [])


def numpy_scan(u, delta, A, B, C, D, z, bias, softplus):
    """Float64 NumPy recurrence written from the equations, independent of the package."""
    u, delta, A, B, C = (np.asarray(x, dtype=np.float64) for x in (u, delta, A, B, C))
    dt = delta + (0 if bias is None else np.asarray(bias, np.float64)[:, None])
    if softplus:
        dt = np.log1p(np.exp(dt))
    b, d, L = u.shape
    h = np.zeros((b, d, A.shape[1]))
    y = np.zeros((b, d, L))
    for t in range(L):
        h = np.exp(dt[:, :, t, None] * A[None]) * h + (dt[:, :, t] * u[:, :, t])[:, :, None] * B[:, None, :, t]
        y[:, :, t] = (h * C[:, None, :, t]).sum(-1)
    if D is not None:
        y = y + u * np.asarray(D, np.float64)[:, None]
    if z is not None:
        z = np.asarray(z, np.float64)
        y = y * z / (1 + np.exp(-z))
    return y, h


def make_inputs(b, d, L, n, dtype, seed, with_optional=True):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    inputs = {
        "u": r(b, d, L), "delta": 0.5 * r(b, d, L), "A": -(torch.rand(d, n, generator=g, dtype=torch.float64) * 2 + 0.05),
        "B": r(b, n, L), "C": r(b, n, L),
        "D": r(d) if with_optional else None, "z": r(b, d, L) if with_optional else None,
        "delta_bias": 0.3 * r(d) if with_optional else None,
    }
    return {k: (v.to(dtype).requires_grad_() if v is not None else None) for k, v in inputs.items()}


def opcheck_failures(op, args, label: str) -> list[str]:
    """``torch.library.opcheck`` of a custom op (schema, fake implementation, autograd registration) as a
    list of failure messages, empty when it passes: the kernel checks collect failures and report them
    together."""
    try:
        torch.library.opcheck(op, args, test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))
    except Exception as err:
        return [f"opcheck {label}: {str(err)[:300]}"]
    return []


def placed(v, device, dtype, layout):
    """A scan input as the kernel checks hand it over: on ``device``, the (., ., L) tensors in ``dtype`` and,
    with layout "bld", stored (b, L, channels) with the same values; the parameters in float32. A leaf
    that records its gradient (None stays None)."""
    if v is None:
        return None
    v = v.detach().to(device)
    if v.dim() == 3:
        v = v.to(dtype)
        if layout == "bld":
            v = v.transpose(1, 2).contiguous().transpose(1, 2)
    else:
        v = v.float()
    return v.requires_grad_()


def float64_truth(inputs, softplus):
    """Output, last state and every gradient by autograd through a float64 torch copy of numpy_scan."""
    x = {k: (v.detach().double().requires_grad_() if v is not None else None) for k, v in inputs.items()}
    dt = x["delta"] + (0 if x["delta_bias"] is None else x["delta_bias"][:, None])
    dt = torch.nn.functional.softplus(dt) if softplus else dt
    h = torch.zeros(x["u"].shape[0], x["u"].shape[1], x["A"].shape[1], dtype=torch.float64)
    ys = []
    for t in range(x["u"].shape[-1]):
        h = torch.exp(dt[:, :, t, None] * x["A"]) * h + (dt[:, :, t] * x["u"][:, :, t])[:, :, None] * x["B"][:, None, :, t]
        ys.append((h * x["C"][:, None, :, t]).sum(-1))
    y = torch.stack(ys, -1)
    if x["D"] is not None:
        y = y + x["u"] * x["D"][:, None]
    if x["z"] is not None:
        y = y * torch.nn.functional.silu(x["z"])
    return x, y, h


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(2, 3, 1, 16), (2, 4, 37, 16), (1, 5, 64, 1), (3, 2, 129, 4)])
@pytest.mark.parametrize("softplus,optional", [(True, True), (False, False)])
def test_backend_matches_float64(backend, dtype, shape, softplus, optional):
    b, d, L, n = shape
    seed = zlib.crc32(repr((backend, str(dtype), shape, softplus)).encode()) % 10_000  # stable across runs
    inputs = make_inputs(b, d, L, n, dtype, seed, optional)
    truth_inputs, y_true, h_true = float64_truth(inputs, softplus)
    ny, nh = numpy_scan(*(None if v is None else v.detach().numpy() for v in inputs.values()), softplus)
    np.testing.assert_allclose(y_true.detach().numpy(), ny, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(h_true.detach().numpy(), nh, rtol=1e-10, atol=1e-10)

    y, last = selective_scan(**inputs, delta_softplus=softplus, return_last_state=True, backend=backend)
    assert y.dtype == dtype and y.shape == (b, d, L) and last.shape == (b, d, n)
    g = torch.Generator().manual_seed(seed + 1)
    w_out = torch.randn(b, d, L, generator=g, dtype=torch.float64)
    w_last = torch.randn(b, d, n, generator=g, dtype=torch.float64)
    ((y.double() * w_out).sum() + (last.double() * w_last).sum()).backward()
    ((y_true * w_out).sum() + (h_true * w_last).sum()).backward()

    tol = dict(rtol=1e-9, atol=1e-9) if dtype == torch.float64 else dict(rtol=2e-4, atol=2e-4)
    # float32 error grows with the magnitude of the states (without softplus, negative Δ makes
    # exp(ΔA) > 1), so compare relative to the largest value, as for the gradients below
    for got, expected in ((y, y_true), (last, h_true)):
        scale = expected.detach().abs().max().clamp(min=1.0)
        torch.testing.assert_close(got.double() / scale, expected.detach() / scale, **tol)
    for name, tensor in inputs.items():
        if tensor is None:
            continue
        assert tensor.grad is not None, f"no gradient for {name}"
        expected = truth_inputs[name].grad
        scale = expected.abs().max().clamp(min=1.0)
        torch.testing.assert_close(tensor.grad.double() / scale, expected / scale, **tol, msg=lambda m: f"d{name}: {m}")


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "reference"])
def test_gradcheck(backend):
    inputs = make_inputs(1, 2, 7, 3, torch.float64, seed=3)
    names = list(inputs)

    def fn(*tensors):
        kwargs = dict(zip(names, tensors))
        return selective_scan(**kwargs, delta_softplus=True, return_last_state=True, backend=backend)

    assert torch.autograd.gradcheck(fn, tuple(inputs.values()), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bfloat16_inputs_accumulate_in_float32(backend):
    inputs = make_inputs(2, 4, 50, 16, torch.bfloat16, seed=5)
    y = selective_scan(**inputs, delta_softplus=True, backend=backend)
    assert y.dtype == torch.bfloat16
    _, y_true, _ = float64_truth(inputs, True)
    torch.testing.assert_close(y.double(), y_true.detach(), rtol=2e-2, atol=2e-2)
    y.float().sum().backward()
    assert inputs["u"].grad.dtype == torch.bfloat16 and torch.isfinite(inputs["u"].grad.float()).all()


def test_default_backend_on_cpu_is_compiled_kernel_or_chunked():
    from videomamba.ops import choose_backend

    assert choose_backend(torch.zeros(1, 1, 1)) == ("cpu" if cpu_kernel.available() else "chunked")


def test_shape_errors_name_the_argument():
    inputs = make_inputs(2, 4, 10, 3, torch.float32, seed=0)
    inputs["B"] = torch.randn(2, 3, 11)
    with pytest.raises(ValueError, match="B must have shape"):
        selective_scan(**inputs)
    with pytest.raises(ValueError, match="unknown backend"):
        selective_scan(**make_inputs(1, 1, 2, 1, torch.float32, 0), backend="nope")


def test_model_compiles_without_graph_breaks_and_matches_eager():
    """The custom op's fake kernels and autograd registration let torch.compile trace a whole model
    (forward and backward) in one graph; aot_eager checks the tracing without generating code."""
    import videomamba

    torch.manual_seed(0)
    model = videomamba.create_model("videomamba_nano", embed_dim=32, depth=2, num_frames=4, img_size=32)
    video = torch.randn(2, 3, 4, 32, 32)
    eager = model(video)
    eager.sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    out = compiled(video)
    out.sum().backward()
    torch.testing.assert_close(out, eager, atol=1e-5, rtol=1e-5)
    for got, want in zip((p.grad for p in model.parameters()), grads):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


SEQUENCE_INPUTS = ("u", "delta", "B", "C", "z")  # the (., ., L) tensors a reversed scan reads backwards


def reversed_truth(inputs, softplus):
    """float64 truth of a reversed scan: the forward recurrence on flipped copies, flipped back.
    Returns (leaf tensors whose .grad are in the original order after the flip back, y, last)."""
    flipped = {k: (v.detach().flip(-1) if (v is not None and k in SEQUENCE_INPUTS) else v) for k, v in inputs.items()}
    leaves, y, h = float64_truth(flipped, softplus)
    return leaves, y.flip(-1), h


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(2, 3, 1, 16), (2, 4, 37, 16), (1, 3, 70, 4)])
def test_reversed_scan_equals_the_scan_of_flipped_inputs(backend, shape):
    b, d, L, n = shape
    inputs = make_inputs(b, d, L, n, torch.float64, seed=L + n)
    leaves, y_true, h_true = reversed_truth(inputs, True)
    y, last = selective_scan(**inputs, delta_softplus=True, return_last_state=True, backend=backend, reverse=True)
    g = torch.Generator().manual_seed(7)
    w_out, w_last = torch.randn(b, d, L, generator=g, dtype=torch.float64), torch.randn(b, d, n, generator=g,
                                                                                            dtype=torch.float64)
    ((y * w_out).sum() + (last * w_last).sum()).backward()
    ((y_true * w_out).sum() + (h_true * w_last).sum()).backward()
    torch.testing.assert_close(y, y_true.detach(), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(last, h_true.detach(), rtol=1e-9, atol=1e-9)
    for name, tensor in inputs.items():
        if tensor is None:
            continue
        expected = leaves[name].grad.flip(-1) if name in SEQUENCE_INPUTS else leaves[name].grad
        torch.testing.assert_close(tensor.grad, expected, rtol=1e-9, atol=1e-9, msg=lambda m: f"d{name}: {m}")
    if L > 1:  # and it is not the forward scan
        assert not torch.allclose(y, selective_scan(**inputs, delta_softplus=True, backend=backend))


class _PassThroughMode(TorchDispatchMode):
    """A torch-dispatch mode that changes nothing: under it the ops must go through the dispatcher."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("backend", BACKENDS[1:])
def test_eager_path_and_custom_op_agree(backend):
    """Plain eager calls run the custom op's body through an autograd.Function (no dispatcher cost);
    under a dispatch mode (FlopCounterMode, fake tensors) and torch.compile the op itself runs. Both
    give the same outputs and gradients."""
    from videomamba.ops import ScanOrder
    from videomamba.ops.eager import custom_op_needed

    inputs = make_inputs(2, 8, 21, 4, torch.float64, seed=11)
    weights = torch.randn(2, 8, 21, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    results = []
    for mode in (contextlib.nullcontext(), _PassThroughMode()):
        x = {k: (v.detach().clone().requires_grad_() if v is not None else None) for k, v in inputs.items()}
        with mode:
            results.append(custom_op_needed())
            y, last = selective_scan(**x, delta_softplus=True, return_last_state=True, backend=backend,
                                     order=ScanOrder("temporal", 5, 1))
            ((y * weights).sum() + last.sum()).backward()
        results.append([y.detach(), last.detach()] + [v.grad for v in x.values() if v is not None])
    eager_needed, eager, op_needed, op = results
    assert not eager_needed and op_needed
    for a, b in zip(eager, op):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
