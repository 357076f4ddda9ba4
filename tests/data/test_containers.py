"""The files users have: every container and codec we claim, written here with PyAV (frame i a flat gray
of level LEVEL(i)), read through the one decoding path that training, ``data check`` and ``predict``
share; and the ones whose packet timestamps cannot address their frames."""

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tests.data.helpers import frames_for, level, mean_levels
from videomamba.data.check import check_dataset
from videomamba.data.datasets import load_annotations
from videomamba.data.video_io import num_frames, read_frames, video_index

# suffix, container format (None: from the suffix), codec, pixel format, encoder options
CONTAINERS = {
    "mp4-h264-bframes": (".mp4", None, "libx264", "yuv420p", {"g": "8", "bf": "2"}),
    "mkv-h264": (".mkv", None, "libx264", "yuv420p", {"g": "8", "bf": "2"}),
    "webm-vp9": (".webm", None, "libvpx-vp9", "yuv420p", {"deadline": "realtime", "cpu-used": "8"}),
    "avi-mpeg4": (".avi", None, "mpeg4", "yuv420p", {"qscale": "2"}),
    "mov-mjpeg": (".mov", None, "mjpeg", "yuvj420p", {"qscale": "2"}),
    "mpg-mpeg2-program-stream": (".mpg", "mpeg", "mpeg2video", "yuv420p", {"qscale": "2", "bf": "2", "g": "8",
                                                                           "dc": "10"}),
    "ts-mpeg2-transport-stream": (".ts", "mpegts", "mpeg2video", "yuv420p", {"qscale": "2", "dc": "10"}),
    "gif": (".gif", None, "gif", "rgb8", {}),
    "raw-h264-named-mp4": (".mp4", "h264", "libx264", "yuv420p", {"g": "8"}),
}
N = 20


def write_container(path: Path, fmt: str | None, codec: str, pix_fmt: str, options: dict, n: int = N) -> Path:
    with av.open(str(path), mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=12)
        stream.width, stream.height, stream.pix_fmt = 48, 32, pix_fmt
        stream.options = dict(options)
        for i, image in enumerate(frames_for(n)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 12)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def cut_with_edit_list(source: Path, path: Path, cut: int) -> Path:
    """Remux ``source`` with its first ``cut`` frames before time zero: the MP4 muxer writes an edit
    list, and the demuxer marks those frames' packets as discarded (what ``ffmpeg -ss -c copy`` makes)."""
    with av.open(str(source)) as inp, av.open(str(path), "w") as out:
        src = inp.streams.video[0]
        dst = out.add_stream_from_template(src)
        shift = int(round(cut / (12 * src.time_base)))
        for packet in inp.demux(src):
            if packet.dts is None:
                continue
            packet.pts -= shift
            packet.dts -= shift
            packet.stream = dst
            out.mux(packet)
    return path


def close_to_levels(video, expected: list[int], tolerance: int = 6) -> bool:
    """Each frame's mean gray within ``tolerance`` of its level (levels are 12 apart; lossy B-frames of
    flat frames land up to 6 off)."""
    return all(abs(got - want) <= tolerance for got, want in zip(mean_levels(video), expected))


def full_decode_levels(path: Path) -> list[int]:
    """Mean gray of every frame, decoding the whole file in order: the truth a read must agree with."""
    with av.open(str(path)) as container:
        return [int(round(float(frame.to_ndarray(format="rgb24").mean()))) for frame in container.decode(video=0)]


@pytest.mark.parametrize("kind", list(CONTAINERS))
def test_every_container_reads_the_right_frames(tmp_path, kind):
    suffix, fmt, codec, pix_fmt, options = CONTAINERS[kind]
    path = write_container(tmp_path / f"clip{suffix}", fmt, codec, pix_fmt, options)
    assert num_frames(path) == N
    wanted = [0, 7, 8, 13, N - 1, 3]
    video = read_frames(path, wanted)
    assert video.shape == (6, 3, 32, 48)
    truth = full_decode_levels(path)
    assert len(truth) == N
    assert all(abs(got - truth[i]) <= 1 for got, i in zip(mean_levels(video), wanted)), (mean_levels(video), truth)
    assert close_to_levels(video, [level(i) for i in wanted]), (mean_levels(video), [level(i) for i in wanted])


