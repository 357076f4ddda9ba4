"""The bidirectional Mamba mixer (Vision Mamba's "bimamba v2" layout).

in_proj and out_proj are shared; each direction has its own conv1d, x_proj, dt_proj, A_log and D.
The mixer reads top to bottom as the equations:
in_proj -> (x, z) -> per direction: conv1d -> SiLU -> x_proj -> (dt, B, C) -> dt_proj -> scan
(with the SiLU(z) gate) -> back to forward order -> combine -> out_proj.
The backward direction reads the forward-order tensors in its own order (``ops.ScanOrder``): the two
directions' convs and scans each run as one call (``sequence_conv_silu_pair``, ``selective_scan_pair``:
one launch of each kernel on the GPU) and nothing is permuted here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import (ScanInputs, ScanOrder, selective_scan, selective_scan_pair, sequence_conv_silu,
                   sequence_conv_silu_pair)
from ..ops.recompute import Recompute


def _at_least_float32(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype == torch.float64 else t.float()


def compute_dtype(t: torch.Tensor) -> torch.dtype:
    """The dtype the mixer computes in for input ``t``: autocast's where it is on, else ``t``'s."""
    device = t.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else t.dtype


def _as_autocast_casts(t: torch.Tensor) -> torch.Tensor:
    """``t`` in the autocast dtype where autocast is on: cast once here, where each of in_proj's two matmuls
    would cast (and save) its own copy."""
    return t.to(compute_dtype(t)) if t.is_floating_point() else t


class ScaledInputLinear(nn.Linear):
    """nn.Linear whose call may scale its input by a constant, applied to the (small) weight instead of
    the (B, L, d) input: out_proj takes the mean of the two directions this way. Parameters, names and
    module (for the FLOP counter's attribution) are nn.Linear's."""

    def forward(self, x: torch.Tensor, input_scale: float = 1.0) -> torch.Tensor:
        weight = self.weight if input_scale == 1.0 else input_scale * self.weight
        return F.linear(x, weight, self.bias)


class HalvesProjection(nn.Linear):
    """A linear layer returning the two halves of its output (x and z of the mixer), each from its half
    of the weight: two matmuls, whose gradients the backward adds, where splitting one (B, L, 2 d)
    product makes it concatenate the halves' gradients, a copy of the whole (5 % of a 64-frame
    training step of VideoMamba-S on an H100). Parameters and their names are nn.Linear's."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights = self.weight.chunk(2, dim=0)
        biases = self.bias.chunk(2) if self.bias is not None else (None, None)
        return F.linear(x, weights[0], biases[0]), F.linear(x, weights[1], biases[1])


