"""Small videos written with PyAV for the data tests: frame i is a flat gray of level LEVEL(i)."""

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

CODECS = {".mp4": "libx264", ".mkv": "libx264", ".webm": "libvpx-vp9", ".avi": "mpeg4"}


def level(i: int) -> int:
    return (16 + 12 * i) % 240


def frames_for(n: int, height: int = 32, width: int = 48) -> np.ndarray:
    frames = np.zeros((n, height, width, 3), np.uint8)
    for i in range(n):
        frames[i] = level(i)
    return frames


def write(path: Path, n: int = 20, pts: list[int] | None = None, height: int = 32, width: int = 48) -> Path:
    """Encode n flat frames; ``pts`` sets explicit timestamps (gaps make a variable-rate file)."""
    path = Path(path)
    frames = frames_for(n, height, width)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(CODECS[path.suffix], rate=12)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, 12)
        if path.suffix in (".mp4", ".mkv"):
            stream.options = {"g": "8", "bf": "2"}  # keyframe every 8 frames, B-frames: real seeking
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = pts[i] if pts else i
            frame.time_base = Fraction(1, 12)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def mean_levels(video) -> list[int]:
    """Mean gray level of each frame of a uint8 (T, C, H, W) tensor."""
    return [int(round(float(f.float().mean()))) for f in video]