def test_timestamps_that_cannot_address_frames_fall_back_to_counting(tmp_path):
    """A raw H.264 stream carries no timestamps: it is indexed from one decode, by frame count, and read
    from the start (its frames checked in ``test_every_container_reads_the_right_frames``)."""
    raw = write_container(tmp_path / "raw.mp4", "h264", "libx264", "yuv420p", {"g": "8"})
    assert video_index(raw).by_count and video_index(raw).decoded


def test_mp4_cut_with_an_edit_list(tmp_path):
    source = write_container(tmp_path / "source.mp4", None, "libx264", "yuv420p", {"g": "10", "bf": "2"}, n=30)
    cut = cut_with_edit_list(source, tmp_path / "cut.mp4", cut=5)
    with av.open(str(cut)) as container:
        assert any(packet.is_discard for packet in container.demux(video=0))  # the test makes what it says
    assert num_frames(cut) == 25  # the five frames before the edit are never shown
    video = read_frames(cut, [0, 12, 24])
    assert close_to_levels(video, [level(5), level(17), level(29)]), mean_levels(video)
    report = check_dataset(_list_of(tmp_path, [cut]), progress=False)
    assert report.good == 1 and not report.bad


def _list_of(tmp_path: Path, paths: list[Path]):
    (tmp_path / "list.txt").write_text("".join(f"{p} 0\n" for p in paths))
    return load_annotations("list", tmp_path / "list.txt")


def test_data_check_passes_exactly_what_training_reads(tmp_path):
    """``data check`` and the clip dataset go through the same path: every good file of every
    container passes the check, and every file the check passes gives a clip."""
    from videomamba.data.datasets import ClipSampling, VideoClipDataset

    paths = [write_container(tmp_path / f"{kind}{spec[0]}", *spec[1:]) for kind, spec in CONTAINERS.items()]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(paths[0].read_bytes()[: 600])
    annotations = _list_of(tmp_path, paths + [broken])
    report = check_dataset(annotations, progress=False)
    assert report.good == len(paths) and [p for p, _ in report.bad] == [str(broken)]
    dataset = VideoClipDataset(_list_of(tmp_path, paths), ClipSampling(clip_len=8, stride=2),
                               lambda video, label: (video, label), train=False)
    for i in range(len(paths)):
        item = dataset[i]
        assert item["label"] == 0 and not item["skipped"], item["skipped"]


def test_folder_layout_takes_every_container_and_says_what_it_left_out(tmp_path):
    (tmp_path / "walk").mkdir()
    for name, (suffix, fmt, codec, pix_fmt, options) in CONTAINERS.items():
        if name.startswith(("gif", "mpg", "ts")):
            write_container(tmp_path / "walk" / f"{name}{suffix}", fmt, codec, pix_fmt, options)
    (tmp_path / "walk" / "notes.txt").write_text("shot on a phone")
    (tmp_path / "walk" / "poster.jpg").write_bytes(b"\xff\xd8")
    (tmp_path / "walk" / ".DS_Store").write_bytes(b"")
    annotations = load_annotations("folder", tmp_path)
    assert sorted(Path(r.path).suffix for r in annotations.records) == [".gif", ".mpg", ".ts"]
    left = {Path(p).name: why for p, why in annotations.left_out}
    assert set(left) == {"notes.txt", "poster.jpg"}
    assert "not a video container" in left["notes.txt"] and "an image" in left["poster.jpg"]
    only_gif = load_annotations("folder", tmp_path, video_suffixes=("gif",))
    assert [Path(r.path).suffix for r in only_gif.records] == [".gif"]


def test_no_good_frame_is_lost_to_a_seek(tmp_path):
    """Many scattered reads of a B-frame file land on the right frames (seek to the keyframe before)."""
    path = write_container(tmp_path / "long.mp4", None, "libx264", "yuv420p", {"g": "8", "bf": "3"}, n=40)
    rng = np.random.default_rng(0)
    for _ in range(5):
        wanted = sorted(rng.choice(19, size=4, replace=False).tolist())
        assert close_to_levels(read_frames(path, wanted), [level(i) for i in wanted])
