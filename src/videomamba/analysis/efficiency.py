"""Cost of a VideoMamba against a ViT-S of the same width: parameters, FLOPs, memory, throughput.

Two FLOP figures. *Paper-comparable* counts what the paper's counter saw: in_proj and out_proj
over all layers plus the tokenizer (34.2 G at 16 frames, 68.5 G at 32 for VideoMamba-S; the paper
reports 34 and 68). *Full* counts everything: the per-direction conv1d, x_proj, dt_proj, the head
and the scan at 9·B·L·D·N per direction (the formula Mamba's authors use, mixing adds and
multiplies). Units are G multiply-accumulates (MACs), which is what fvcore and the paper call
GFLOPs; ``torch.utils.flop_counter`` counts 2 FLOPs per MAC, so its totals are halved here.

``count_macs`` is the hand count from the config; ``measure_macs`` runs the model under
``FlopCounterMode`` (the scan is a custom op with a registered formula) and splits the total by
module. The two agree exactly (tested).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..models.videomamba import VideoMambaConfig
from ..ops.selective_scan import SCAN_FLOPS_PER_ELEMENT


def count_macs(cfg: VideoMambaConfig, num_frames: int | None = None, img_size: int | None = None,
               batch: int = 1) -> dict[str, float]:
    """Multiply-accumulates of one forward pass, split by part, counted by hand from the config."""
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
        # the causal conv is computed with d_conv - 1 padding on both sides, then cut to L
        "conv1d": cfg.depth * directions * (tokens + cfg.d_conv - 1) * di * cfg.d_conv,
        "x_proj": cfg.depth * directions * tokens * di * (rank + 2 * n),
        "dt_proj": cfg.depth * directions * tokens * rank * di,
        "scan": cfg.depth * directions * tokens * di * n * SCAN_FLOPS_PER_ELEMENT,
        "head": d * cfg.num_classes,
    }
    parts = {k: v * batch for k, v in parts.items()}
    parts["paper_comparable"] = parts["tokenizer"] + parts["in_proj"] + parts["out_proj"]
    parts["full"] = sum(v for k, v in parts.items() if k != "paper_comparable")
    return parts


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def measure_macs(model: nn.Module, video: torch.Tensor) -> dict[str, float]:
    """MACs of ``model(video)`` by torch's FLOP counter: total, and for a VideoMamba the
    paper-comparable part (modules named in_proj, out_proj and the tokenizer)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(video)
    counts = counter.get_flop_counts()
    total = counter.get_total_flops() / 2
    paper = sum(sum(ops.values()) for name, ops in counts.items()
                if name.endswith((".in_proj", ".out_proj", "patch_embed.proj"))) / 2
    ops = counts.get("Global", {})
    scan = sum(v for k, v in ops.items() if "selective_scan" in str(k)) / 2
    attention_seen = any("attention" in str(k) or "bmm" in str(k) for k in ops)
    return {"full": total, "paper_comparable": paper, "scan": scan, "attention_seen": attention_seen}


class ViTBaseline(nn.Module):
    """VideoMAE-S as an efficiency baseline: 2x16x16 tubelets, width 384, depth 12, 6 heads, MLP 4x,
    pre-norm LayerNorm, fixed sine-cosine positions, mean pooling; attention through
    ``scaled_dot_product_attention`` (FlashAttention on a GPU)."""

    def __init__(self, num_classes: int = 400, embed_dim: int = 384, depth: int = 12, heads: int = 6,
                 tubelet: tuple[int, int, int] = (2, 16, 16)):
        super().__init__()
        self.heads = heads
        self.patch_embed = nn.Conv3d(3, embed_dim, tubelet, stride=tubelet)
        self.blocks = nn.ModuleList(_ViTBlock(embed_dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        from ..models.pos_embed import sinusoidal_table

        x = self.patch_embed(video).flatten(2).transpose(1, 2)
        x = x + sinusoidal_table(x.shape[1], x.shape[2]).to(x)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x.mean(1)))


