"""``selective_scan``: one function, several backends chosen by device, dtype and size.

Backends:
  ``reference``  a loop over time differentiated by autograd (the definition; slow)
  ``chunked``    the two-level chunked scan in PyTorch (CPU and GPU; exact; custom backward)
  ``cpu``        the compiled C kernel (CPU; built at first use; custom backward)
  ``triton``     Triton kernels (CUDA; fp32 state; chunk checkpoints, states recomputed backwards)
Set ``backend=`` or the environment variable ``VIDEOMAMBA_SCAN_BACKEND`` to force one.

``selective_scan_pair`` runs both directions of a bidirectional mixer: on the Triton backend in one
launch of each kernel (``videomamba::selective_scan_pair``), elsewhere as two scans.

The fast backends run behind one ``torch.library.custom_op`` pair (``videomamba::selective_scan``
and its backward), with fake implementations and a FLOP formula, so that ``torch.compile`` traces a
model without graph breaks and ``torch.utils.flop_counter.FlopCounterMode`` counts the scan. In plain
eager mode the same bodies run through a ``torch.autograd.Function`` (``ops.eager``), without the
custom-op dispatcher's host cost.
"""

from __future__ import annotations

import os
from typing import Callable, NamedTuple, Optional

import torch
from torch.utils.flop_counter import register_flop_formula

from . import cpu_kernel
from . import triton as triton_ops
from .chunked import chunked_backward, chunked_forward
from .eager import custom_op_needed, distinct_outputs, eager_function
from .recompute import Recompute
from .reference import selective_scan_reference
from .token_order import MODES, REVERSE, ScanOrder, gather_steps


def _flip(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None or t.dim() < 3 else t.flip(-1)


def _reorder(order: ScanOrder, length: int, device) -> tuple[Callable, Callable]:
    """Two functions: one puts (..., L) tensors in the order's step order, the other puts them back."""
    if order.mode == "forward":
        return (lambda t: t), (lambda t: t)
    if order.mode == "reverse":
        return _flip, _flip
    positions = order.positions(length, device)
    inverse = torch.argsort(positions)
    return (lambda t: gather_steps(t, positions)), (lambda t: gather_steps(t, inverse))


def _order(mode: int, frame_tokens: int, prefix: int) -> ScanOrder:
    return ScanOrder(MODES[mode], frame_tokens, prefix)


def _nothing_saved(forward: Callable) -> Callable:
    """A backend whose backward needs nothing from its forward beyond the inputs; a scan in another
    order runs on reordered copies (the Triton kernels address the positions instead)."""

    def run(u, delta, A, B, C, D, z, delta_bias, delta_softplus, mode, frame_tokens, prefix):
        steps, back = _reorder(_order(mode, frame_tokens, prefix), u.shape[-1], u.device)
        out, last = forward(steps(u), steps(delta), A, steps(B), steps(C), D, steps(z), delta_bias, delta_softplus)
        return back(out), last, out.new_empty(0)

    return run


def _ignore_saved(backward: Callable) -> Callable:
    def run(saved, dout, dlast, u, delta, A, B, C, D, z, delta_bias, delta_softplus, mode, frame_tokens, prefix):
        steps, back = _reorder(_order(mode, frame_tokens, prefix), u.shape[-1], u.device)
        grads = backward(steps(dout), dlast, steps(u), steps(delta), A, steps(B), steps(C), D, steps(z), delta_bias,
                         delta_softplus)
        du, ddelta, dA, dB, dC, dD, dz, dbias = grads
        return back(du), back(ddelta), dA, back(dB), back(dC), dD, back(dz), dbias

    return run


def _triton_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus, mode, frame_tokens, prefix):
    return triton_ops.triton_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                      _order(mode, frame_tokens, prefix))


def _triton_backward(saved, dout, dlast, u, delta, A, B, C, D, z, delta_bias, delta_softplus, mode, frame_tokens,
                     prefix):
    # the state checkpoints the forward stored every CHUNK steps: no second forward pass
    return triton_ops.triton_backward(dout, dlast, u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                       _order(mode, frame_tokens, prefix), ckpt=saved)


# forward: (out, last state, what the backward needs besides the inputs); backward: (saved, ...)
_FORWARD: dict[str, Callable] = {"chunked": _nothing_saved(chunked_forward),
                                 "cpu": _nothing_saved(cpu_kernel.cpu_forward), "triton": _triton_forward}
