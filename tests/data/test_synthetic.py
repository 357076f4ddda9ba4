import hashlib

import numpy as np
import pytest

from videomamba.data.datasets import load_annotations
from videomamba.data.synthetic import (MOTION_CLASSES, SyntheticConfig, draw_params, generate, load_mask,
                                       paired_action, render)
from videomamba.data.video_io import read_frames

SMALL = SyntheticConfig(train_size=20, val_size=10, seed=3)


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synth"), SMALL, workers=1, progress=False)


def test_layout_and_both_label_sets(dataset_root):
    motion = load_annotations("list", dataset_root / "motion" / "train.txt", root=dataset_root)
    digit = load_annotations("list", dataset_root / "digit" / "train.txt", root=dataset_root)
    assert motion.class_names == MOTION_CLASSES and len(motion.records) == 20
    assert digit.class_names == [str(i) for i in range(10)]
    assert [r.path for r in motion.records] == [r.path for r in digit.records]
    video = read_frames(motion.records[0].path, range(16))
    assert video.shape == (16, 3, 64, 64)
    mask = load_mask(dataset_root, motion.records[0].path)
    assert mask.shape == (16, 64, 64) and mask.any()


def test_same_seed_same_bytes(tmp_path, dataset_root):
    again = generate(tmp_path / "again", SMALL, workers=2, progress=False)
    for name in ("motion/train.txt", "digit/val.txt"):
        assert (again / name).read_bytes() == (dataset_root / name).read_bytes()
    a = read_frames(dataset_root / "videos/train/00004.mp4", range(16))
    b = read_frames(again / "videos/train/00004.mp4", range(16))
    assert hashlib.sha1(a.numpy()).digest() == hashlib.sha1(b.numpy()).digest()
    other = SyntheticConfig(train_size=20, val_size=10, seed=4)
    assert draw_params(other, "train", 4).digit_image != draw_params(SMALL, "train", 4).digit_image or \
        not np.array_equal(draw_params(other, "train", 4).progress, draw_params(SMALL, "train", 4).progress)


@pytest.mark.parametrize("action", range(0, 10, 2))
def test_time_reversal_gives_the_paired_action(action):
    params = draw_params(SMALL, "train", action)
    frames, mask = render(params, SMALL, action=action, distractor=False, noise=False)
    paired, paired_mask = render(params, SMALL, action=paired_action(action), progress=1.0 - params.progress[::-1],
                                 distractor=False, noise=False)
    assert np.array_equal(frames[::-1], paired) and np.array_equal(mask[::-1], paired_mask)
    assert not np.array_equal(frames[0], frames[-1])  # it does move


def test_first_frame_does_not_give_the_label_away():
    """Both actions of a pair pass through the same states, just in the other order."""
    params = draw_params(SMALL, "train", 0)
    right, _ = render(params, SMALL, action=0, progress=np.linspace(0, 1, 16), distractor=False, noise=False)
    left, _ = render(params, SMALL, action=1, progress=np.linspace(0, 1, 16), distractor=False, noise=False)
    assert np.array_equal(right[0], left[-1]) and np.array_equal(right[-1], left[0])
