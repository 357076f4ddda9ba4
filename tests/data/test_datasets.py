import json

import pytest
import torch

from videomamba.data import BadVideoPolicy, ClipSampling, VideoClipDataset, collate_clips, load_annotations
from videomamba.data.datasets import AnnotationError, read_skip_list

from .helpers import write


def test_list_file_space_and_comma(tmp_path):
    write(tmp_path / "a.mp4", n=4)
    write(tmp_path / "b c.mp4", n=4)
    (tmp_path / "train.txt").write_text("a.mp4 1\nb c.mp4 0\n")
    (tmp_path / "train.csv").write_text("a.mp4,1\nb c.mp4,0\n")
    (tmp_path / "classes.txt").write_text("walk\nrun\n")
    for name in ("train.txt", "train.csv"):
        ann = load_annotations("list", tmp_path / name, root=tmp_path)
        assert [r.label for r in ann.records] == [1, 0]
        assert ann.records[1].path == str(tmp_path / "b c.mp4")
        assert ann.class_names == ["walk", "run"]


@pytest.mark.parametrize("text,reason", [("a.mp4\n", "expected 'path label'"), ("a.mp4 x\n", "not an integer"),
                                         ("a.mp4 0\nb.mp4 -1\n", "out of range")])
def test_malformed_list_line_names_file_and_line(tmp_path, text, reason):
    (tmp_path / "bad.txt").write_text(text)
    with pytest.raises(AnnotationError, match=reason) as info:
        load_annotations("list", tmp_path / "bad.txt")
    line = text.count("\n")
    assert f"bad.txt:{line}" in str(info.value)


def test_list_label_above_num_classes(tmp_path):
    (tmp_path / "l.txt").write_text("a.mp4 5\n")
    with pytest.raises(AnnotationError, match=r"l.txt:1: label 5 out of range \[0, 3\)"):
        load_annotations("list", tmp_path / "l.txt", num_classes=3)


def test_kinetics_csv(tmp_path):
    (tmp_path / "videos" / "riding a bike").mkdir(parents=True)
    write(tmp_path / "videos" / "abseiling_xyz_000010_000020.mp4".replace("abseiling_", ""), n=4)
    write(tmp_path / "videos" / "riding a bike" / "qqq_000001_000011.mp4", n=4)
    (tmp_path / "k.csv").write_text("label,youtube_id,time_start,time_end,split\n"
                                    "abseiling,xyz,10,20,train\nriding a bike,qqq,1,11,train\n")
    ann = load_annotations("kinetics", tmp_path / "k.csv", root=tmp_path / "videos")
    assert ann.class_names == ["abseiling", "riding a bike"]
    assert ann.records[0].path.endswith("xyz_000010_000020.mp4") and ann.records[1].path.endswith(
        "riding a bike/qqq_000001_000011.mp4")
    (tmp_path / "bad.csv").write_text("label,youtube_id,time_start,time_end,split\nx,y,zz,1,train\n")
    with pytest.raises(AnnotationError, match="bad.csv:2"):
        load_annotations("kinetics", tmp_path / "bad.csv", root=tmp_path)


def test_ssv2_json_webm_and_frame_folder(tmp_path):
    (tmp_path / "labels.json").write_text(json.dumps({"Holding something": "0", "Pushing something from left to right": "1"}))
    (tmp_path / "train.json").write_text(json.dumps([
        {"id": "7", "label": "holding a cup", "template": "Holding [something]", "placeholders": ["a cup"]},
        {"id": "8", "label": "pushing", "template": "Pushing [something] from left to right", "placeholders": ["x"]},
    ]))
    write(tmp_path / "7.webm", n=4)
    (tmp_path / "8").mkdir()
    ann = load_annotations("ssv2", tmp_path / "train.json", root=tmp_path)
    assert ann.class_names == ["Holding something", "Pushing something from left to right"]
    assert [r.label for r in ann.records] == [0, 1]
    assert ann.records[0].path.endswith("7.webm") and ann.records[1].path.endswith("/8")
    (tmp_path / "val.json").write_text(json.dumps([{"id": "9", "template": "Dropping [something]"}]))
    with pytest.raises(AnnotationError, match="unknown label 'Dropping something'"):
        load_annotations("ssv2", tmp_path / "val.json", root=tmp_path)


def test_hmdb51_split_files(tmp_path):
    splits = tmp_path / "splits"
    splits.mkdir()
    (splits / "walk_test_split1.txt").write_text("w1.avi 1\nw2.avi 2\nw3.avi 0\n")
    (splits / "clap_test_split1.txt").write_text("c1.avi 1 \nc2.avi 2\n")
    train = load_annotations("hmdb51", splits, root=tmp_path / "videos", split=1, train=True)
    test = load_annotations("hmdb51", splits, root=tmp_path / "videos", split=1, train=False)
    assert train.class_names == ["clap", "walk"]
    assert [(r.path.split("/")[-2:], r.label) for r in train.records] == [(["clap", "c1.avi"], 0), (["walk", "w1.avi"], 1)]
    assert len(test.records) == 2
    (splits / "run_test_split1.txt").write_text("r1.avi 5\n")
    with pytest.raises(AnnotationError, match="run_test_split1.txt:1"):
        load_annotations("hmdb51", splits, root=tmp_path)


