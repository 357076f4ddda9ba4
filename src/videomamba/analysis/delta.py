"""Δ maps: where each layer's selection step is large, shown on the frames.

Δ = softplus(dt_proj(x) + bias), per direction, (B, d_inner, L). A Δ map is its mean over channels,
mapped back to forward order (the model does this while it records), the class token dropped,
reshaped to (n_t, n_h, n_w) and spread over the s_t frames x s_h x s_w pixels of each tubelet.
Large Δ: the state forgets and takes the current token in; small Δ: the token is let through
unread. The paper's reading: high everywhere in shallow layers, concentrated on moving regions in
deep ones. With the built-in dataset's masks this becomes a number: the share of Δ mass that
falls inside the moving digit, per layer, against the digit's share of the area.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..models import VideoMamba

DIRECTIONS = ("forward", "backward", "mean")


@dataclass
class DeltaMaps:
    """maps[direction]: (layers, n_t, n_h, n_w) float tensor for one clip; grid and tubelet."""

    maps: dict[str, torch.Tensor]
    grid: tuple[int, int, int]
    tubelet: tuple[int, int, int]

    def pixels(self, direction: str = "mean") -> torch.Tensor:
        """(layers, T, H, W): each token's Δ spread over its tubelet's frames and pixels."""
        st, sh, sw = self.tubelet
        volume = self.maps[direction]
        return volume.repeat_interleave(st, 1).repeat_interleave(sh, 2).repeat_interleave(sw, 3)


@torch.no_grad()
def compute_delta_maps(model: VideoMamba, video: torch.Tensor) -> DeltaMaps:
    """Δ maps of one clip (C, T, H, W) or (1, C, T, H, W), from one forward pass."""
    if video.dim() == 4:
        video = video[None]
    model.eval()
    _, internals = model.forward_with_internals(video, record=("delta",))
    grid, prefix = internals.grid, internals.prefix
    forward, backward = [], []
    for fwd, bwd in internals.deltas:
        forward.append(fwd[0, prefix:].reshape(grid))
        backward.append((bwd if bwd is not None else fwd)[0, prefix:].reshape(grid))
    maps = {"forward": torch.stack(forward).float().cpu(), "backward": torch.stack(backward).float().cpu()}
    maps["mean"] = 0.5 * (maps["forward"] + maps["backward"])
    return DeltaMaps(maps, grid, model.cfg.tubelet)


def layer_summary(maps: DeltaMaps, direction: str = "mean", mask: np.ndarray | None = None) -> list[dict]:
    """Per layer: mean Δ, the share of Δ mass on the top 10 % of tokens, and with a (T, H, W) bool
    ``mask`` the share of Δ mass inside it next to the mask's share of the area."""
    rows = []
    tokens = maps.maps[direction].flatten(1)
    pixels = maps.pixels(direction) if mask is not None else None
    for layer, values in enumerate(tokens):
        top = max(1, int(round(0.1 * values.numel())))
        row = {"layer": layer, "mean_delta": float(values.mean()),
               "top10_share": float(values.topk(top).values.sum() / values.sum())}
        if mask is not None:
            region = torch.from_numpy(mask[: pixels.shape[1], : pixels.shape[2], : pixels.shape[3]])
            plane = pixels[layer]
            row["mask_share"] = float(plane[region].sum() / plane.sum())
            row["mask_area"] = float(region.float().mean())
        rows.append(row)
    return rows


