"""Which frames a clip reads: dense (K frames at stride s) or segment-based (TSN), train or test.

All functions return frame indices in [0, num_frames). A video shorter than a clip either loops
(``short="loop"``: indices wrap around) or repeats its last frame (``short="repeat_last"``).
"""

from __future__ import annotations

import numpy as np

SHORT_POLICIES = ("loop", "repeat_last")


def _fit(indices: np.ndarray, num_frames: int, short: str) -> np.ndarray:
    if short == "loop":
        return np.mod(indices, num_frames)
    if short == "repeat_last":
        return np.clip(indices, 0, num_frames - 1)
    raise ValueError(f"unknown short-video policy {short!r}; choose from {SHORT_POLICIES}")


def dense_indices(num_frames: int, clip_len: int, stride: int, *, train: bool, num_clips: int = 1,
                  rng: np.random.Generator | None = None, short: str = "loop") -> np.ndarray:
    """Dense sampling: ``clip_len`` frames ``stride`` apart.

    Training: one clip at a random start. Test: ``num_clips`` clips with evenly spaced starts (the
    first at 0, the last ending at the last frame). Returns (num_clips, clip_len) int64 indices
    ((1, clip_len) in training).
    """
    if num_frames < 1:
        raise ValueError("video has no frames")
    span = (clip_len - 1) * stride + 1
    max_start = max(num_frames - span, 0)
    if train:
        rng = rng or np.random.default_rng()
        starts = np.array([rng.integers(0, max_start + 1)])
    elif num_clips == 1:
        starts = np.array([max_start // 2])
    else:
        starts = np.round(np.linspace(0, max_start, num_clips)).astype(np.int64)
    indices = starts[:, None] + np.arange(clip_len)[None] * stride
    return _fit(indices, num_frames, short).astype(np.int64)


def segment_indices(num_frames: int, clip_len: int, *, train: bool, num_clips: int = 1,
                    rng: np.random.Generator | None = None, short: str = "loop") -> np.ndarray:
    """Segment (TSN) sampling: the video split into ``clip_len`` equal segments, one frame from each.

    Training: a random frame inside each segment. Test: the centre of each segment; with several
    clips, clip c takes the point at fraction (c + 0.5) / num_clips of each segment.
    Returns (num_clips, clip_len) int64 indices.
    """
    if num_frames < 1:
        raise ValueError("video has no frames")
    if num_frames < clip_len:  # fewer frames than segments: read 0..n-1 then the policy
        base = _fit(np.arange(clip_len), num_frames, short)
        return np.repeat(base[None], 1 if train else num_clips, axis=0).astype(np.int64)
    edges = np.linspace(0, num_frames, clip_len + 1)
    lengths = edges[1:] - edges[:-1]
    if train:
        rng = rng or np.random.default_rng()
        offsets = rng.random(clip_len)[None]
    else:
        offsets = ((np.arange(num_clips) + 0.5) / num_clips)[:, None]
    indices = np.floor(edges[:-1][None] + offsets * lengths[None]).astype(np.int64)
    return np.clip(indices, 0, num_frames - 1)
