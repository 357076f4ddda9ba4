"""Cost of a VideoMamba: parameters and multiply-accumulates, counted from the config.

Two figures. *Paper-comparable* counts what the paper's counter saw: in_proj and out_proj over all
layers plus the tokenizer (34.2 G at 16 frames, 68.5 G at 32 for VideoMamba-S; the paper reports 34
and 68). *Full* counts everything: the per-direction conv1d, x_proj, dt_proj, the head, and the scan
at 9·L·D·N per direction (the formula Mamba's authors use in their FLOP counter, mixing adds and
multiplies). Units are G multiply-accumulates, which is what fvcore and the paper call GFLOPs.
"""

from __future__ import annotations

import math

from ..models.videomamba import VideoMamba, VideoMambaConfig

SCAN_FLOPS_PER_ELEMENT = 9  # per (token, channel, state) and direction, as mamba_ssm's flop counter


def count_macs(cfg: VideoMambaConfig, num_frames: int | None = None, img_size: int | None = None,
               batch: int = 1) -> dict[str, float]:
    """Multiply-accumulates of one forward pass, split by part, for the given input size."""
    frames = num_frames or cfg.num_frames
    size = img_size or cfg.img_size
    t, h, w = cfg.tubelet
    patches = (frames // t) * (size // h) * (size // w)
    tokens = patches + (1 if cfg.cls_token else 0)
    d, di, n = cfg.embed_dim, cfg.expand * cfg.embed_dim, cfg.d_state
    rank = cfg.dt_rank or math.ceil(d / 16)
    directions = 1 if cfg.scan_order == "none" else 2
    parts = {
        "tokenizer": patches * cfg.in_chans * t * h * w * d,
        "in_proj": cfg.depth * tokens * d * 2 * di,
        "out_proj": cfg.depth * tokens * di * d,
        "conv1d": cfg.depth * directions * tokens * di * cfg.d_conv,
        "x_proj": cfg.depth * directions * tokens * di * (rank + 2 * n),
        "dt_proj": cfg.depth * directions * tokens * rank * di,
        "scan": cfg.depth * directions * tokens * di * n * SCAN_FLOPS_PER_ELEMENT,
        "head": d * cfg.num_classes,
    }
    parts = {k: v * batch for k, v in parts.items()}
    parts["paper_comparable"] = parts["tokenizer"] + parts["in_proj"] + parts["out_proj"]
    parts["full"] = sum(v for k, v in parts.items() if k != "paper_comparable")
    return parts


def count_parameters(model: VideoMamba) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
