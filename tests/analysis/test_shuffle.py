import pytest
import torch

from videomamba.analysis.shuffle import shuffle_frames, shuffle_order


def test_paper_orders_on_eight_units():
    one_based = lambda name: [i + 1 for i in shuffle_order(name, 8)]  # noqa: E731
    assert one_based("interleaved") == [1, 8, 2, 7, 3, 6, 4, 5]
    assert one_based("pairwise") == [1, 2, 7, 8, 5, 6, 3, 4]
    assert one_based("blockwise") == [5, 6, 7, 8, 1, 2, 3, 4]
    assert one_based("sequential") == list(range(1, 9))


def test_shuffle_frames_moves_whole_units():
    video = torch.arange(16.0).view(1, 1, 16, 1, 1).expand(2, 3, 16, 4, 4)
    out = shuffle_frames(video, "blockwise", unit=2)
    assert out[0, 0, :, 0, 0].tolist() == list(range(8, 16)) + list(range(8))
    out = shuffle_frames(video, "interleaved", unit=1)
    assert out[1, 2, :4, 0, 0].tolist() == [0, 15, 1, 14]
    with pytest.raises(ValueError, match="not a multiple"):
        shuffle_frames(video, "pairwise", unit=3)
