"""ONNX export of the pure-PyTorch path, checked with onnxruntime against PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..ops import export_mode
from .videomamba import VideoMamba


def export_onnx(model: VideoMamba, path: str | Path, batch: int = 1, opset: int = 18) -> Path:
    """Write ``model`` as ONNX for input (batch, C, T, H, W) at its configured shape.

    The scan is exported as the chunked PyTorch scan (standard ops; its loops unrolled for this
    shape), so no custom operator is needed at inference time.
    """
    cfg = model.cfg
    model = model.eval()
    example = torch.randn(batch, cfg.in_chans, cfg.num_frames, cfg.img_size, cfg.img_size)
    path = Path(path)
    with export_mode(), torch.no_grad():
        program = torch.onnx.export(model, (example,), dynamo=True, opset_version=opset,
                                    input_names=["video"], output_names=["logits"], verbose=False)
    program.save(str(path))
    return path


def check_onnx(model: VideoMamba, path: str | Path, clips: int = 3, batch: int = 1, seed: int = 0) -> float:
    """Largest |PyTorch - onnxruntime| over ``clips`` random clips (raises ImportError without onnxruntime)."""
    import onnxruntime

    cfg = model.cfg
    runtime = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    for _ in range(clips):
        video = torch.randn(batch, cfg.in_chans, cfg.num_frames, cfg.img_size, cfg.img_size, generator=generator)
        with torch.no_grad():
            expected = model.eval()(video).numpy()
        (got,) = runtime.run(["logits"], {"video": video.numpy()})
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst
