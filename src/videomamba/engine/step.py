"""The training step both training loops run: forward under autocast, soft-target loss, backward,
then gradient clipping, the optimizer, the schedule and the EMA, in that order.

``engine.train`` (files, DDP, checkpoints) and ``engine.tensor_train`` (clips held on the device, for
the ablation studies) both go through ``TrainStep``, so that a change of recipe reaches both.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; training stopped and the last good checkpoint stays."""


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a ``precision`` setting ('auto', 'bf16', 'fp32') on ``device``:
    bf16 on a GPU (or when asked), None (float32, no autocast) on the CPU by default."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -sum(targets * log_softmax(logits)); logits (B, K), targets (B, K)."""
    return -(targets * F.log_softmax(logits.float(), dim=-1)).sum(-1).mean()


class TrainStep:
    """One optimizer step of the recipe, split where gradient accumulation needs it.

    ``forward_backward`` runs a micro-batch and adds its gradients (its loss divided by the number of
    micro-batches accumulated into the step); ``update`` clips the gradient norm to ``clip_grad`` (if
    set), steps the optimizer, clears the gradients, steps the schedule and updates the EMA (if given).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, clip_grad: float | None = None,
                 ema=None, amp_dtype: torch.dtype | None = None):
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.clip_grad, self.ema, self.amp_dtype = clip_grad, ema, amp_dtype

    def forward_backward(self, call: Callable[[torch.Tensor], torch.Tensor], video: torch.Tensor,
                         targets: torch.Tensor, accumulation: int = 1,
                         sync: AbstractContextManager | None = None) -> torch.Tensor:
        """Loss of ``call(video)`` (the model, or its DDP / compiled wrapper) against soft ``targets``
        (B, K), backpropagated; returns the micro-batch's loss, detached. ``sync``: DDP's ``no_sync()``
        for micro-batches whose gradients must not be all-reduced yet."""
        amp = (torch.autocast(video.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None
               else nullcontext())
        with sync or nullcontext():
            with amp:
                logits = call(video)
            loss = soft_cross_entropy(logits, targets)
            (loss / accumulation).backward()
        return loss.detach()

    def update(self) -> None:
        """Clip, step the optimizer, clear the gradients, step the schedule, update the EMA."""
        if self.clip_grad:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)

    def discard(self) -> None:
        """Drop the accumulated gradients without stepping (a diverged step)."""
        self.optimizer.zero_grad(set_to_none=True)