class ScanDirection(nn.Module):
    """One direction's parameters and its path from the in_proj output to the gated scan output."""

    def __init__(self, d_inner: int, d_state: int, dt_rank: int, d_conv: int,
                 dt_min: float = 1e-3, dt_max: float = 1e-1, dt_init_floor: float = 1e-4):
        super().__init__()
        self.d_state, self.dt_rank = d_state, dt_rank
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1, bias=True)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner, bias=True)
        # Mamba's init: dt_proj.weight ~ U(+-dt_rank^-0.5) keeps dt_proj(x) at unit scale, and the
        # bias is the inverse softplus of dt drawn log-uniformly in [dt_min, dt_max], so that every
        # channel starts with its own time scale.
        nn.init.uniform_(self.dt_proj.weight, -dt_rank ** -0.5, dt_rank ** -0.5)
        dt = torch.exp(torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.dt_proj.bias._no_reinit = True
        # A = -[1..N] per channel (S4D-real), stored as log so that A stays negative.
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))

    def scan_inputs(self, x: torch.Tensor, recompute: Recompute | None = None) -> ScanInputs:
        """This direction's scan inputs from the in_proj output x (B, d_inner, L), read in forward order:
        the causal conv and SiLU, then ``project``. ``recompute``: the scope whose recipes the conv output
        and Δ become (``BiMambaMixer.forward``)."""
        recompute = recompute or Recompute(enabled=False)
        return self.project(recompute.run(sequence_conv_silu, x, self.conv1d.weight, self.conv1d.bias), recompute)

    def project(self, x: torch.Tensor, recompute: Recompute | None = None) -> ScanInputs:
        """The scan inputs from the conv + SiLU output x: x_proj, dt_proj (its bias goes to the scan, added
        in float32 at least), A and D (float32 at least: float64 models stay float64)."""
        recompute = recompute or Recompute(enabled=False)
        dt, B, C = torch.split(self.x_proj(x.transpose(1, 2)), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = recompute.run(F.linear, dt, self.dt_proj.weight).transpose(1, 2)
        return ScanInputs(x, dt, -torch.exp(_at_least_float32(self.A_log)), B.transpose(1, 2), C.transpose(1, 2),
                          _at_least_float32(self.D), _at_least_float32(self.dt_proj.bias))

    @staticmethod
    def channel_mean_delta(inputs: ScanInputs) -> torch.Tensor:
        """Δ = softplus(dt_proj(x) + bias) averaged over channels: (B, L) in float32, memory order."""
        return F.softplus(_at_least_float32(inputs.delta) + inputs.delta_bias[:, None]).mean(1)


class BiMambaMixer(nn.Module):
    """Forward scan in token order; backward scan in the order given by a ``ScanOrder``.

    ``combine``: 'mean' averages the two directions (Vim, our default), 'sum' adds them (OpenGVLab's
    VideoMamba). Without a backward direction (scan order 'none') only the forward scan runs.
    """

    def __init__(self, dim: int, d_state: int = 16, expand: int = 2, dt_rank: int | None = None,
                 d_conv: int = 4, bidirectional: bool = True, combine: str = "mean"):
        super().__init__()
        if combine not in ("mean", "sum"):
            raise ValueError(f"combine must be 'mean' or 'sum', got {combine!r}")
        self.d_inner = expand * dim
        self.dt_rank = dt_rank or math.ceil(dim / 16)
        self.combine = combine
        self.in_proj = HalvesProjection(dim, 2 * self.d_inner, bias=False)
        self.scan_fwd = ScanDirection(self.d_inner, d_state, self.dt_rank, d_conv)
        self.scan_bwd = ScanDirection(self.d_inner, d_state, self.dt_rank, d_conv) if bidirectional else None
        self.out_proj = ScaledInputLinear(self.d_inner, dim, bias=False)

    def forward(self, hidden: torch.Tensor, backward_order: ScanOrder | None = None, return_delta: bool = False,
                recompute: bool = False):
        """hidden (B, L, dim) -> (B, L, dim); with ``return_delta`` also the channel-mean Δ of each
        direction, (B, L) in forward order (None for a missing direction).

        ``recompute``: make the in_proj outputs (x, z), the conv outputs, Δ and the gated scan output again
        in the backward instead of storing them (``ops.recompute``), as mamba_ssm's checkpoint levels do;
        what is stored is what they are made from (the in_proj input, x_proj's small output, the scan's
        checkpoints and ungated sum). The gradients are the same, bit for bit.

        ``backward_order``: the order in which the backward direction reads the forward-order tensors
        (``ops.ScanOrder``; required when bidirectional). The ops read the positions in that order and
        write each result at the position it read, so nothing here is permuted: on the GPU the kernels
        compute the positions, elsewhere the ops gather and scatter inside.
        """
        if self.scan_bwd is not None and backward_order is None:
            raise ValueError("a bidirectional mixer needs the backward direction's ScanOrder")
        # the scope must close while the recipes' outputs are still referenced: it spans the whole body.
        # x, z: (B, d_inner, L) views of (B, L, d_inner) projections, channels fastest in memory: the GPU
        # kernels (conv, scan) read them as they are and write channels-last results, so x_proj, the
        # scan and out_proj see (B, L, d) rows without transposed copies
        with Recompute(enabled=recompute) as scope:
            x, z = (half.transpose(1, 2) for half in scope.run(self.in_proj, _as_autocast_casts(hidden)))
            if self.scan_bwd is None:
                inputs = [self.scan_fwd.scan_inputs(x, scope)]
                y = selective_scan(**inputs[0]._asdict(), z=z, delta_softplus=True)
            else:
                directions = (self.scan_fwd, self.scan_bwd)
                convolved = scope.run(sequence_conv_silu_pair, x, torch.stack([d.conv1d.weight for d in directions]),
                                      torch.stack([d.conv1d.bias for d in directions]), backward_order)
                inputs = [d.project(u, scope) for d, u in zip(directions, convolved)]
                y = selective_scan_pair(*inputs, z, backward_order, delta_softplus=True, recompute=scope)
            # the mean's 1/2 goes on out_proj's weight: no (B, L, d_inner) multiply forward or backward
            mean = self.scan_bwd is not None and self.combine == "mean"
            out = self.out_proj(y.transpose(1, 2), input_scale=0.5 if mean else 1.0)
        if not return_delta:
            return out
        deltas = [ScanDirection.channel_mean_delta(i) for i in inputs]
        return out, deltas + [None] * (2 - len(deltas))
