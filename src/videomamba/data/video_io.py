"""Decoding only the frames a clip needs, with PyAV (or torchcodec), and frame folders.

Frame index -> timestamp comes from the packets (one demux pass, no decoding), cached per video,
never from ``index / fps``: that breaks on variable-frame-rate and gapped files, and WebM reports
no frame count at all. To read frames we seek to the keyframe before the first wanted timestamp and
decode forward, converting to RGB (and resizing, inside the same swscale call) only the frames we
keep. Each loader worker decodes with one thread.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class VideoReadError(RuntimeError):
    """A video that cannot be read: names the file and what is wrong."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


@dataclass(frozen=True)
class VideoIndex:
    """Presentation timestamps of every frame (sorted), the keyframe timestamps, and the time base."""

    pts: tuple[int, ...]
    keyframes: tuple[int, ...]
    time_base: float
    fps: float

    @property
    def num_frames(self) -> int:
        return len(self.pts)


class _LRU:
    def __init__(self, capacity: int):
        self.capacity, self.data, self.lock = capacity, OrderedDict(), threading.Lock()

    def get(self, key):
        with self.lock:
            if key in self.data:
                self.data.move_to_end(key)
                return self.data[key]
        return None

    def put(self, key, value):
        with self.lock:
            self.data[key] = value
            self.data.move_to_end(key)
            while len(self.data) > self.capacity:
                self.data.popitem(last=False)


_INDEX_CACHE = _LRU(capacity=int(os.environ.get("VIDEOMAMBA_INDEX_CACHE", "100000")))


def _cache_key(path: Path):
    stat = path.stat()
    return str(path), stat.st_mtime_ns, stat.st_size


