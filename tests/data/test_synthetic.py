import dataclasses
import hashlib

import numpy as np
import pytest

from videomamba.data.datasets import load_annotations
from videomamba.data.synthetic import (MOTION_CLASSES, TWO_PHASE_PAIRS, SyntheticConfig, draw_params, flip_label_map,
                                       generate, load_mask, motion_classes, paired_action, render)
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


TWO_PHASE = SyntheticConfig(train_size=48, val_size=10, seed=3, actions="two_phase", distractors=3)


def test_single_setting_unchanged_by_the_two_phase_option():
    """The main job's clips are the same bytes as before the harder setting existed."""
    digest = hashlib.sha1()
    cfg = SyntheticConfig()
    for split in ("train", "val"):
        for index in range(4):
            frames, mask = render(draw_params(cfg, split, index), cfg)
            digest.update(frames.tobytes())
            digest.update(mask.tobytes())
    assert digest.hexdigest() == "5d8b4ce3897df0a7a75776b7108444667e00090b"


@pytest.mark.parametrize("action", [0, 5, 17, 30, 47])
def test_two_phase_time_reversal_gives_the_paired_class(action):
    """Reversed in time, (a then b) is (reversed b then reversed a), with the split point mirrored."""
    params = draw_params(TWO_PHASE, "train", action)
    assert params.action == action and len(params.distractors) == 3
    frames, mask = render(params, TWO_PHASE, distractor=False, noise=False)
    mirrored = dataclasses.replace(params, phase_split=1.0 - params.phase_split)
    paired, paired_mask = render(mirrored, TWO_PHASE, action=paired_action(action, "two_phase"),
                                 progress=1.0 - params.progress[::-1], distractor=False, noise=False)
    assert np.array_equal(frames[::-1], paired) and np.array_equal(mask[::-1], paired_mask)


def test_two_phase_order_decides_the_label():
    """'a then b' and 'b then a' start in different states but pass through the same end state."""
    first, second = TWO_PHASE_PAIRS[0]
    swapped = TWO_PHASE_PAIRS.index((second, first))
    params = draw_params(TWO_PHASE, "train", 0)
    progress = np.linspace(0, 1, 16)
    ab, _ = render(params, TWO_PHASE, action=0, progress=progress, distractor=False, noise=False)
    ba, _ = render(params, TWO_PHASE, action=swapped, progress=progress, distractor=False, noise=False)
    assert np.array_equal(ab[-1], ba[-1]) and np.array_equal(ab[0], ba[0])
    assert not np.array_equal(ab[len(ab) // 2], ba[len(ba) // 2])


def test_two_phase_classes_and_flip_map():
    names = motion_classes("two_phase")
    assert len(names) == 48 == len(set(names))
    mapping = flip_label_map("two_phase")
    swap = {"right": "left", "left": "right", "clockwise": "counter-clockwise", "counter-clockwise": "clockwise"}
    for source, target in mapping.items():
        assert mapping[target] == source
        assert " ".join(swap.get(word.rstrip(","), word.rstrip(",")) for word in names[source].split()) == \
            " ".join(word.rstrip(",") for word in names[target].split())
    assert len(mapping) == 40  # all but the 8 pairs of only vertical moves and zooms
    with pytest.raises(ValueError, match="unknown action set"):
        SyntheticConfig(actions="three_phase")


def test_two_phase_dataset_lists_its_classes(tmp_path):
    from videomamba.cli import main

    root = tmp_path / "hard"
    assert main(["data", "generate", str(root), "--train-size", "4", "--val-size", "2", "--seed", "3",
                 "--actions", "two_phase", "--distractors", "3", "--workers", "1"]) == 0
    motion = load_annotations("list", root / "motion" / "train.txt", root=root)
    assert motion.class_names == motion_classes("two_phase")
    assert [r.label for r in motion.records] == [0, 1, 2, 3]
