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

The harder setting (``actions="two_phase"``, what the ablation studies use) asks for temporal
structure instead of one motion: the digit performs two of the first eight actions one after the
other, of different kinds ("move right, then zoom in" against "zoom in, then move right"), 48
classes; its time reversal is again a class ("zoom out, then move left"). More distractors
(``distractors``) drift through the frame, so "something moves right" does not say which object did.

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
ACTION_SETS = ("single", "two_phase")
# two-phase classes: ordered pairs of the first eight actions (no fades: the digit must stay visible
# for the second phase to be seen) whose kinds differ, so neither phase undoes the other
TWO_PHASE_PAIRS = [(first, second) for first in range(8) for second in range(8) if first // 2 != second // 2]
_MIRRORED = {0: 1, 1: 0, 6: 7, 7: 6}  # a horizontal flip: right <-> left, clockwise <-> counter-clockwise


def motion_classes(actions: str = "single") -> list[str]:
    """The motion label names of an action set ('single' or 'two_phase')."""
    if actions == "single":
        return list(MOTION_CLASSES)
    if actions == "two_phase":
        return [f"{MOTION_CLASSES[a]}, then {MOTION_CLASSES[b]}" for a, b in TWO_PHASE_PAIRS]
    raise ValueError(f"unknown action set {actions!r}; choose from {ACTION_SETS}")


def paired_action(action: int, actions: str = "single") -> int:
    """The action that is ``action`` played backwards."""
    if actions == "single":
        return action ^ 1
    first, second = TWO_PHASE_PAIRS[action]
    return TWO_PHASE_PAIRS.index((second ^ 1, first ^ 1))


def flip_label_map(actions: str = "single") -> dict[int, int]:
    """Motion classes a horizontal flip turns into another (mirrored right is left), as {from: to}."""
    if actions == "single":
        return dict(_MIRRORED)
    mapping = {}
    for index, (first, second) in enumerate(TWO_PHASE_PAIRS):
        mirrored = TWO_PHASE_PAIRS.index((_MIRRORED.get(first, first), _MIRRORED.get(second, second)))
        if mirrored != index:
            mapping[index] = mirrored
    return mapping


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
    distractors: int = 1  # drifting squares and discs
    actions: str = "single"  # 'single': the ten actions; 'two_phase': 48 ordered pairs of them
    phase_split: tuple[float, float] = (0.4, 0.6)  # two_phase: where in the motion the second action starts
    fps: int = 12

    def __post_init__(self) -> None:
        if self.actions not in ACTION_SETS:
            raise ValueError(f"unknown action set {self.actions!r}; choose from {ACTION_SETS}")

    @property
    def num_actions(self) -> int:
        return len(motion_classes(self.actions))


@dataclass
class Distractor:
    """A square or disc drifting at constant velocity (normalised coordinates per frame)."""

    start: tuple[float, float]
    velocity: tuple[float, float]
    size: float
    color: tuple[float, float, float]
    disc: bool


@dataclass
class ClipParams:
    """Everything random about one clip, drawn from its own generator."""

    action: int
    digit: int
    digit_image: int
    progress: np.ndarray  # (T,) in [0, 1]
    center: tuple[float, float]
    size: float
    travel: float  # translation extent, of the frame side
    turn: float  # degrees turned
    color: tuple[float, float, float]
    background: np.ndarray  # (3, 4, 4) coarse texture
    fine: np.ndarray  # (3, 16, 16) fine texture
    distractors: list[Distractor]
    noise_seed: int
    phase_split: float = 0.5  # two_phase: the motion progress at which the second action starts


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
    action = index % cfg.num_actions
    digit_image = int(rng.integers(len(images)))
    T = cfg.frames
    start = rng.uniform(0, T * 0.3)
    duration = rng.uniform(T * 0.45, T - 1 - start)
    progress = np.clip((np.arange(T) - start) / duration, 0.0, 1.0)
    size = rng.uniform(*cfg.digit_size)
    hue = rng.uniform(0.55, 1.0, 3)
    hue[rng.integers(3)] = 1.0
    center = (rng.uniform(-0.15, 0.15), rng.uniform(-0.15, 0.15))
    if cfg.actions == "single":
        extent_range = {0: cfg.travel, 1: cfg.travel, 2: cfg.zoom, 3: cfg.rotation, 4: (1.0, 1.0)}[action // 2]
        travel = turn = rng.uniform(*extent_range)  # only the action's own kind reads it
    else:
        travel, turn = rng.uniform(*cfg.travel), rng.uniform(*cfg.rotation)
    color = tuple(hue * 255)
    background = rng.uniform(-1, 1, (3, 4, 4)).astype(np.float32)
    fine = rng.uniform(-1, 1, (3, 16, 16)).astype(np.float32)

    def distractor(source: np.random.Generator) -> Distractor:
        return Distractor(start=tuple(source.uniform(-0.7, 0.7, 2)), velocity=tuple(source.uniform(-0.06, 0.06, 2)),
                          size=source.uniform(0.10, 0.16), color=tuple(source.uniform(0.3, 1.0, 3) * 255),
                          disc=bool(source.integers(2)))

    distractors = [distractor(rng)]  # drawn even when unused, so the other draws stay where they were
    noise_seed = int(rng.integers(2**31))
    extra = np.random.default_rng([cfg.seed, 0 if split == "train" else 1, index, 1])  # settings beyond the first
    distractors += [distractor(extra) for _ in range(cfg.distractors - 1)]
    return ClipParams(
        action=action, digit=int(labels[digit_image]), digit_image=digit_image, progress=progress,
        center=center, size=size, travel=travel, turn=turn, color=color, background=background, fine=fine,
        distractors=distractors[: cfg.distractors], noise_seed=noise_seed,
        phase_split=float(extra.uniform(*cfg.phase_split)) if cfg.actions == "two_phase" else 0.5,
    )


def action_phases(action: int, progress: np.ndarray, params: ClipParams,
                  cfg: SyntheticConfig) -> list[tuple[int, np.ndarray]]:
    """The clip's motion as (kind, per-frame progress of that kind's forward action) pairs.

    Kind k's forward action is action 2k; action 2k+1 runs it with 1 - progress, so reversing a clip
    in time (and, for two phases, the split point s -> 1 - s) turns one class into its pair exactly.
    """
    def forward(primitive: int, q: np.ndarray) -> tuple[int, np.ndarray]:
        return primitive // 2, (q if primitive % 2 == 0 else 1.0 - q)

    if cfg.actions == "single":
        return [forward(action, progress)]
    first, second = TWO_PHASE_PAIRS[action]
    split = params.phase_split
    return [forward(first, np.clip(progress / split, 0.0, 1.0)),
            forward(second, np.clip((progress - split) / (1.0 - split), 0.0, 1.0))]


def motion_states(action: int, progress: np.ndarray, params: ClipParams, cfg: SyntheticConfig) -> dict[str, np.ndarray]:
    """Per-frame x, y (normalised), scale, angle (degrees) and opacity of the digit."""
    T = len(progress)
    x = np.full(T, params.center[0])
    y = np.full(T, params.center[1])
    scale = np.ones(T)
    angle = np.zeros(T)
    alpha = np.ones(T)
    for kind, p in action_phases(action, progress, params, cfg):
        if kind == 0:  # move right (x grows)
            x = params.center[0] + (p - 0.5) * 2 * params.travel
        elif kind == 1:  # move down (y grows)
            y = params.center[1] + (p - 0.5) * 2 * params.travel
        elif kind == 2:  # zoom in
            small, big = cfg.zoom
            scale = small + (big - small) * p
        elif kind == 3:  # rotate clockwise (image y points down: positive angle turns clockwise)
            angle = params.turn * p
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
    distractor = cfg.distractors > 0 if distractor is None else distractor
    states = motion_states(action, progress, params, cfg)
    images, _ = digits()
    sprite = F.interpolate(torch.from_numpy(images[params.digit_image])[None, None], size=16, mode="bilinear",
                           align_corners=False).clamp(0, 1)
    alpha = _sprite_alpha(sprite, states["x"], states["y"], states["scale"], states["angle"], params.size, cfg.size)
    mask = alpha > 0.35
    opacity = torch.as_tensor(states["alpha"], dtype=torch.float32)[:, None, None] * alpha
    frames = _background(params, cfg)[None].repeat(len(progress), 1, 1, 1)  # (T, 3, S, S)
    T = len(progress)
    steps = np.arange(T)
    for other in params.distractors if distractor else []:
        dx = other.start[0] + other.velocity[0] * steps
        dy = other.start[1] + other.velocity[1] * steps
        shape = torch.ones(1, 1, 16, 16)
        if other.disc:
            yy, xx = torch.meshgrid(torch.linspace(-1, 1, 16), torch.linspace(-1, 1, 16), indexing="ij")
            shape = ((xx ** 2 + yy ** 2) <= 1.0).float()[None, None]
        d_alpha = _sprite_alpha(shape, dx, dy, np.ones(T), np.zeros(T), other.size, cfg.size)
        d_color = torch.tensor(other.color)[None, :, None, None]
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
    for task, classes, column in (("motion", motion_classes(cfg.actions), 0), ("digit", DIGIT_CLASSES, 1)):
        (root / task).mkdir(exist_ok=True)
        _write_text(root / task / "classes.txt", "\n".join(classes) + "\n")
        for split, rows in results.items():
            lines = [f"videos/{split}/{i:05d}.mp4 {row[column]}" for i, row in enumerate(rows)]
            _write_text(root / task / f"{split}.txt", "\n".join(lines) + "\n")
    _write_text(root / "meta.json", json.dumps({"version": GENERATOR_VERSION, "config": asdict(cfg),
                                                "motion_classes": motion_classes(cfg.actions), "encoder": _encoder()}, indent=2))
    return root


class _Serial:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, fn, items, chunksize=1):
        return map(fn, items)