def _overlay(frame: np.ndarray, heat: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    import matplotlib

    colors = matplotlib.colormaps["inferno"]((heat - vmin) / max(vmax - vmin, 1e-12))[..., :3]
    return (0.45 * frame / 255.0 + 0.55 * colors).clip(0, 1)


def save_grid(maps: DeltaMaps, frames: torch.Tensor, path: str | Path, layers: list[int] | None = None,
              direction: str = "mean") -> Path:
    """PNG grid, rows = layers, columns = frames: Δ (per-layer colour scale) over the frames.

    ``frames``: uint8 (T, C, H, W) as read from the video (the model's input before normalising).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pixels = maps.pixels(direction)
    layers = list(range(pixels.shape[0])) if layers is None else layers
    T = min(pixels.shape[1], frames.shape[0])
    images = frames.permute(0, 2, 3, 1).numpy()
    fig, axes = plt.subplots(len(layers), T, figsize=(1.1 * T + 0.6, 1.1 * len(layers) + 0.4), squeeze=False)
    for row, layer in enumerate(layers):
        heat = pixels[layer].numpy()
        for t in range(T):
            ax = axes[row, t]
            ax.imshow(_overlay(images[t], heat[t], heat.min(), heat.max()))
            ax.set_xticks([])
            ax.set_yticks([])
            if t == 0:
                ax.set_ylabel(f"layer {layer}", fontsize=7)
            if row == 0:
                ax.set_title(f"t={t}", fontsize=7)
    fig.suptitle(f"Δ ({direction} direction{'s' if direction == 'mean' else ''})", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def save_animation(maps: DeltaMaps, frames: torch.Tensor, path: str | Path, layers: list[int],
                   direction: str = "mean", fps: int = 6) -> Path:
    """Animated GIF: the clip, with the Δ of each chosen layer side by side."""
    from PIL import Image

    pixels = maps.pixels(direction)
    images = frames.permute(0, 2, 3, 1).numpy()
    T = min(pixels.shape[1], frames.shape[0])
    scales = {layer: (float(pixels[layer].min()), float(pixels[layer].max())) for layer in layers}
    gif_frames = []
    for t in range(T):
        panels = [images[t] / 255.0] + [_overlay(images[t], pixels[layer, t].numpy(), *scales[layer]) for layer in layers]
        row = (np.concatenate(panels, axis=1) * 255).astype(np.uint8)
        gif_frames.append(Image.fromarray(row).resize((row.shape[1] * 2, row.shape[0] * 2), Image.NEAREST))
    path = Path(path)
    gif_frames[0].save(path, save_all=True, append_images=gif_frames[1:], duration=int(1000 / fps), loop=0)
    return path


def write_summary(rows_by_direction: dict[str, list[dict]], path: str | Path) -> Path:
    """Markdown table: one row per layer, mean Δ and top-10 % share per direction (+ mask share)."""
    directions = list(rows_by_direction)
    has_mask = "mask_share" in rows_by_direction[directions[0]][0]
    header = ["layer"] + [f"mean Δ ({d})" for d in directions] + [f"top-10% share ({d})" for d in directions]
    if has_mask:
        header += [f"Δ mass in object ({d})" for d in directions] + ["object area"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i in range(len(rows_by_direction[directions[0]])):
        cells = [str(i)]
        cells += [f"{rows_by_direction[d][i]['mean_delta']:.4f}" for d in directions]
        cells += [f"{rows_by_direction[d][i]['top10_share']:.3f}" for d in directions]
        if has_mask:
            cells += [f"{rows_by_direction[d][i]['mask_share']:.3f}" for d in directions]
            cells.append(f"{rows_by_direction[directions[0]][i]['mask_area']:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    path = Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path


def load_clip(path: str | Path, model: VideoMamba, stride: int = 1) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(uint8 frames (T, C, S, S) as shown, normalised model input (C, T, S, S), frame indices) of
    the centre clip: the model's frame count at ``stride``, short side resized to its size, centre
    crop."""
    from torchvision import tv_tensors
    from torchvision.transforms.v2 import functional as TF

    from ..data.sampling import dense_indices
    from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from ..data.video_io import num_frames, read_frames

    cfg = model.cfg
    indices = dense_indices(num_frames(path), cfg.num_frames, stride, train=False)[0]
    frames = tv_tensors.Video(read_frames(path, indices))
    frames = TF.center_crop(TF.resize(frames, cfg.img_size, antialias=True), [cfg.img_size, cfg.img_size])
    shown = frames.as_subclass(torch.Tensor)
    normalised = TF.normalize(TF.to_dtype(shown, torch.float32, scale=True), IMAGENET_MEAN, IMAGENET_STD)
    return shown, normalised.permute(1, 0, 2, 3), indices


def mask_for_clip(root: str | Path, path: str | Path, indices: np.ndarray, size: int) -> np.ndarray:
    """The built-in dataset's object mask at the clip's frames, resized (nearest) and centre-cropped
    as ``load_clip`` does with the frames: (T, size, size) bool."""
    from torchvision.transforms.v2 import functional as TF

    from ..data.synthetic import load_mask

    mask = torch.from_numpy(load_mask(root, path)[indices]).float()[:, None]
    mask = TF.center_crop(TF.resize(mask, size, interpolation=TF.InterpolationMode.NEAREST), [size, size])
    return mask[:, 0].numpy() > 0.5


def object_mass_by_layer(model: VideoMamba, root: str | Path, split: str = "val", videos: int = 50,
                         progress: bool = True) -> dict:
    """On the built-in dataset: per layer and direction, the mean share of Δ mass inside the moving
    digit over ``videos`` clips, and the digit's mean share of the area (what a flat Δ would give)."""
    from tqdm import tqdm

    root = Path(root)
    paths = sorted((root / "videos" / split).glob("*.mp4"))[:videos]
    if not paths:
        raise FileNotFoundError(f"{root}/videos/{split}: no generated videos (run `videomamba data generate`)")
    shares = {d: [] for d in DIRECTIONS}
    areas = []
    for path in tqdm(paths, desc="Δ over videos", disable=not progress):
        shown, video, indices = load_clip(path, model)
        maps = compute_delta_maps(model, video)
        mask = mask_for_clip(root, path, indices, shown.shape[-1])
        for direction in DIRECTIONS:
            rows = layer_summary(maps, direction, mask)
            shares[direction].append([r["mask_share"] for r in rows])
        areas.append(rows[0]["mask_area"])
    return {"videos": len(paths), "object_area": float(np.mean(areas)),
            **{d: np.mean(shares[d], axis=0).tolist() for d in DIRECTIONS}}


def plot_object_mass(result: dict, path: str | Path) -> Path:
    """Line plot: share of Δ mass inside the object per layer, with the object's area share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for direction in DIRECTIONS:
        ax.plot(range(len(result[direction])), result[direction], "o-", label=direction)
    ax.axhline(result["object_area"], color="gray", ls="--", label="object's share of the area")
    ax.set_xlabel("layer")
    ax.set_ylabel("share of Δ mass inside the object")
    ax.set_title(f"{result['videos']} clips of the built-in dataset")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