class _ViTBlock(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        x = x + self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


def vit_attention_macs(tokens: int, dim: int = 384, depth: int = 12) -> int:
    """QK^T and AV multiply-accumulates, which FlopCounterMode may not see on every SDPA kernel."""
    return depth * 2 * tokens * tokens * dim


def projected_crossover(frame_counts: list[int], mamba_ms: list[float], attention_ms: list[float]) -> float | None:
    """The frame count from which the Mamba model's time falls below the attention model's, projected
    from measurements: a line through the Mamba times (its cost is linear in the tokens) and a
    parabola through the attention times (quadratic), least squares; the smallest positive frame
    count where the two meet with attention ahead before it. None if they do not meet ahead, or the
    Mamba model is already faster at the fewest frames measured. A projection, not a measurement: it
    assumes the fitted shapes hold beyond the measured range."""
    import numpy as np

    frames = np.asarray(frame_counts, dtype=float)
    if len(frames) < 3:
        raise ValueError("projected_crossover needs at least 3 frame counts (a parabola has 3 parameters)")
    if mamba_ms[0] <= attention_ms[0]:
        return None
    line = np.polyfit(frames, np.asarray(mamba_ms, dtype=float), 1)
    parabola = np.polyfit(frames, np.asarray(attention_ms, dtype=float), 2)
    roots = np.roots(parabola - np.r_[0.0, line])
    ahead = sorted(r.real for r in roots if abs(r.imag) < 1e-9 and r.real > frames[0])
    return float(ahead[0]) if ahead else None


@dataclass
class Measurement:
    model: str
    frames: int
    params_m: float
    gmacs_paper: float | None
    gmacs_full: float
    peak_mem_gib: float | None
    clips_per_s: float | None


def _throughput(model, video, repeats: int, device: torch.device, amp, min_seconds: float = 1.0) -> float:
    """Clips/s over at least ``repeats`` calls and ``min_seconds`` (after two warm-up calls)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.no_grad(), amp:
        model(video)
        model(video)
        sync()
        calls, start = 0, time.perf_counter()
        while calls < repeats or time.perf_counter() - start < min_seconds:
            model(video)
            calls += 1
            sync()
    return calls * video.shape[0] / (time.perf_counter() - start)


def efficiency_table(frames: list[int], img_size: int, batch: int, device: torch.device,
                     videomamba_name: str = "videomamba_small", repeats: int = 3,
                     timed: bool = True) -> list[Measurement]:
    """Parameters, MACs (counted at batch 1), peak memory and inference throughput for each frame
    count, for VideoMamba and the ViT-S baseline of the same width."""
    from ..models import create_model

    rows = []
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    for count in frames:
        mamba = create_model(videomamba_name, num_frames=count, img_size=img_size).to(device).eval()
        width = mamba.cfg.embed_dim
        vit = ViTBaseline(embed_dim=width, heads=max(1, width // 64)).to(device).eval()
        one = torch.randn(1, 3, count, img_size, img_size, device=device)
        video = torch.randn(batch, 3, count, img_size, img_size, device=device)
        for name, model in ((videomamba_name, mamba), ("vit_s_videomae", vit)):
            macs = measure_macs(model, one)
            if name == "vit_s_videomae" and not macs["attention_seen"]:  # SDPA's CPU kernel is not counted
                macs["full"] += vit_attention_macs(count // 2 * (img_size // 16) ** 2, width)
            peak, rate = None, None
            if timed:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(device)
                try:
                    rate = _throughput(model, video, repeats, device, amp, 1.0 if device.type == "cuda" else 0.0)
                except torch.OutOfMemoryError:  # recorded as a missing point, not a crash
                    rate = None
                    torch.cuda.empty_cache()
                if device.type == "cuda" and rate is not None:
                    peak = torch.cuda.max_memory_allocated(device) / 2**30
            rows.append(Measurement(name, count, count_parameters(model) / 1e6,
                                    macs["paper_comparable"] / 1e9 if name != "vit_s_videomae" else None,
                                    macs["full"] / 1e9, peak, rate))
        del mamba, vit
    return rows


def write_efficiency_report(rows: list[Measurement], folder, note: str = "") -> None:
    """efficiency.md, efficiency.csv and a log-log plot efficiency.png."""
    import csv
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    lines = [note, "", "| model | frames | params (M) | GFLOPs paper-comparable | GFLOPs full | peak memory (GiB) | clips/s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.model} | {r.frames} | {r.params_m:.2f} | {fmt(r.gmacs_paper, '.2f')} | {r.gmacs_full:.2f} | "
                     f"{fmt(r.peak_mem_gib, '.2f')} | {fmt(r.clips_per_s, '.2f')} |")
    (folder / "efficiency.md").write_text("\n".join(lines) + "\n")
    with open(folder / "efficiency.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model", "frames", "params_m", "gmacs_paper", "gmacs_full", "peak_mem_gib", "clips_per_s"])
        for r in rows:
            writer.writerow([r.model, r.frames, r.params_m, r.gmacs_paper, r.gmacs_full, r.peak_mem_gib, r.clips_per_s])
    panels = [("gmacs_full", "GFLOPs (full)"), ("clips_per_s", "inference clips/s"), ("peak_mem_gib", "peak memory (GiB)")]
    panels = [p for p in panels if any(getattr(r, p[0]) is not None for r in rows)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    axes = [axes] if len(panels) == 1 else axes
    for ax, (key, label) in zip(axes, panels):
        for name in dict.fromkeys(r.model for r in rows):
            pts = [(r.frames, getattr(r, key)) for r in rows if r.model == name and getattr(r, key) is not None]
            if pts:
                ax.loglog(*zip(*pts), "o-", label=name, base=2)
        ax.set_xlabel("frames")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "efficiency.png", dpi=110)
    plt.close(fig)