_BACKWARD: dict[str, Callable] = {"chunked": _ignore_saved(chunked_backward),
                                  "cpu": _ignore_saved(cpu_kernel.cpu_backward), "triton": _triton_backward}
BACKENDS = ("reference", *_FORWARD)
SCAN_FLOPS_PER_ELEMENT = 9  # per (batch, channel, token, state), as mamba_ssm's FLOP counter


def _absent(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if t is None or t.numel() == 0 else t


def _scan_body(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
               D: Optional[torch.Tensor], z: Optional[torch.Tensor], delta_bias: Optional[torch.Tensor],
               delta_softplus: bool, mode: int, frame_tokens: int, prefix: int,
               backend: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _FORWARD[backend](u, delta, A, B, C, D, z, delta_bias, delta_softplus, mode, frame_tokens, prefix)


_scan_op = torch.library.custom_op("videomamba::selective_scan", _scan_body, mutates_args=())


@_scan_op.register_fake
def _scan_fake(u, delta, A, B, C, D, z, delta_bias, delta_softplus, mode, frame_tokens, prefix, backend):
    batch, channels, length = u.shape
    n = A.shape[1]
    if backend == "triton":
        saved = u.new_empty(triton_ops.checkpoint_shape(batch, channels, n, length), dtype=torch.float32)
        return (triton_ops.empty_like_layout(u, u.dtype), triton_ops.empty_state(batch, channels, n, u.device),
                saved)
    return torch.empty_like(u), u.new_empty(batch, channels, n), u.new_empty(0)


def _scan_backward_body(saved: torch.Tensor, dout: torch.Tensor, dlast: torch.Tensor, u: torch.Tensor,
                        delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                        D: Optional[torch.Tensor], z: Optional[torch.Tensor], delta_bias: Optional[torch.Tensor],
                        delta_softplus: bool, mode: int, frame_tokens: int, prefix: int,
                        backend: str) -> list[torch.Tensor]:
    grads = _BACKWARD[backend](saved, dout, dlast, u, delta, A, B, C, D, z, delta_bias, delta_softplus, mode,
                               frame_tokens, prefix)
    return [g if g is not None else u.new_empty(0) for g in grads]  # empty = input absent


_scan_backward_op = torch.library.custom_op("videomamba::selective_scan_backward",
                                            distinct_outputs(_scan_backward_body), mutates_args=())


@_scan_backward_op.register_fake
def _scan_backward_fake(saved, dout, dlast, u, delta, A, B, C, D, z, delta_bias, delta_softplus, mode, frame_tokens,
                        prefix, backend):
    like = lambda t: torch.empty_like(t) if t is not None else u.new_empty(0)  # noqa: E731
    if backend == "triton":  # gradients of u, delta, z in u's memory order and their own dtypes; the rest fp32
        f32 = lambda t: torch.empty(t.shape, device=t.device, dtype=torch.float32) if t is not None else u.new_empty(0)  # noqa: E731
        sums = lambda t: triton_ops.empty_state_sums(t.shape[0], t.shape[1], t.shape[2], t.device)  # noqa: E731
        return [triton_ops.empty_like_layout(u, u.dtype), triton_ops.empty_like_layout(u, delta.dtype), f32(A),
                sums(B), sums(C), f32(D),
                triton_ops.empty_like_layout(u, z.dtype) if z is not None else u.new_empty(0), f32(delta_bias)]
    return [torch.empty_like(u), torch.empty_like(delta), torch.empty_like(A), torch.empty_like(B),
            torch.empty_like(C), like(D), like(z), like(delta_bias)]


def _setup_context(ctx, inputs, output):
    u, delta, A, B, C, D, z, delta_bias, delta_softplus, mode, frame_tokens, prefix, backend = inputs
    ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, output[2])
    ctx.mark_non_differentiable(output[2])
    # no zero-filled gradients for the outputs nobody differentiates (the checkpoints: a pass over them)
    ctx.set_materialize_grads(False)
    ctx.delta_softplus, ctx.order, ctx.backend = delta_softplus, (mode, frame_tokens, prefix), backend


def _backward(ctx, dout, dlast, dsaved):
    u, delta, A, B, C, D, z, delta_bias, saved = ctx.saved_tensors
    dout = dout if dout is not None else torch.zeros_like(u)
    if dlast is not None:
        dlast = dlast.contiguous()
    elif ctx.backend == "triton":  # empty: the kernels start the adjoint from zero
        dlast = u.new_empty(0)
    else:
        dlast = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    if ctx.backend != "triton":  # the Triton kernels read any strides
        dout = dout.contiguous()
    run = _scan_backward_op if custom_op_needed() else _scan_backward_body
    grads = run(saved, dout, dlast, u, delta, A, B, C, D, z, delta_bias, ctx.delta_softplus, *ctx.order,
                ctx.backend)
    du, ddelta, dA, dB, dC, dD, dz, dbias = grads
    return du, ddelta, dA, dB, dC, _absent(dD), _absent(dz), _absent(dbias), None, None, None, None, None


_scan_op.register_autograd(_backward, setup_context=_setup_context)
_EagerScan = eager_function("selective_scan", _scan_body, _setup_context, _backward)


@register_flop_formula(torch.ops.videomamba.selective_scan)
def _scan_flops(u_shape, delta_shape, A_shape, *args, out_shape=None, **kwargs) -> int:
    """Mamba's count, 9·B·L·D·N (it mixes adds and multiplies), taken as multiply-accumulates:
    FlopCounterMode counts 2 FLOPs per multiply-accumulate, so the formula returns 2·9·B·L·D·N."""
    batch, channels, length = u_shape
    return 2 * SCAN_FLOPS_PER_ELEMENT * batch * channels * length * A_shape[1]


@register_flop_formula(torch.ops.videomamba.selective_scan_backward)
def _scan_backward_flops(saved_shape, dout_shape, dlast_shape, u_shape, delta_shape, A_shape, *args, out_shape=None,
                         **kwargs) -> int:
    """The backward recomputes the states and runs the adjoint: counted as twice the forward."""
    batch, channels, length = u_shape
    return 2 * 2 * SCAN_FLOPS_PER_ELEMENT * batch * channels * length * A_shape[1]


def _check_shapes(u, delta, A, B, C, D, z, delta_bias) -> None:
    if u.dim() != 3:
        raise ValueError(f"selective_scan: u must be (b, d, L), got shape {tuple(u.shape)}")
    batch, d_inner, length = u.shape
    n = A.shape[-1] if A.dim() == 2 else -1
    expected = {
        "delta": (delta, (batch, d_inner, length)),
        "A": (A, (d_inner, n)),
        "B": (B, (batch, n, length)),
        "C": (C, (batch, n, length)),
        "D": (D, (d_inner,)),
        "z": (z, (batch, d_inner, length)),
        "delta_bias": (delta_bias, (d_inner,)),
    }
    for name, (tensor, shape) in expected.items():
        if tensor is not None and tuple(tensor.shape) != shape:
            raise ValueError(f"selective_scan: {name} must have shape {shape} "
                             f"(u is {tuple(u.shape)}, A is {tuple(A.shape)}), got {tuple(tensor.shape)}")


_EXPORTING = False


class export_mode:
    """Within this context the scan runs as plain PyTorch ops (the chunked scan, forward only), not
    as the custom op, so that ``torch.onnx.export`` and ``torch.export`` see only standard ops."""

    def __enter__(self):
        global _EXPORTING
        self.previous, _EXPORTING = _EXPORTING, True
        return self

    def __exit__(self, *exc):
        global _EXPORTING
        _EXPORTING = self.previous
        return False


def _needs_gradient(*tensors: torch.Tensor | None) -> bool:
    """Whether autograd will differentiate through an op on ``tensors``."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def choose_backend(u: torch.Tensor, A: torch.Tensor | None = None) -> str:
    """The backend ``selective_scan`` runs for this input when none is forced."""
    A = A if A is not None else u.new_empty(1, 16)
    forced = os.environ.get("VIDEOMAMBA_SCAN_BACKEND")
    if forced:
        return forced
    if u.device.type == "cpu" and cpu_kernel.available():
        return "cpu"
    if (u.device.type == "cuda" and triton_ops.available() and u.dtype != torch.float64
            and A.shape[-1] & (A.shape[-1] - 1) == 0):
        return "triton"
    return "chunked"


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    backend: str | None = None,
    reverse: bool = False,
    order: ScanOrder | None = None,
):
    """Mamba-1 selective scan with mamba_ssm's ``selective_scan_fn`` semantics.

    h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t u_t;  y_t = C_t·h_t + D u_t;  out = y * silu(z),
    with Δ = softplus(delta + delta_bias) when ``delta_softplus`` (else delta + delta_bias).

    Shapes: u, delta, z (b, d, L); A (d, n); B, C (b, n, L); D, delta_bias (d,). Returns out
    (b, d, L) in u's dtype, and the last state (b, d, n) in float32 (float64 for float64 inputs)
    when ``return_last_state``. Differentiable in every input. State and accumulation are float32
    at least, whatever the input dtype.

    ``order``: the order in which the scan reads the positions (``ops.ScanOrder``: reversed, or per
    frame for the spatial and temporal reversals); each output is written at the position read,
    so inputs and outputs stay in memory order. The same as permuting every (., ., L) input, scanning
    and permuting the output back, but the Triton kernels compute the positions instead of copying.
    ``reverse=True`` is ``order=ScanOrder("reverse")``: h_t from h_{t+1}, and the last state is the
    state after position 0.
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    if reverse and order is not None and order != REVERSE:
        raise ValueError(f"selective_scan: reverse=True and order={order} disagree")
    order = REVERSE if reverse else (order or ScanOrder())
    name = backend or choose_backend(u, A)
    if name not in BACKENDS:
        raise ValueError(f"selective_scan: unknown backend {name!r}; choose from {BACKENDS}")
    if name == "reference" or _EXPORTING:  # plain PyTorch ops on reordered copies
        steps, back = _reorder(order, u.shape[-1], u.device)
        if name == "reference":
            out, last = selective_scan_reference(steps(u), steps(delta), A, steps(B), steps(C), D=D, z=steps(z),
                                                 delta_bias=delta_bias, delta_softplus=delta_softplus,
                                                 return_last_state=True)
        else:
            compute = torch.float64 if u.dtype == torch.float64 else torch.float32
            prep = lambda t: None if t is None else t.to(compute).contiguous()  # noqa: E731
            out, last = chunked_forward(steps(prep(u)), steps(prep(delta)), prep(A), steps(prep(B)), steps(prep(C)),
                                        prep(D), steps(prep(z)), prep(delta_bias), bool(delta_softplus))
        out = back(out).to(u.dtype)
        return (out, last) if return_last_state else out
    if name == "cpu" and u.device.type != "cpu":
        raise ValueError(f"selective_scan: backend 'cpu' needs CPU tensors, got {u.device}")
    dtype_in = u.dtype
    compute = torch.float64 if u.dtype == torch.float64 else torch.float32
    prep = lambda t: None if t is None else t.to(compute).contiguous()  # noqa: E731
    # the Triton kernels read u, delta, z, B, C in their own dtype and strides: no copies
    seq = (lambda t: t) if name == "triton" else prep
    if name == "triton" and not custom_op_needed() and not _needs_gradient(u, delta, A, B, C, D, z, delta_bias):
        # no backward will run: no checkpoints stored, no autograd node
        out, last, _ = triton_ops.triton_forward(u, delta, prep(A), B, C, prep(D), z, prep(delta_bias),
                                                 bool(delta_softplus), order, checkpoints=False)
        return (out, last) if return_last_state else out
    run = _scan_op if custom_op_needed() else _EagerScan.apply
    out, last, _ = run(seq(u), seq(delta), prep(A), seq(B), seq(C), prep(D), seq(z), prep(delta_bias),
                       bool(delta_softplus), order.code, order.frame_tokens, order.prefix, name)
    out = out.to(dtype_in)
    return (out, last) if return_last_state else out


class ScanInputs(NamedTuple):
    """One direction's inputs to a selective scan (``selective_scan``'s shapes): u, delta (b, d, L);
    A (d, N); B, C (b, N, L); D and delta_bias (d,) or None."""

    u: torch.Tensor
    delta: torch.Tensor
    A: torch.Tensor
    B: torch.Tensor
    C: torch.Tensor
    D: Optional[torch.Tensor] = None
    delta_bias: Optional[torch.Tensor] = None


def _pair_body(u: torch.Tensor, u_bwd: torch.Tensor, delta: torch.Tensor, delta_bwd: torch.Tensor, A: torch.Tensor,
               B: torch.Tensor, B_bwd: torch.Tensor, C: torch.Tensor, C_bwd: torch.Tensor, D: Optional[torch.Tensor],
               z: Optional[torch.Tensor], delta_bias: Optional[torch.Tensor], delta_softplus: bool, mode: int,
               frame_tokens: int, prefix: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(out, checkpoints, the directions' summed ungated output: empty without z), the last two saved."""
    out, _, saved, total = triton_ops.triton_forward_pair(u, u_bwd, delta, delta_bwd, A, B, B_bwd, C, C_bwd, D, z,
                                                           delta_bias, delta_softplus,
                                                           _order(mode, frame_tokens, prefix))
    return out, saved, total


_pair_op = torch.library.custom_op("videomamba::selective_scan_pair", _pair_body, mutates_args=())


@_pair_op.register_fake
def _pair_fake(u, u_bwd, delta, delta_bwd, A, B, B_bwd, C, C_bwd, D, z, delta_bias, delta_softplus, mode, frame_tokens,
               prefix):
    batch, channels, length = u.shape
    saved = u.new_empty(triton_ops.checkpoint_shape(2 * batch, channels, A.shape[-1], length), dtype=torch.float32)
    total = triton_ops.empty_like_layout(u, u.dtype) if z is not None else u.new_empty(0)
    return triton_ops.empty_like_layout(u, u.dtype), saved, total


def _pair_backward_body(saved: torch.Tensor, total: torch.Tensor, dout: torch.Tensor, u: torch.Tensor,
                        u_bwd: torch.Tensor,
                        delta: torch.Tensor, delta_bwd: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                        B_bwd: torch.Tensor, C: torch.Tensor, C_bwd: torch.Tensor, D: Optional[torch.Tensor],
                        z: Optional[torch.Tensor], delta_bias: Optional[torch.Tensor], delta_softplus: bool,
                        mode: int, frame_tokens: int, prefix: int) -> list[torch.Tensor]:
    grads = triton_ops.triton_backward_pair(dout, u, u_bwd, delta, delta_bwd, A, B, B_bwd, C, C_bwd, D, z, delta_bias,
                                             delta_softplus, _order(mode, frame_tokens, prefix), ckpt=saved,
                                             total=total)
    return [g if g is not None else u.new_empty(0) for g in grads]  # empty = input absent


_pair_backward_op = torch.library.custom_op("videomamba::selective_scan_pair_backward",
                                            distinct_outputs(_pair_backward_body), mutates_args=())


@_pair_backward_op.register_fake
def _pair_backward_fake(saved, total, dout, u, u_bwd, delta, delta_bwd, A, B, B_bwd, C, C_bwd, D, z, delta_bias,
                        delta_softplus, mode, frame_tokens, prefix):
    batch = u.shape[0]
    directions = lambda dtype: triton_ops.empty_like_layout(u, dtype, 2 * batch).unflatten(0, (2, batch))  # noqa: E731
    f32 = lambda *shape: u.new_empty(shape, dtype=torch.float32)  # noqa: E731
    absent = u.new_empty(0)
    sums = lambda t: triton_ops.empty_state_sums(2 * batch, t.shape[1], t.shape[2], t.device).unflatten(0, (2, batch))  # noqa: E731
    return [directions(u.dtype), directions(delta.dtype), f32(*A.shape), sums(B), sums(C),
            f32(*D.shape) if D is not None else absent,
            triton_ops.empty_like_layout(u, z.dtype) if z is not None else absent,
            f32(*delta_bias.shape) if delta_bias is not None else absent]


def _pair_setup_context(ctx, inputs, output):
    *tensors, delta_softplus, mode, frame_tokens, prefix = inputs
    ctx.save_for_backward(*tensors, output[1], output[2])
    ctx.mark_non_differentiable(output[1], output[2])
    # no zero-filled gradients for the checkpoints and the saved sum (a pass over each per backward)
    ctx.set_materialize_grads(False)
    ctx.delta_softplus, ctx.order = delta_softplus, (mode, frame_tokens, prefix)


def _pair_backward(ctx, dout, dsaved, dtotal):
    *tensors, saved, total = ctx.saved_tensors
    dout = dout if dout is not None else torch.zeros_like(tensors[0])
    run = _pair_backward_op if custom_op_needed() else _pair_backward_body
    du, ddelta, dA, dB, dC, dD, dz, dbias = run(saved, total, dout, *tensors, ctx.delta_softplus, *ctx.order)
    return (du[0], du[1], ddelta[0], ddelta[1], dA, dB[0], dB[1], dC[0], dC[1], _absent(dD), _absent(dz),
            _absent(dbias), None, None, None, None)


_pair_op.register_autograd(_pair_backward, setup_context=_pair_setup_context)
_EagerPair = eager_function("selective_scan_pair", _pair_body, _pair_setup_context, _pair_backward)


@register_flop_formula(torch.ops.videomamba.selective_scan_pair)
def _pair_flops(u_shape, u_bwd_shape, delta_shape, delta_bwd_shape, A_shape, *args, out_shape=None, **kwargs) -> int:
    """Two scans (``_scan_flops``)."""
    batch, channels, length = u_shape
    return 2 * 2 * SCAN_FLOPS_PER_ELEMENT * batch * channels * length * A_shape[-1]


@register_flop_formula(torch.ops.videomamba.selective_scan_pair_backward)
def _pair_backward_flops(saved_shape, total_shape, dout_shape, u_shape, u_bwd_shape, delta_shape, delta_bwd_shape,
                         A_shape, *args, out_shape=None, **kwargs) -> int:
    """Two scans' backwards (``_scan_backward_flops``)."""
    batch, channels, length = u_shape
    return 2 * 2 * 2 * SCAN_FLOPS_PER_ELEMENT * batch * channels * length * A_shape[-1]


def selective_scan_pair(forward: ScanInputs, backward: ScanInputs, z: torch.Tensor | None = None,
                        order: ScanOrder = REVERSE, delta_softplus: bool = False,
                        backend: str | None = None, recompute: Recompute | None = None) -> torch.Tensor:
    """Both directions of a bidirectional mixer, added:
    ``selective_scan(**forward, z=z) + selective_scan(**backward, z=z, order=order)``.

    ``recompute``: a scope (``ops.recompute``) told how the gated output is made again from what the
    backward keeps anyway (the directions' ungated sum and z), where the kernels run: an op that saves the
    output (the out_proj's matmul) then does not store it.

    Each direction has its own inputs and parameters (``ScanInputs``) and both share the gate z; the
    backward direction reads its (forward-order) tensors in ``order``. On the Triton backend the two
    run in one launch of each kernel, forward and backward (half the launches and host time, and the
    two directions' programs fill the GPU together where one direction's leave it idle); elsewhere,
    or where only one direction has D or delta_bias, as two scans. Differentiable in every input.
    """
    for inputs in (forward, backward):
        _check_shapes(inputs.u, inputs.delta, inputs.A, inputs.B, inputs.C, inputs.D, z, inputs.delta_bias)
    if forward.u.shape != backward.u.shape or forward.A.shape != backward.A.shape:
        raise ValueError(f"selective_scan_pair: the directions' shapes differ: u {tuple(forward.u.shape)} and "
                         f"{tuple(backward.u.shape)}, A {tuple(forward.A.shape)} and {tuple(backward.A.shape)}")
    name = backend or choose_backend(forward.u, forward.A)
    alike = all((getattr(forward, k) is None) == (getattr(backward, k) is None) for k in ("D", "delta_bias"))
    if name != "triton" or _EXPORTING or not alike:
        return (selective_scan(**forward._asdict(), z=z, delta_softplus=delta_softplus, backend=backend)
                + selective_scan(**backward._asdict(), z=z, delta_softplus=delta_softplus, backend=backend,
                                 order=order))
    stack = lambda name: (None if getattr(forward, name) is None  # noqa: E731
                          else torch.stack([getattr(forward, name).float(), getattr(backward, name).float()]))
    # A stacked as (2, N, d) in memory, the kernels' order, and handed over as its (2, d, N) view: the one copy
    # the stack makes, where the kernels' wrappers would transpose it again in the forward and the backward
    A = torch.stack([forward.A.float().t(), backward.A.float().t()]).transpose(1, 2)
    if not custom_op_needed() and not _needs_gradient(*forward, *backward, z):
        # no backward will run: no checkpoints and no summed output stored, no autograd node
        return triton_ops.triton_forward_pair(forward.u, backward.u, forward.delta, backward.delta, A, forward.B.float(),
                                              backward.B.float(), forward.C.float(), backward.C.float(), stack("D"), z,
                                              stack("delta_bias"), bool(delta_softplus), order, for_backward=False)[0]
    run = _pair_op if custom_op_needed() else _EagerPair.apply
    # B and C (N wide) made float32 here, once: the kernels read them so, and the op's backward would
    # otherwise convert the saved bf16 ones again
    out, _, total = run(forward.u, backward.u, forward.delta, backward.delta, A, forward.B.float(),
                        backward.B.float(), forward.C.float(), backward.C.float(), stack("D"), z, stack("delta_bias"),
                        bool(delta_softplus), order.code, order.frame_tokens, order.prefix)
    if recompute is not None and z is not None:
        recompute.made_by(out, triton_ops.gate_output, total, z)
    return out
