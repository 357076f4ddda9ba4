import numpy as np
import pytest
import torch
from PIL import Image

from videomamba.data.video_io import VideoReadError, num_frames, read_frames, video_index

from .helpers import level, mean_levels, write


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".avi", ".mkv"])
def test_reads_exactly_the_requested_frames(tmp_path, suffix):
    path = write(tmp_path / f"clip{suffix}", n=20)
    assert num_frames(path) == 20  # WebM reports no frame count: this comes from the demux pass
    wanted = [17, 2, 9, 9, 0, 19]
    video = read_frames(path, wanted)
    assert video.dtype == torch.uint8 and video.shape == (6, 3, 32, 48)
    for got, index in zip(mean_levels(video), wanted):
        assert abs(got - level(index)) <= 3, (suffix, index, got)


def test_short_side_resize_inside_conversion(tmp_path):
    path = write(tmp_path / "clip.mp4", n=4, height=32, width=48)
    assert read_frames(path, [1], short_side=16).shape == (1, 3, 16, 24)


def test_gapped_timestamps_map_by_packets_not_fps(tmp_path):
    # frames at pts 0,1,2, then a gap, 10,11,12: index/fps would ask for pts 3, which does not exist
    path = write(tmp_path / "gapped.mkv", n=6, pts=[0, 1, 2, 10, 11, 12])
    index = video_index(path)
    assert index.num_frames == 6
    assert mean_levels(read_frames(path, [3, 5])) == pytest.approx([level(3), level(5)], abs=3)


def test_frame_folder(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(np.full((20, 30, 3), level(i), np.uint8)).save(folder / f"img_{i + 1:05d}.jpg", quality=95)
    assert num_frames(folder) == 5
    video = read_frames(folder, [4, 0], short_side=10)
    assert video.shape == (2, 3, 10, 15)
    assert mean_levels(video) == pytest.approx([level(4), level(0)], abs=3)


@pytest.mark.parametrize("content,reason", [(None, "does not exist"), (b"", "empty"), (b"\x00garbage" * 50, "cannot open")])
def test_bad_files_name_file_and_problem(tmp_path, content, reason):
    path = tmp_path / "bad.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(VideoReadError, match=reason) as info:
        read_frames(path, [0])
    assert str(path) in str(info.value)


def test_truncated_file(tmp_path):
    path = write(tmp_path / "clip.mp4", n=40)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(VideoReadError) as info:
        frames = num_frames(truncated)
        read_frames(truncated, [frames - 1, 39] if frames < 40 else [39])
    assert str(truncated) in str(info.value)


def test_out_of_range_frame(tmp_path):
    path = write(tmp_path / "clip.mp4", n=5)
    with pytest.raises(VideoReadError, match="frame 7 requested, video has 5 frames"):
        read_frames(path, [7])


def test_unreadable_file_says_permission_denied(tmp_path, monkeypatch):
    """The cause is named (root reads every file, so the check is made to fail as it would for a user)."""
    import os

    from videomamba.data.video_io import VideoReadError, num_frames

    path = write(tmp_path / "locked.mp4")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(path) else real_access(p, mode))
    with pytest.raises(VideoReadError, match="locked.mp4: permission denied"):
        num_frames(path)
