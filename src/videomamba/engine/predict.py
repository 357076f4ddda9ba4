"""Classify videos with a trained model: ``predict(paths, checkpoint)`` and ``videomamba predict``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..data.datasets import ClipSampling
from ..data.transforms import ClipTransform
from ..data.video_io import VideoReadError, num_frames, read_frames
from ..models import VideoMamba, VideoMambaConfig
from ..models.convert import read_state_dict


def load_model(checkpoint: str | Path, device: str | torch.device = "cpu") -> VideoMamba:
    """A model from our weights: model.safetensors (config in its metadata) or a training checkpoint."""
    import json

    state, metadata = read_state_dict(checkpoint)
    if "config" not in metadata:
        raise ValueError(f"{checkpoint}: holds no model config; pass a videomamba model.safetensors or last.pt")
    model = VideoMamba(VideoMambaConfig.from_dict(json.loads(metadata["config"])))
    model.load_state_dict(state)
    return model.to(device).eval()


@dataclass
class Prediction:
    """One video's result: the ``top`` (class name, probability) pairs, or the ``error`` that kept it
    from being classified (it names the file and the cause)."""

    path: str
    top: list[tuple[str, float]] | None = None
    error: VideoReadError | None = None


@torch.no_grad()
def predict_files(paths: list[str | Path], checkpoint: str | Path | VideoMamba, topk: int = 5, clips: int = 1,
                  crops: int = 1, stride: int | None = None, device: str = "cpu") -> Iterator[Prediction]:
    """For each video, a ``Prediction``: the ``topk`` (class name, probability) pairs, softmax averaged
    over ``clips`` temporal clips x ``crops`` spatial crops; or, for a file that cannot be read, the
    reason, and the next file is classified all the same."""
    model = checkpoint if isinstance(checkpoint, VideoMamba) else load_model(checkpoint, device)
    cfg = model.cfg
    names = cfg.class_names or [f"class_{i}" for i in range(cfg.num_classes)]
    sampling = ClipSampling(clip_len=cfg.num_frames, stride=stride or 2, test_clips=clips)
    transform = ClipTransform(cfg.img_size, train=False, test_crops=crops)
    for path in paths:
        try:
            indices = sampling.indices(num_frames(path), train=False, rng=np.random.default_rng(0))
            frames = read_frames(path, indices.reshape(-1))
        except VideoReadError as err:
            yield Prediction(str(path), error=err)
            continue
        except OSError as err:
            yield Prediction(str(path), error=VideoReadError(path, err.strerror or str(err)))
            continue
        views, _ = transform(frames.view(indices.shape[0], indices.shape[1], *frames.shape[1:]), None)
        probs = model(views.to(next(model.parameters()).device)).float().softmax(-1).mean(0)
        top = probs.topk(min(topk, len(names)))
        yield Prediction(str(path), [(names[i], float(p)) for p, i in zip(top.values.tolist(), top.indices.tolist())])


def predict(paths: list[str | Path], checkpoint: str | Path | VideoMamba, topk: int = 5, clips: int = 1,
            crops: int = 1, stride: int | None = None, device: str = "cpu") -> list[list[tuple[str, float]]]:
    """For each video, the ``topk`` (class name, probability) pairs (see ``predict_files``); a file that
    cannot be read raises ``VideoReadError``."""
    results = []
    for prediction in predict_files(paths, checkpoint, topk, clips, crops, stride, device):
        if prediction.error is not None:
            raise prediction.error
        results.append(prediction.top)
    return results
