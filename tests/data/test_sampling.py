import numpy as np

from videomamba.data.sampling import dense_indices, segment_indices


def test_dense_train_is_a_strided_window_inside_the_video():
    rng = np.random.default_rng(0)
    for _ in range(50):
        idx = dense_indices(100, 16, 2, train=True, rng=rng)
        assert idx.shape == (1, 16)
        assert (np.diff(idx[0]) == 2).all() and idx.min() >= 0 and idx.max() <= 99


def test_dense_test_clips_evenly_spaced_and_span_the_video():
    idx = dense_indices(100, 8, 2, train=False, num_clips=5)
    assert idx.shape == (5, 8)
    assert idx[0, 0] == 0 and idx[-1, -1] == 99
    starts = idx[:, 0]
    assert np.abs(np.diff(starts) - np.diff(starts).mean()).max() <= 1


def test_short_video_loops_or_repeats_last():
    assert dense_indices(5, 4, 2, train=False, short="loop")[0].tolist() == [0, 2, 4, 1]
    assert dense_indices(5, 4, 2, train=False, short="repeat_last")[0].tolist() == [0, 2, 4, 4]
    assert segment_indices(3, 5, train=False, short="loop")[0].tolist() == [0, 1, 2, 0, 1]
    assert segment_indices(3, 5, train=False, short="repeat_last")[0].tolist() == [0, 1, 2, 2, 2]


def test_segment_sampling_one_frame_per_segment():
    idx = segment_indices(80, 8, train=False)
    assert idx[0].tolist() == [5, 15, 25, 35, 45, 55, 65, 75]  # segment centres
    rng = np.random.default_rng(1)
    for _ in range(20):
        train = segment_indices(80, 8, train=True, rng=rng)[0]
        assert all(10 * s <= i < 10 * (s + 1) for s, i in enumerate(train))
    two = segment_indices(80, 8, train=False, num_clips=2)
    assert two[:, 0].tolist() == [2, 7]
