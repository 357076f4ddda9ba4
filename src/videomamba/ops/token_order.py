"""The order in which a scan (and the conv before it) reads the positions of a sequence.

A scan in order π reads positions π(0), π(1), ..., π(L-1) and writes each output at the position it
read, so its inputs and outputs stay in memory (forward) order and no permuted copy is needed. The
Triton kernels compute π(step) by arithmetic; the PyTorch backends gather with ``positions``.

Modes, for a sequence of ``prefix`` leading tokens (the class token) and then frames of
``frame_tokens`` tokens each (the VideoMamba backward scan orders):
  forward   π(s) = s
  reverse   π(s) = L - 1 - s (the whole sequence reversed: the spatio-temporal reversal)
  spatial   each frame's tokens reversed, frames in order, the prefix read last
  temporal  frames reversed, each frame intact, the prefix read last
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MODES = ("forward", "reverse", "spatial", "temporal")


@dataclass(frozen=True)
class ScanOrder:
    """An order of the positions of a sequence (see the module docstring)."""

    mode: str = "forward"
    frame_tokens: int = 0
    prefix: int = 0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown scan order mode {self.mode!r}; choose from {MODES}")
        if self.mode in ("spatial", "temporal") and self.frame_tokens < 1:
            raise ValueError(f"scan order {self.mode!r} needs frame_tokens >= 1, got {self.frame_tokens}")

    @property
    def code(self) -> int:
        """The mode as the kernels' constexpr: 0 forward, 1 reverse, 2 spatial, 3 temporal."""
        return MODES.index(self.mode)

    def positions(self, length: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """π as a LongTensor: the memory position read at each step."""
        steps = torch.arange(length, device=device)
        if self.mode == "forward":
            return steps
        if self.mode == "reverse":
            return steps.flip(0)
        frames, rest = divmod(length - self.prefix, self.frame_tokens)
        if rest or frames < 1:
            raise ValueError(f"a sequence of {length} positions is not {self.prefix} prefix tokens and whole frames "
                             f"of {self.frame_tokens} tokens")
        grid = torch.arange(frames * self.frame_tokens, device=device).view(frames, self.frame_tokens)
        grid = grid.flip(1) if self.mode == "spatial" else grid.flip(0)
        patches = grid.reshape(-1) + self.prefix
        return torch.cat([patches, torch.arange(self.prefix, device=device)])


FORWARD = ScanOrder()
REVERSE = ScanOrder("reverse")


def gather_steps(t: torch.Tensor | None, positions: torch.Tensor) -> torch.Tensor | None:
    """(..., L) in step order: t[..., positions] (None and tensors without a sequence axis pass)."""
    return t if t is None or t.dim() < 3 else t.index_select(-1, positions)