def test_class_folders(tmp_path):
    for name in ("b_class", "a_class"):
        (tmp_path / name).mkdir()
        write(tmp_path / name / "v.mp4", n=4)
    (tmp_path / "a_class" / "notes.txt").write_text("not a video")
    ann = load_annotations("folder", tmp_path)
    assert ann.class_names == ["a_class", "b_class"] and [r.label for r in ann.records] == [0, 1]


def _dataset(tmp_path, lines, policy=None, train=True):
    (tmp_path / "list.txt").write_text(lines)
    ann = load_annotations("list", tmp_path / "list.txt", root=tmp_path)
    sampling = ClipSampling(clip_len=4, stride=1)
    return VideoClipDataset(ann, sampling, None, train=train, policy=policy)


def test_bad_videos_are_skipped_counted_and_named(tmp_path):
    write(tmp_path / "good.mp4", n=8)
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "junk.mp4").write_bytes(b"junk" * 100)
    dataset = _dataset(tmp_path, "empty.mp4 0\njunk.mp4 1\nmissing.mp4 0\ngood.mp4 1\n")
    batch = collate_clips([dataset[i] for i in range(len(dataset))])
    assert (batch["label"] == 1).all() and (batch["index"] == 3).all()  # every item fell back to good.mp4
    named = {s.split(":")[0] for s in batch["skipped"]}
    assert named == {str(tmp_path / n) for n in ("empty.mp4", "junk.mp4", "missing.mp4")}
    assert batch["video"].shape == (4, 3, 4, 32, 48)


def test_pad_policy_and_skip_list(tmp_path):
    write(tmp_path / "good.mp4", n=8)
    (tmp_path / "skip.tsv").write_text(f"{tmp_path / 'junk.mp4'}\tcannot open\n")
    assert read_skip_list(tmp_path / "skip.tsv") == {str(tmp_path / "junk.mp4")}
    dataset = _dataset(tmp_path, "junk.mp4 0\ngood.mp4 1\n",
                       policy=BadVideoPolicy(skip=read_skip_list(tmp_path / "skip.tsv")))
    assert len(dataset) == 1

    from videomamba.data.transforms import ClipTransform

    (tmp_path / "list2.txt").write_text("junk.mp4 0\n")
    (tmp_path / "junk.mp4").write_bytes(b"junk")
    ann = load_annotations("list", tmp_path / "list2.txt", root=tmp_path)
    padded = VideoClipDataset(ann, ClipSampling(clip_len=4, stride=1), ClipTransform(16, train=True),
                              train=True, policy=BadVideoPolicy(on_error="pad"))
    item = padded[0]
    assert item["label"] == -1 and item["video"].shape == (3, 4, 16, 16) and len(item["skipped"]) == 1


def test_item_randomness_is_deterministic_per_epoch(tmp_path):
    write(tmp_path / "good.mp4", n=30)
    dataset = _dataset(tmp_path, "good.mp4 0\n")
    first = dataset[0]["video"]
    assert torch.equal(first, dataset[0]["video"])
    dataset.set_epoch(1)
    others = []
    for epoch in range(1, 6):
        dataset.set_epoch(epoch)
        others.append(dataset[0]["video"])
    assert any(not torch.equal(first, other) for other in others)  # new epoch, new start frame


def test_list_file_bom_hash_paths_and_commas(tmp_path):
    """A UTF-8 byte-order mark is not part of the first path; a path that starts with '#' is a path
    when the line ends in a label (a '#' line without one is a comment); a space-separated path may
    hold commas, a comma-separated one spaces."""
    (tmp_path / "train.txt").write_bytes("\ufeffa.mp4 0\n# a comment\n#take2.mp4 1\nx,y.mp4 2\nb c.mp4,1\n".encode())
    ann = load_annotations("list", tmp_path / "train.txt", root=tmp_path)
    assert [(r.path, r.label) for r in ann.records] == [(str(tmp_path / "a.mp4"), 0), (str(tmp_path / "#take2.mp4"), 1),
                                                        (str(tmp_path / "x,y.mp4"), 2), (str(tmp_path / "b c.mp4"), 1)]


def test_skip_list_matches_whatever_way_the_root_was_written(tmp_path, monkeypatch):
    """``data check`` with a relative root writes relative paths; training with an absolute root (or
    the other way round) still skips them: paths are compared normalised, not as strings."""
    from videomamba.data.datasets import BadVideoPolicy, ClipSampling, VideoClipDataset, read_skip_list

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "list.txt").write_text("good.mp4 0\nbad.mp4 1\n")
    (tmp_path / "skip.tsv").write_text("\ufeffdata/./bad.mp4\tcannot open\n")
    skip = read_skip_list(tmp_path / "skip.tsv")
    for root in ("data", str(tmp_path / "data"), "./data/"):
        ann = load_annotations("list", tmp_path / "list.txt", root=root)
        dataset = VideoClipDataset(ann, ClipSampling(), None, train=False, policy=BadVideoPolicy(skip=skip))
        assert [r.path.rsplit("/", 1)[-1] for r in dataset.records] == ["good.mp4"], root
