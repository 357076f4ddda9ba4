"""Decoding and loader throughput on this machine.

Usage: python benchmarks/data_loading.py [--root data/synthetic]
1. Decoded frames/s for one 16-frame dense clip (stride 2) from a 10 s 340x256 mp4 (generated here),
   reading with a seek to the keyframe before the clip versus decoding from the start.
2. Loader throughput (clips/s) on the built-in dataset, training transforms, with 0, 1 and 2 workers.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from videomamba.data import ClipSampling, ClipTransform, VideoClipDataset, collate_clips, load_annotations
from videomamba.data import video_io
from videomamba.data.synthetic import SyntheticConfig, generate


def make_long_video(path: Path) -> Path:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (256, 340, 3), dtype=np.uint8)
    frames = np.stack([np.roll(base, 3 * i, axis=1) for i in range(300)])  # 10 s at 30 fps, panning
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 340, 256, "yuv420p"
        stream.options = {"g": "60", "preset": "veryfast"}  # a keyframe every 2 s, as is common
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def time_decode(path: Path, seek: bool, repeats: int = 20) -> float:
    index = video_io.video_index(path)
    rng = np.random.default_rng(0)
    start_time = time.perf_counter()
    for _ in range(repeats):
        start = int(rng.integers(0, index.num_frames - 32))
        wanted = list(range(start, start + 32, 2))
        if seek:
            video_io.read_video_frames(path, wanted)
        else:  # the baseline: the same reader told that the only keyframe is the first frame
            no_seek = video_io.VideoIndex(index.pts, (index.pts[0],), index.time_base, index.fps)
            try:
                video_io._INDEX_CACHE.put(video_io._cache_key(path), no_seek)
                video_io.read_video_frames(path, wanted)
            finally:
                video_io._INDEX_CACHE.put(video_io._cache_key(path), index)
    return 16 * repeats / (time.perf_counter() - start_time)


def time_loader(root: Path, workers: int, batches: int = 20, batch_size: int = 16) -> float:
    ann = load_annotations("list", root / "motion" / "train.txt", root=root)
    dataset = VideoClipDataset(ann, ClipSampling(clip_len=16, stride=1), ClipTransform(64, train=True), train=True)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers, collate_fn=collate_clips,
                        persistent_workers=False)
    iterator = iter(loader)
    next(iterator)  # worker start-up excluded
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", default="data/synthetic")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"# data loading, {datetime.date.today()}, {platform.machine()}, torch {torch.__version__}\n")
    with tempfile.TemporaryDirectory() as tmp:
        path = make_long_video(Path(tmp) / "long.mp4")
        seek, scan = time_decode(path, True), time_decode(path, False)
    print("| 16-frame clip from a 10 s 340x256 mp4 (keyframe every 60) | frames/s |\n|---|---|")
    print(f"| seek to keyframe, decode forward | {seek:.0f} |\n| decode from the start | {scan:.0f} |\n")
    root = generate(args.root, SyntheticConfig(), progress=False)
    print("| loader, built-in dataset, 16x64x64 train transforms, batch 16 | clips/s |\n|---|---|")
    for workers in (0, 1, 2):
        print(f"| {workers} workers | {time_loader(root, workers):.0f} |", flush=True)


if __name__ == "__main__":
    main()
