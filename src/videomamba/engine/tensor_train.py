"""Training and evaluation on clips held as one uint8 tensor on the device.

For many short runs on a small dataset (the ablation studies on the built-in videos) the file
pipeline costs more than the model: decoding, worker start-up and host-to-device copies per batch.
Here the whole dataset lives on the device as uint8 (N, T_stored, H, W, 3), frames are picked by
index, and the augmentation (random resized crop, horizontal flip with a label map, temporal jitter)
runs batched on the device through one ``affine_grid``/``grid_sample``. The optimiser, schedule and
training step are the main engine's (``engine.optim``, ``engine.step.TrainStep``); what is left out
is what a short in-memory run does not need: checkpoints, DDP, logging files.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..data.frame_order import shuffle_frames
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD, SoftTargets
from .optim import WarmupCosine, param_groups
from .step import TrainingDiverged, TrainStep, autocast_dtype


@dataclass
class TensorClips:
    """A labelled set of clips on one device: uint8 ``frames`` (N, T, H, W, 3), int64 ``labels`` (N,)."""

    frames: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self):
        if self.frames.dtype != torch.uint8 or self.frames.dim() != 5 or self.frames.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 (N, T, H, W, 3), got {self.frames.dtype} {tuple(self.frames.shape)}")
        if self.labels.shape != self.frames.shape[:1]:
            raise ValueError(f"{len(self.labels)} labels for {len(self.frames)} clips")

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> "TensorClips":
        return TensorClips(self.frames.to(device), self.labels.to(device))


@dataclass
class TensorTrainSettings:
    """One run's recipe. ``num_frames`` are taken from the stored T at a stride of T // num_frames
    (the whole clip, evenly), with a random offset inside the stride in training."""

    num_frames: int
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup_lr: float = 1e-5
    warmup_epochs: float = 1.0
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    clip_grad: float | None = 1.0
    scale: tuple[float, float] = (0.8, 1.0)  # area of the random crop, of the frame
    flip_label_map: dict[int, int] | None = None  # None: no flipping; {}: flip, labels unchanged
    precision: str = "auto"  # auto (bf16 on GPU) | bf16 | fp32
    eval_batch_size: int = 256
    seed: int = 0


@dataclass
class RunResult:
    """What one run measured."""

    top1: float
    losses: list[float] = field(default_factory=list)  # mean training loss per epoch
    seconds: float = 0.0
    steps: int = 0


def frame_index(stored: int, num_frames: int, batch: int, device, train: bool, generator=None) -> torch.Tensor:
    """(batch, num_frames) indices into ``stored`` frames: evenly spaced, jittered inside the stride in training."""
    if num_frames > stored or stored % num_frames:
        raise ValueError(f"cannot take {num_frames} frames evenly from clips of {stored} frames")
    stride = stored // num_frames
    base = torch.arange(num_frames, device=device) * stride
    if train and stride > 1:
        offset = torch.randint(0, stride, (batch, 1), device=device, generator=generator)
    else:
        offset = torch.full((batch, 1), (stride - 1) // 2, device=device)
    return base[None] + offset


def take_frames(frames: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """uint8 clips (B, T, H, W, 3) and per-clip frame indices (B, t) -> (B, t, H, W, 3)."""
    return torch.gather(frames, 1, index.view(*index.shape, 1, 1, 1).expand(-1, -1, *frames.shape[2:]))


def to_model_input(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (B, T, H, W, 3) -> normalised float (B, 3, T, H, W)."""
    mean = torch.tensor(IMAGENET_MEAN, device=frames.device).view(1, 3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=frames.device).view(1, 3, 1, 1, 1)
    video = frames.permute(0, 4, 1, 2, 3).float().div_(255)
    return (video - mean) / std


