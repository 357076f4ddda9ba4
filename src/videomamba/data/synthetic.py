"""The built-in dataset: moving digits, where frame order decides the label.

What it tests. Each clip shows a handwritten digit (scikit-learn's bundled 8x8 digits, upscaled)
on a textured background doing one of ten actions that come in time-reversed pairs:

    0 move right   1 move left     2 move down     3 move up     4 zoom in
    5 zoom out     6 rotate clockwise  7 rotate counter-clockwise  8 fade in   9 fade out

Action 2k+1 is action 2k played backwards, so no single frame gives the label away: the first
frame of "move right" looks like the last frame of "move left". A model must read the order of
the frames, which is what SSV2 asks and what the paper's frame-shuffle test probes. Distractors
keep it honest: a second object (a square or a disc) drifts in a random direction, every frame
gets pixel noise, and each clip has its own speed, start time and motion extent. The second label
set on the same videos, *which digit*, stands for appearance-centric data like Kinetics: a single
frame suffices, and shuffling the frames should barely matter.

Layout under ``root`` (all written atomically, deterministic from the seed):
    videos/{train,val}/{index:05d}.mp4   the clips (H.264, or MPEG-4 part 2 if x264 is missing)
    masks/{train,val}/{index:05d}.npy    the digit's mask per frame, np.packbits of (T, H, W) bool
    motion/{train,val}.txt + classes.txt   list files, paths relative to root (10 motion labels)
    digit/{train,val}.txt + classes.txt    the same videos with the digit as label
    meta.json                              generator settings, seed and version
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

GENERATOR_VERSION = 1
MOTION_CLASSES = ["move right", "move left", "move down", "move up", "zoom in", "zoom out",
                  "rotate clockwise", "rotate counter-clockwise", "fade in", "fade out"]
DIGIT_CLASSES = [str(i) for i in range(10)]


def paired_action(action: int) -> int:
    """The action that is ``action`` played backwards."""
    return action ^ 1


@dataclass
class SyntheticConfig:
    """Size and difficulty of the built-in dataset."""

    train_size: int = 1600
    val_size: int = 400
    frames: int = 16
    size: int = 64
    seed: int = 0
    digit_size: tuple[float, float] = (0.34, 0.44)  # of the frame side
    travel: tuple[float, float] = (0.30, 0.45)  # translation extent, of the frame side
    zoom: tuple[float, float] = (0.55, 1.45)  # scale at the start and end of a zoom
    rotation: tuple[float, float] = (100.0, 200.0)  # degrees turned
    noise: float = 5.0  # std of per-pixel noise, in 0..255 units
    texture: float = 28.0  # amplitude of the background texture
    distractor: bool = True
    fps: int = 12


@dataclass
class ClipParams:
    """Everything random about one clip, drawn from its own generator."""

    action: int
    digit: int
    digit_image: int
    progress: np.ndarray  # (T,) in [0, 1]
    center: tuple[float, float]
    size: float
    extent: float
    color: tuple[float, float, float]
    background: np.ndarray  # (3, 4, 4) coarse texture
    fine: np.ndarray  # (3, 16, 16) fine texture
    distractor_start: tuple[float, float]
    distractor_velocity: tuple[float, float]
    distractor_size: float
    distractor_color: tuple[float, float, float]
    distractor_disc: bool
    noise_seed: int


_DIGITS: tuple[np.ndarray, np.ndarray] | None = None


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits (images in [0, 1], labels), loaded from disk, no download."""
    global _DIGITS
    if _DIGITS is None:
        from sklearn.datasets import load_digits

        data = load_digits()
        _DIGITS = (data.images.astype(np.float32) / 16.0, data.target.astype(np.int64))
    return _DIGITS