def _open(path: Path):
    import av

    if not path.exists():
        raise VideoReadError(path, "file does not exist")
    if path.stat().st_size == 0:
        raise VideoReadError(path, "file is empty (0 bytes)")
    try:
        container = av.open(str(path))
    except Exception as err:  # PyAV raises several InvalidDataError/OSError subclasses
        raise VideoReadError(path, f"cannot open ({type(err).__name__}: {err})") from None
    if not container.streams.video:
        container.close()
        raise VideoReadError(path, "no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "SLICE"
    stream.codec_context.thread_count = 1  # one decoding thread per loader worker
    return container, stream


def video_index(path: str | Path) -> VideoIndex:
    """The frame timestamps of a video file from one demux pass (cached by path, mtime and size)."""
    path = Path(path)
    if path.is_dir():
        raise VideoReadError(path, "is a directory; use read_frame_folder for frame folders")
    key = _cache_key(path) if path.exists() else None
    cached = _INDEX_CACHE.get(key) if key else None
    if cached is not None:
        return cached
    container, stream = _open(path)
    pts, keyframes = [], []
    try:
        for packet in container.demux(stream):
            if packet.pts is None:  # the flushing packet, or a packet without timestamp
                if packet.size:
                    pts.append(packet.dts if packet.dts is not None else (pts[-1] + 1 if pts else 0))
                continue
            pts.append(packet.pts)
            if packet.is_keyframe:
                keyframes.append(packet.pts)
    except Exception as err:
        container.close()
        raise VideoReadError(path, f"demuxing failed after {len(pts)} packets ({type(err).__name__}: {err})") from None
    time_base = float(stream.time_base) if stream.time_base else 1.0
    rate = stream.average_rate or stream.guessed_rate
    container.close()
    if not pts:
        raise VideoReadError(path, "no video frames")
    pts = sorted(set(pts))
    index = VideoIndex(tuple(pts), tuple(sorted(keyframes)) or (pts[0],), time_base, float(rate) if rate else 0.0)
    _INDEX_CACHE.put(key, index)
    return index


def num_frames(path: str | Path) -> int:
    """Number of frames of a video file or a frame folder."""
    path = Path(path)
    if path.is_dir():
        return len(list_frame_files(path))
    return video_index(path).num_frames


def _to_rgb(reformatter, frame, size: tuple[int, int]) -> np.ndarray:
    # One reformatter per read keeps its swscale context: building a fresh one per frame (what
    # frame.to_ndarray(format=...) does) cost more than decoding on small clips.
    height, width = size
    return reformatter.reformat(frame, width=width, height=height, format="rgb24",
                                interpolation="BILINEAR").to_ndarray()


def output_size(height: int, width: int, short_side: int | None) -> tuple[int, int] | None:
    """(H, W) after resizing so that the short side is ``short_side`` (None: keep)."""
    if short_side is None or min(height, width) == short_side:
        return None
    scale = short_side / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def read_video_frames(path: str | Path, indices, short_side: int | None = None) -> torch.Tensor:
    """Frames ``indices`` (any order, repeats allowed) of a video file as uint8 (T, C, H, W).

    Seeks to the keyframe at or before the first wanted frame and decodes forward once, keeping
    only the wanted frames (converted to RGB, resized to ``short_side`` in the same step).
    """
    path = Path(path)
    index = video_index(path)
    wanted = [int(i) for i in indices]
    bad = [i for i in wanted if not 0 <= i < index.num_frames]
    if bad:
        raise VideoReadError(path, f"frame {bad[0]} requested, video has {index.num_frames} frames")
    wanted_pts = {index.pts[i] for i in wanted}
    first, last = min(wanted_pts), max(wanted_pts)
    from av.video.reformatter import VideoReformatter

    container, stream = _open(path)
    reformatter = VideoReformatter()
    decoded: dict[int, np.ndarray] = {}
    try:
        seek_to = max((k for k in index.keyframes if k <= first), default=index.pts[0])
        if seek_to > index.pts[0]:
            container.seek(seek_to, stream=stream, backward=True, any_frame=False)
        size = None
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            if frame.pts in wanted_pts and frame.pts not in decoded:
                if size is None:
                    size = output_size(frame.height, frame.width, short_side) or (frame.height, frame.width)
                decoded[frame.pts] = _to_rgb(reformatter, frame, size)
            if frame.pts >= last and len(decoded) == len(wanted_pts):
                break
    except Exception as err:
        raise VideoReadError(path, f"decoding failed ({type(err).__name__}: {err})") from None
    finally:
        container.close()
    missing = wanted_pts - decoded.keys()
    if missing:
        raise VideoReadError(path, f"{len(missing)} of {len(wanted_pts)} wanted frames could not be decoded "
                                   f"(truncated or corrupt file?)")
    frames = np.stack([decoded[index.pts[i]] for i in wanted])
    return torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()


def list_frame_files(folder: str | Path) -> list[Path]:
    """Image files of a frame folder (img_00001.jpg ...), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VideoReadError(folder, "frame folder does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise VideoReadError(folder, f"no image files ({', '.join(IMAGE_SUFFIXES)}) in frame folder")
    return files


def read_frame_folder(folder: str | Path, indices, short_side: int | None = None) -> torch.Tensor:
    """Frames ``indices`` of a folder of images as uint8 (T, C, H, W) (decoded with Pillow)."""
    from PIL import Image

    files = list_frame_files(folder)
    frames = []
    for i in indices:
        if not 0 <= int(i) < len(files):
            raise VideoReadError(folder, f"frame {int(i)} requested, folder has {len(files)} images")
        try:
            with Image.open(files[int(i)]) as image:
                size = output_size(image.height, image.width, short_side)
                if size:
                    image.draft("RGB", (size[1], size[0]))  # JPEG: decode at reduced scale when it can
                image = image.convert("RGB")
                if size:
                    image = image.resize((size[1], size[0]), Image.BILINEAR)
                frames.append(np.asarray(image))
        except Exception as err:
            raise VideoReadError(files[int(i)], f"cannot decode image ({type(err).__name__}: {err})") from None
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()


def _torchcodec_read(path: Path, indices, short_side):
    from torchcodec.decoders import VideoDecoder  # optional: needs the system's FFmpeg libraries

    try:
        decoder = VideoDecoder(str(path), seek_mode="exact", num_ffmpeg_threads=1)
        frames = decoder.get_frames_at(indices=[int(i) for i in indices]).data
    except Exception as err:
        raise VideoReadError(path, f"torchcodec failed ({type(err).__name__}: {err})") from None
    size = output_size(frames.shape[-2], frames.shape[-1], short_side)
    if size:
        from torchvision.transforms.v2.functional import resize

        frames = resize(frames, list(size), antialias=True)
    return frames


def torchcodec_available() -> bool:
    """Whether the optional torchcodec backend imports here."""
    try:
        import torchcodec.decoders  # noqa: F401
    except Exception:
        return False
    return True


def read_frames(path: str | Path, indices, short_side: int | None = None, backend: str = "pyav") -> torch.Tensor:
    """Frames of a video file or frame folder as uint8 (T, C, H, W); ``backend`` 'pyav' or 'torchcodec'."""
    path = Path(path)
    if path.is_dir():
        return read_frame_folder(path, indices, short_side)
    if backend == "torchcodec":
        return _torchcodec_read(path, indices, short_side)
    if backend != "pyav":
        raise ValueError(f"unknown decoding backend {backend!r}; choose 'pyav' or 'torchcodec'")
    return read_video_frames(path, indices, short_side)


def write_video(path: str | Path, frames: np.ndarray | torch.Tensor, fps: int = 12, codec: str = "libx264",
                crf: int = 18) -> None:
    """Write uint8 frames (T, H, W, 3) as a video file (mp4/mkv/avi/webm by the codec you pass)."""
    import av

    frames = frames.numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    with av.open(str(tmp), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if codec in ("libx264", "libx265"):
            stream.options = {"crf": str(crf), "preset": "veryfast", "tune": "zerolatency"}
        elif codec in ("libvpx", "libvpx-vp9"):
            stream.options = {"crf": str(crf), "b:v": "0", "deadline": "realtime", "cpu-used": "8"}
        else:
            stream.options = {"qscale": "2"}
        stream.codec_context.thread_count = 1
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)