def augment(video: torch.Tensor, labels: torch.Tensor, scale: tuple[float, float],
            flip_label_map: dict[int, int] | None, num_classes: int, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random resized crop (square, area in ``scale``, same for all frames of a clip) resized back to
    the input size, and a horizontal flip with probability 1/2 that maps labels by ``flip_label_map``."""
    B, C, T, H, W = video.shape
    device = video.device
    area = torch.empty(B, device=device).uniform_(scale[0], scale[1], generator=generator)
    side = area.sqrt()  # of the frame side, in normalised units
    cx = (torch.rand(B, device=device, generator=generator) * 2 - 1) * (1 - side)
    cy = (torch.rand(B, device=device, generator=generator) * 2 - 1) * (1 - side)
    sign = torch.ones(B, device=device)
    if flip_label_map is not None:
        flip = torch.rand(B, device=device, generator=generator) < 0.5
        sign = torch.where(flip, -1.0, 1.0)
        if flip_label_map:
            table = torch.arange(num_classes)  # filled on the host: one copy, not a launch per entry
            for src, dst in flip_label_map.items():
                table[src] = dst
            labels = torch.where(flip, table.to(device)[labels], labels)
    theta = torch.zeros(B, 2, 3, device=device)
    theta[:, 0, 0] = side * sign
    theta[:, 1, 1] = side
    theta[:, 0, 2] = cx
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, (B, C * T, H, W), align_corners=False)
    out = F.grid_sample(video.reshape(B, C * T, H, W), grid, mode="bilinear", padding_mode="border",
                        align_corners=False)
    return out.view(B, C, T, H, W), labels


def _amp(precision: str, device: torch.device):
    dtype = autocast_dtype(precision, device)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


@torch.no_grad()
def evaluate_clips(model: nn.Module, clips: TensorClips, num_frames: int, frame_order: str | None = None,
                   shuffle_unit: int = 2, batch_size: int = 256, precision: str = "auto") -> float:
    """Top-1 (%) on ``clips``: evenly spaced frames, full frame, optionally reordered by a shuffle order."""
    model.eval()
    device = clips.frames.device
    correct = 0
    for start in range(0, len(clips), batch_size):
        frames = clips.frames[start:start + batch_size]
        index = frame_index(frames.shape[1], num_frames, len(frames), device, train=False)
        video = to_model_input(take_frames(frames, index))
        if frame_order is not None:
            video = shuffle_frames(video, frame_order, shuffle_unit)
        with _amp(precision, device):
            logits = model(video)
        correct += (logits.argmax(-1) == clips.labels[start:start + batch_size]).sum().item()
    return 100.0 * correct / max(len(clips), 1)


def train_on_tensors(model: nn.Module, train: TensorClips, val: TensorClips | None, settings: TensorTrainSettings,
                     progress=None) -> RunResult:
    """Train ``model`` (already on the clips' device) on ``train``; top-1 on ``val`` at the end.

    ``progress``, if given, is called with (epoch, mean loss) after each epoch. A NaN or infinite loss
    raises ``TrainingDiverged``.
    """
    device = train.frames.device
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    num_classes = model.num_classes
    steps_per_epoch = len(train) // settings.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{len(train)} clips make no full batch of {settings.batch_size}")
    optimizer = torch.optim.AdamW(param_groups(model, settings.weight_decay), lr=settings.lr,
                                  fused=device.type == "cuda")
    scheduler = WarmupCosine(optimizer, settings.lr, settings.min_lr, settings.warmup_lr,
                             round(settings.warmup_epochs * steps_per_epoch), settings.epochs * steps_per_epoch)
    soft_targets = SoftTargets(num_classes, settings.label_smoothing)
    step_fn = TrainStep(model, optimizer, scheduler, settings.clip_grad,
                        amp_dtype=autocast_dtype(settings.precision, device))
    result = RunResult(top1=float("nan"))
    start = time.perf_counter()
    for epoch in range(settings.epochs):
        model.train()
        order = torch.randperm(len(train), device=device, generator=generator)
        total = torch.zeros((), device=device)
        for step in range(steps_per_epoch):
            idx = order[step * settings.batch_size:(step + 1) * settings.batch_size]
            frames = train.frames[idx]
            index = frame_index(frames.shape[1], settings.num_frames, len(idx), device, True, generator)
            frames = take_frames(frames, index)
            video, labels = augment(to_model_input(frames), train.labels[idx], settings.scale,
                                    settings.flip_label_map, num_classes, generator)
            video, targets = soft_targets(video, labels)
            total += step_fn.forward_backward(model, video, targets)
            step_fn.update()
        mean_loss = total.item() / steps_per_epoch
        if not math.isfinite(mean_loss):
            raise TrainingDiverged(f"loss {mean_loss} in epoch {epoch + 1}")
        result.losses.append(mean_loss)
        if progress is not None:
            progress(epoch, mean_loss)
    result.steps = steps_per_epoch * settings.epochs
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    result.seconds = time.perf_counter() - start
    if val is not None:
        result.top1 = evaluate_clips(model, val, settings.num_frames, batch_size=settings.eval_batch_size,
                                     precision=settings.precision)
    return result
