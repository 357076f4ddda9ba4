"""Decoding only the frames a clip needs, with PyAV (or torchcodec), and frame folders.

Frame index -> timestamp comes from the packets (one demux pass, no decoding), cached per video,
never from ``index / fps``: that breaks on variable-frame-rate and gapped files, and WebM reports
no frame count at all. To read frames we seek to the keyframe before the first wanted timestamp and
decode forward, converting to RGB (and resizing, inside the same swscale call) only the frames we
keep. Each loader worker decodes with one thread.

Some files' packet timestamps do not name their frames: MPEG program streams repeat a timestamp
across packets, raw elementary streams (H.264 named .mp4, say) carry none, and an MP4 cut with an
edit list holds packets that the decoder drops (``Packet.is_discard``, left out of the index). Where
the packets cannot be trusted, or a read by timestamp misses frames, the index is rebuilt from one
full decode: by the decoded frames' timestamps when they are complete and distinct, else by
counting frames in decoding order, read by decoding from the start. The training loader, ``data
check`` and ``predict`` all go through this one path.
"""

from __future__ import annotations

import dataclasses
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
    by_count: bool = False  # the timestamps cannot address the frames: pts are frame numbers, read from the start
    decoded: bool = False  # built from a full decode, not from the packets
    seekable: bool = True  # False where a seek was seen to land past the keyframe asked for (MPEG-TS, say)

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
    if not os.access(path, os.R_OK):
        raise VideoReadError(path, "permission denied (the file is not readable by this user)")
    if path.stat().st_size == 0:
        raise VideoReadError(path, "file is empty (0 bytes)")
    try:
        container = av.open(str(path))
    except PermissionError:
        raise VideoReadError(path, "permission denied (the file is not readable by this user)") from None
    except Exception as err:  # PyAV raises several InvalidDataError/OSError subclasses
        raise VideoReadError(path, f"cannot open: not a container FFmpeg reads ({type(err).__name__}: {err})") from None
    if not container.streams.video:
        container.close()
        raise VideoReadError(path, "no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "SLICE"
    stream.codec_context.thread_count = 1  # one decoding thread per loader worker
    return container, stream


def _timing(stream) -> tuple[float, float]:
    """(seconds per timestamp tick, frames per second or 0.0 where unknown), read while the
    container is open: PyAV 18.1.1 and later refuse a closed container's stream attributes."""
    rate = stream.average_rate or stream.guessed_rate
    return float(stream.time_base or 1.0), (float(rate) if rate else 0.0)


def _demux_index(path: Path) -> VideoIndex | None:
    """The index from the packets alone, or None where their timestamps cannot address the frames
    (a packet with data but no timestamp, or one timestamp on several packets)."""
    container, stream = _open(path)
    time_base, fps = _timing(stream)
    pts, keyframes, trusted = [], [], True
    try:
        for packet in container.demux(stream):
            if not packet.size:  # the flushing packet
                continue
            stamp = packet.pts if packet.pts is not None else packet.dts
            if stamp is None:
                trusted = False
                continue
            if packet.is_keyframe:
                keyframes.append(stamp)
            if getattr(packet, "is_discard", False):  # before an edit list's start: never shown
                continue
            pts.append(stamp)
    except Exception as err:
        raise VideoReadError(path, f"demuxing failed after {len(pts)} packets ({type(err).__name__}: {err})") from None
    finally:
        container.close()
    if not trusted or len(set(pts)) != len(pts):
        return None
    if not pts:
        raise VideoReadError(path, "no video frames")
    pts = sorted(pts)
    return VideoIndex(tuple(pts), tuple(sorted(keyframes)) or (pts[0],), time_base, fps)


def _decoded_index(path: Path) -> VideoIndex:
    """The index from one full decode: the frames' own timestamps where they are all present and
    distinct, else frame numbers in output order (``by_count``)."""
    container, stream = _open(path)
    time_base, fps = _timing(stream)
    pts, keyframes = [], []
    try:
        for frame in container.decode(stream):
            pts.append(frame.pts)
            if frame.key_frame and frame.pts is not None:
                keyframes.append(frame.pts)
    except Exception as err:
        if not pts:
            raise VideoReadError(path, f"decoding failed before the first frame ({type(err).__name__}: {err})") from None
        # a broken tail: the frames before it are the video
    finally:
        container.close()
    if not pts:
        raise VideoReadError(path, "no decodable video frames")
    if all(p is not None for p in pts) and len(set(pts)) == len(pts):
        ordered = sorted(pts)
        return VideoIndex(tuple(ordered), tuple(sorted(keyframes)) or (ordered[0],), time_base, fps, decoded=True)
    return VideoIndex(tuple(range(len(pts))), (0,), time_base, fps, by_count=True, decoded=True)


def video_index(path: str | Path) -> VideoIndex:
    """The frame timestamps of a video file (cached by path, mtime and size): from one demux pass, or
    from a full decode where the packets' timestamps cannot address the frames."""
    path = Path(path)
    if path.is_dir():
        raise VideoReadError(path, "is a directory; use read_frame_folder for frame folders")
    key = _cache_key(path) if path.exists() else None
    cached = _INDEX_CACHE.get(key) if key else None
    if cached is not None:
        return cached
    index = _demux_index(path) or _decoded_index(path)
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


class _MissingFrames(Exception):
    def __init__(self, missing: int, wanted: int):
        super().__init__(f"{missing} of {wanted} wanted frames not decoded")
        self.missing, self.wanted = missing, wanted


def read_video_frames(path: str | Path, indices, short_side: int | None = None) -> torch.Tensor:
    """Frames ``indices`` (any order, repeats allowed) of a video file as uint8 (T, C, H, W).

    Seeks to the keyframe at or before the first wanted frame and decodes forward once, keeping
    only the wanted frames (converted to RGB, resized to ``short_side`` in the same step). Where the
    timestamps miss frames, the index is rebuilt from a full decode and the read made again.
    """
    path = Path(path)
    wanted = [int(i) for i in indices]
    index = video_index(path)
    while True:
        bad = [i for i in wanted if not 0 <= i < index.num_frames]
        if bad:
            counted = "decodable frames" if index.decoded else "frames"
            raise VideoReadError(path, f"frame {bad[0]} requested, video has {index.num_frames} {counted}")
        try:
            frames = _read_indexed(path, index, wanted, short_side)
        except _MissingFrames as missing:
            # first distrust the seek (some demuxers land past the keyframe), then the timestamps
            if index.seekable and not index.by_count:
                index = dataclasses.replace(index, seekable=False)
            elif not index.decoded:
                index = _decoded_index(path)
            else:
                raise VideoReadError(path, f"{missing.missing} of {missing.wanted} wanted frames could not be "
                                           f"decoded (truncated or corrupt file?)") from None
            _INDEX_CACHE.put(_cache_key(path), index)
            continue
        return torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()


def _read_indexed(path: Path, index: VideoIndex, wanted: list[int], short_side: int | None) -> np.ndarray:
    """The wanted frames as (T, H, W, 3) uint8: by timestamp after a seek, or by count from the start."""
    from av.video.reformatter import VideoReformatter

    wanted_keys = {index.pts[i] for i in wanted}
    last = max(wanted_keys)
    container, stream = _open(path)
    reformatter = VideoReformatter()
    decoded: dict[int, np.ndarray] = {}
    try:
        if index.seekable and not index.by_count:
            seek_to = max((k for k in index.keyframes if k <= min(wanted_keys)), default=index.pts[0])
            if seek_to > index.pts[0]:
                container.seek(seek_to, stream=stream, backward=True, any_frame=False)
        size = None
        for number, frame in enumerate(container.decode(stream)):
            key = number if index.by_count else frame.pts
            if key is None:
                continue
            if key in wanted_keys and key not in decoded:
                if size is None:
                    size = output_size(frame.height, frame.width, short_side) or (frame.height, frame.width)
                decoded[key] = _to_rgb(reformatter, frame, size)
            if key >= last and len(decoded) == len(wanted_keys):
                break
    except Exception as err:
        if wanted_keys - decoded.keys():
            raise VideoReadError(path, f"decoding failed ({type(err).__name__}: {err})") from None
    finally:
        container.close()
    missing = wanted_keys - decoded.keys()
    if missing:
        raise _MissingFrames(len(missing), len(wanted_keys))
    return np.stack([decoded[index.pts[i]] for i in wanted])


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
