"""AdamW parameter groups and the learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn


def layer_id(name: str, depth: int) -> int:
    """0 for the embeddings, i + 1 for block i, depth + 1 for the final norm and head."""
    if name.startswith(("patch_embed", "cls_token", "pos_embed")):
        return 0
    if name.startswith("layers."):
        return int(name.split(".")[1]) + 1
    return depth + 1


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float = 1.0) -> list[dict]:
    """AdamW groups: no weight decay on norms, biases, 1-D parameters (A_log, D), the class token
    and the positional table; with ``layer_decay`` < 1, lr scale decay**(depth + 1 - layer)."""
    depth = len(getattr(model, "layers", []))
    skip = set(getattr(model, "no_weight_decay", lambda: set())())
    groups: dict[tuple, dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.ndim <= 1 or name.endswith(".bias") or name in skip or "A_log" in name
        layer = layer_id(name, depth)
        scale = layer_decay ** (depth + 1 - layer)
        key = (no_decay, layer)
        if key not in groups:
            groups[key] = {"params": [], "weight_decay": 0.0 if no_decay else weight_decay, "lr_scale": scale,
                           "names": []}
        groups[key]["params"].append(param)
        groups[key]["names"].append(name)
    return [{k: v for k, v in g.items() if k != "names"} for g in groups.values()]


class WarmupCosine:
    """Per-step lr: linear from ``warmup_lr`` to ``lr`` over ``warmup_steps``, then cosine to ``min_lr``.

    Holds only plain numbers, so its ``state_dict`` goes into a weights_only checkpoint.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, lr: float, min_lr: float, warmup_lr: float,
                 warmup_steps: int, total_steps: int):
        self.optimizer = optimizer
        self.lr, self.min_lr, self.warmup_lr = lr, min_lr, warmup_lr
        self.warmup_steps, self.total_steps = warmup_steps, max(total_steps, 1)
        self.step_count = 0
        self._apply()

    def value(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.warmup_lr + (self.lr - self.warmup_lr) * step / max(self.warmup_steps, 1)
        progress = (step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1)
        progress = min(progress, 1.0)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * progress))

    def _apply(self) -> None:
        lr = self.value(self.step_count)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def current(self) -> float:
        return self.value(self.step_count)

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "lr": self.lr, "min_lr": self.min_lr, "warmup_lr": self.warmup_lr,
                "warmup_steps": self.warmup_steps, "total_steps": self.total_steps}

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)
        self._apply()


class ModelEma:
    """Exponential moving average of the weights (and buffers), kept in float32 on the model's device."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone().float() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for key, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                self.shadow[key].lerp_(value.float(), 1.0 - self.decay)
            else:
                self.shadow[key].copy_(value)

    def state_dict(self) -> dict:
        return dict(self.shadow)

    def load_state_dict(self, state: dict) -> None:
        self.shadow = {k: v.clone() for k, v in state.items()}