def draw_params(cfg: SyntheticConfig, split: str, index: int) -> ClipParams:
    """The random parameters of clip ``index`` of ``split``; deterministic in (seed, split, index)."""
    rng = np.random.default_rng([cfg.seed, 0 if split == "train" else 1, index])
    images, labels = digits()
    action = index % len(MOTION_CLASSES)
    digit_image = int(rng.integers(len(images)))
    T = cfg.frames
    start = rng.uniform(0, T * 0.3)
    duration = rng.uniform(T * 0.45, T - 1 - start)
    progress = np.clip((np.arange(T) - start) / duration, 0.0, 1.0)
    size = rng.uniform(*cfg.digit_size)
    hue = rng.uniform(0.55, 1.0, 3)
    hue[rng.integers(3)] = 1.0
    extent_range = {0: cfg.travel, 1: cfg.travel, 2: cfg.zoom, 3: cfg.rotation, 4: (1.0, 1.0)}[action // 2]
    return ClipParams(
        action=action, digit=int(labels[digit_image]), digit_image=digit_image, progress=progress,
        center=(rng.uniform(-0.15, 0.15), rng.uniform(-0.15, 0.15)), size=size,
        extent=rng.uniform(*extent_range), color=tuple(hue * 255),
        background=rng.uniform(-1, 1, (3, 4, 4)).astype(np.float32),
        fine=rng.uniform(-1, 1, (3, 16, 16)).astype(np.float32),
        distractor_start=tuple(rng.uniform(-0.7, 0.7, 2)), distractor_velocity=tuple(rng.uniform(-0.06, 0.06, 2)),
        distractor_size=rng.uniform(0.10, 0.16), distractor_color=tuple(rng.uniform(0.3, 1.0, 3) * 255),
        distractor_disc=bool(rng.integers(2)), noise_seed=int(rng.integers(2**31)),
    )


def motion_states(action: int, progress: np.ndarray, params: ClipParams, cfg: SyntheticConfig) -> dict[str, np.ndarray]:
    """Per-frame x, y (normalised), scale, angle (degrees) and opacity of the digit.

    Action 2k+1 uses 1 - progress where action 2k uses progress, so reversing a clip in time
    turns one into the other exactly.
    """
    p = progress if action % 2 == 0 else 1.0 - progress
    T = len(p)
    x = np.full(T, params.center[0])
    y = np.full(T, params.center[1])
    scale = np.ones(T)
    angle = np.zeros(T)
    alpha = np.ones(T)
    kind = action // 2
    if kind == 0:  # move right (x grows)
        x = params.center[0] + (p - 0.5) * 2 * params.extent
    elif kind == 1:  # move down (y grows)
        y = params.center[1] + (p - 0.5) * 2 * params.extent
    elif kind == 2:  # zoom in
        small, big = cfg.zoom
        scale = small + (big - small) * p
    elif kind == 3:  # rotate clockwise (image y points down: positive angle turns clockwise)
        angle = params.extent * p
    else:  # fade in
        alpha = p
    return {"x": x, "y": y, "scale": scale, "angle": angle, "alpha": alpha}


def _background(params: ClipParams, cfg: SyntheticConfig) -> torch.Tensor:
    coarse = F.interpolate(torch.from_numpy(params.background)[None], size=cfg.size, mode="bicubic", align_corners=False)
    fine = F.interpolate(torch.from_numpy(params.fine)[None], size=cfg.size, mode="nearest")
    base = 110.0 + cfg.texture * coarse[0] + 0.35 * cfg.texture * fine[0]
    return base  # (3, S, S) float in 0..255 units


def _sprite_alpha(sprite: torch.Tensor, x, y, scale, angle, half_size: float, size: int) -> torch.Tensor:
    """Sample a (1, 1, h, w) sprite placed at (x, y), rotated and scaled, on a size x size canvas."""
    T = len(x)
    radians = torch.as_tensor(np.radians(angle), dtype=torch.float32)
    cos, sin = torch.cos(radians), torch.sin(radians)
    half = torch.as_tensor(half_size * scale, dtype=torch.float32)
    theta = torch.zeros(T, 2, 3)
    # canvas coordinate u -> sprite coordinate v = R(-angle) (u - c) / half
    theta[:, 0, 0], theta[:, 0, 1] = cos / half, sin / half
    theta[:, 1, 0], theta[:, 1, 1] = -sin / half, cos / half
    cx, cy = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
    theta[:, 0, 2] = -(theta[:, 0, 0] * cx + theta[:, 0, 1] * cy)
    theta[:, 1, 2] = -(theta[:, 1, 0] * cx + theta[:, 1, 1] * cy)
    grid = F.affine_grid(theta, (T, 1, size, size), align_corners=False)
    return F.grid_sample(sprite.expand(T, -1, -1, -1), grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)[:, 0]


def render(params: ClipParams, cfg: SyntheticConfig, action: int | None = None, progress: np.ndarray | None = None,
           distractor: bool | None = None, noise: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """uint8 frames (T, S, S, 3) and the digit's bool mask (T, S, S) of one clip.

    ``action`` and ``progress`` override the drawn ones (the reversal test uses this).
    """
    action = params.action if action is None else action
    progress = params.progress if progress is None else progress
    distractor = cfg.distractor if distractor is None else distractor
    states = motion_states(action, progress, params, cfg)
    images, _ = digits()
    sprite = F.interpolate(torch.from_numpy(images[params.digit_image])[None, None], size=16, mode="bilinear",
                           align_corners=False).clamp(0, 1)
    alpha = _sprite_alpha(sprite, states["x"], states["y"], states["scale"], states["angle"], params.size, cfg.size)
    mask = alpha > 0.35
    opacity = torch.as_tensor(states["alpha"], dtype=torch.float32)[:, None, None] * alpha
    frames = _background(params, cfg)[None].repeat(len(progress), 1, 1, 1)  # (T, 3, S, S)
    if distractor:
        T = len(progress)
        steps = np.arange(T)
        dx = params.distractor_start[0] + params.distractor_velocity[0] * steps
        dy = params.distractor_start[1] + params.distractor_velocity[1] * steps
        shape = torch.ones(1, 1, 16, 16)
        if params.distractor_disc:
            yy, xx = torch.meshgrid(torch.linspace(-1, 1, 16), torch.linspace(-1, 1, 16), indexing="ij")
            shape = ((xx ** 2 + yy ** 2) <= 1.0).float()[None, None]
        d_alpha = _sprite_alpha(shape, dx, dy, np.ones(T), np.zeros(T), params.distractor_size, cfg.size)
        d_color = torch.tensor(params.distractor_color)[None, :, None, None]
        frames = frames * (1 - d_alpha[:, None]) + d_color * d_alpha[:, None]
    color = torch.tensor(params.color, dtype=torch.float32)[None, :, None, None]
    frames = frames * (1 - opacity[:, None]) + color * opacity[:, None]
    if noise and cfg.noise > 0:
        generator = torch.Generator().manual_seed(params.noise_seed)
        frames = frames + cfg.noise * torch.randn(frames.shape, generator=generator)
    frames = frames.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return frames, mask.numpy()


def _render_clip(args: tuple[SyntheticConfig, str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    cfg, split, index = args
    torch.set_num_threads(1)
    params = draw_params(cfg, split, index)
    frames, mask = render(params, cfg)
    opacity = motion_states(params.action, params.progress, params, cfg)["alpha"]
    return frames, mask, opacity.astype(np.float32), params.action, params.digit


def render_split(cfg: SyntheticConfig, split: str, workers: int | None = None,
                 progress: bool = False) -> dict[str, np.ndarray]:
    """One split of the built-in dataset rendered in memory, no files and no video codec.

    Returns 'frames' uint8 (N, T, S, S, 3), 'masks' bool (N, T, S, S), 'opacity' float32 (N, T) (the
    digit's; below 1 only in fades), 'motion' and 'digit' int64 (N,):
    the same clips ``generate`` writes (before compression), for runs that keep the data on the GPU.
    """
    count = cfg.train_size if split == "train" else cfg.val_size
    jobs = [(cfg, split, i) for i in range(count)]
    workers = workers or min(8, os.cpu_count() or 1)
    from tqdm import tqdm

    with ProcessPoolExecutor(max_workers=workers) if workers > 1 else _Serial() as pool:
        rows = list(tqdm(pool.map(_render_clip, jobs, chunksize=16), total=count,
                         desc=f"rendering {split} clips", disable=not progress))
    return {"frames": np.stack([r[0] for r in rows]), "masks": np.stack([r[1] for r in rows]),
            "opacity": np.stack([r[2] for r in rows]),
            "motion": np.array([r[3] for r in rows], dtype=np.int64),
            "digit": np.array([r[4] for r in rows], dtype=np.int64)}


def _encoder() -> str:
    import av

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def _write_clip(args: tuple[SyntheticConfig, str, int, str]) -> tuple[int, int, int]:
    from .video_io import write_video

    cfg, split, index, root = args
    torch.set_num_threads(1)
    params = draw_params(cfg, split, index)
    frames, mask = render(params, cfg)
    root = Path(root)
    write_video(root / "videos" / split / f"{index:05d}.mp4", frames, fps=cfg.fps, codec=_encoder(), crf=14)
    mask_path = root / "masks" / split / f"{index:05d}.npy"
    tmp = mask_path.with_name(mask_path.stem + ".tmp.npy")
    np.save(tmp, np.packbits(mask.reshape(-1)))
    os.replace(tmp, mask_path)
    return index, params.action, params.digit


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def load_mask(root: str | Path, video_path: str | Path) -> np.ndarray:
    """The bool mask (T, S, S) stored for a generated video (by its path under root); T and S come
    from the dataset's meta.json."""
    video_path = Path(video_path)
    meta = json.loads((Path(root) / "meta.json").read_text())["config"]
    frames, size = meta["frames"], meta["size"]
    mask_path = Path(root) / "masks" / video_path.parent.name / (video_path.stem + ".npy")
    if not mask_path.is_file():
        raise FileNotFoundError(f"{mask_path}: no mask for {video_path} (is it a video of this generated dataset?)")
    bits = np.load(mask_path)
    return np.unpackbits(bits)[: frames * size * size].reshape(frames, size, size).astype(bool)


def is_complete(root: str | Path, cfg: SyntheticConfig) -> bool:
    """Whether ``root`` holds a finished dataset generated with exactly ``cfg``."""
    meta = Path(root) / "meta.json"
    if not meta.is_file():
        return False
    stored = json.loads(meta.read_text())
    return stored.get("config") == json.loads(json.dumps(asdict(cfg))) and stored.get("version") == GENERATOR_VERSION


def generate(root: str | Path, cfg: SyntheticConfig | None = None, workers: int | None = None,
             progress: bool = True) -> Path:
    """Write the built-in dataset to ``root`` (skipped if an identical one is already there)."""
    cfg = cfg or SyntheticConfig()
    root = Path(root)
    if is_complete(root, cfg):
        return root
    jobs = []
    for split, count in (("train", cfg.train_size), ("val", cfg.val_size)):
        (root / "videos" / split).mkdir(parents=True, exist_ok=True)
        (root / "masks" / split).mkdir(parents=True, exist_ok=True)
        jobs += [(cfg, split, i, str(root)) for i in range(count)]
    workers = workers or min(4, os.cpu_count() or 1)
    results: dict[str, list] = {"train": [None] * cfg.train_size, "val": [None] * cfg.val_size}
    from tqdm import tqdm

    with ProcessPoolExecutor(max_workers=workers) if workers > 1 else _Serial() as pool:
        iterator = pool.map(_write_clip, jobs, chunksize=16)
        for (cfg_, split, _, _), (index, action, digit) in tqdm(zip(jobs, iterator), total=len(jobs),
                                                               desc="generating clips", disable=not progress):
            results[split][index] = (action, digit)
    for task, classes, column in (("motion", MOTION_CLASSES, 0), ("digit", DIGIT_CLASSES, 1)):
        (root / task).mkdir(exist_ok=True)
        _write_text(root / task / "classes.txt", "\n".join(classes) + "\n")
        for split, rows in results.items():
            lines = [f"videos/{split}/{i:05d}.mp4 {row[column]}" for i, row in enumerate(rows)]
            _write_text(root / task / f"{split}.txt", "\n".join(lines) + "\n")
    _write_text(root / "meta.json", json.dumps({"version": GENERATOR_VERSION, "config": asdict(cfg),
                                                "motion_classes": MOTION_CLASSES, "encoder": _encoder()}, indent=2))
    return root


class _Serial:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, fn, items, chunksize=1):
        return map(fn, items)
