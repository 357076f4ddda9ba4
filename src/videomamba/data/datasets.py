"""The dataset layouts people have, read into one list of (path, label) records, and the clip dataset.

Formats (``format=``):
  ``list``     lines ``path label`` or ``path,label`` (VideoMAE/UMT lists for K400, SSV2, HMDB51),
               paths relative to ``root``; class names from a ``classes.txt`` beside the list if
               present (one per line, line i = label i), else ``class_<i>``.
  ``kinetics`` the Kinetics CSV ``label,youtube_id,time_start,time_end,split`` over clips named
               ``{youtube_id}_{start:06d}_{end:06d}.mp4`` under ``root`` (or ``root/<label>/``);
               classes: sorted label names.
  ``ssv2``     SSV2's official JSON: ``labels.json`` (template -> id, beside the split file) and the
               split list (``[{"id", "template", ...}]``); templates have ``[something]`` -> ``something``;
               videos ``root/<id>.webm`` or frame folders ``root/<id>/``; classes in labels.json order.
  ``hmdb51``   the official split files ``<class>_test_split{N}.txt`` (1 train, 2 test, 0 unused) in
               ``annotations`` (a folder) over ``root/<class>/<video>.avi``; classes: sorted names.
  ``folder``   ``root/<class_name>/<video file or frame folder>``; classes: sorted folder names.
               Every container FFmpeg reads is taken by its suffix (``VIDEO_SUFFIXES``; ``suffixes=``
               / ``data.video_suffixes`` to choose); other files are left out and listed with the
               reason in ``Annotations.left_out``.
Class names are stable and documented, and travel with the model's config. List files may start with
a UTF-8 byte-order mark; a line is a comment when it starts with ``#`` and does not end in a label.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .sampling import dense_indices, segment_indices
from .video_io import IMAGE_SUFFIXES, VideoReadError, num_frames, read_frames

# Containers FFmpeg reads that hold video (images are frames of frame folders, not videos).
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".mpg", ".mpeg", ".m2v", ".m1v", ".vob", ".ts",
                  ".mts", ".m2ts", ".gif", ".flv", ".f4v", ".wmv", ".asf", ".3gp", ".3g2", ".ogv", ".ogg", ".mxf",
                  ".dv", ".nut", ".y4m", ".h264", ".264", ".h265", ".265", ".hevc", ".ivf", ".rm", ".rmvb", ".divx")
FORMATS = ("list", "kinetics", "ssv2", "hmdb51", "folder")


class AnnotationError(ValueError):
    """A malformed annotation: names the file, the line and what is wrong."""

    def __init__(self, path, line: int | None, reason: str):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {reason}")


@dataclass
class VideoRecord:
    path: str
    label: int


@dataclass
class Annotations:
    """The (path, label) records of a split, its class names, where they came from, and the files of
    the layout that were left out, with the reason (``(path, reason)``)."""

    records: list[VideoRecord]
    class_names: list[str]
    source: str = ""
    left_out: list[tuple[str, str]] = field(default_factory=list)

    def counts(self) -> list[int]:
        """Number of videos per class."""
        counts = [0] * len(self.class_names)
        for record in self.records:
            counts[record.label] += 1
        return counts


def _class_names_beside(list_file: Path, num_labels: int) -> list[str]:
    names_file = list_file.with_name("classes.txt")
    if names_file.is_file():
        names = [line.strip() for line in read_text_lines(names_file) if line.strip()]
        if len(names) < num_labels:
            raise AnnotationError(names_file, None, f"{len(names)} class names, but labels go up to {num_labels - 1}")
        return names
    return [f"class_{i}" for i in range(num_labels)]


_SPACE_LINE = re.compile(r"(.+?)\s+(-?\d+)")
_COMMA_LINE = re.compile(r"(.+),\s*(-?\d+)")


def parse_list_line(line: str) -> tuple[str, str] | None:
    """(path, label) of a ``path,label`` or ``path label`` line, or None if it ends in no label.
    The comma form is tried first; a space-separated path may contain commas (``a,b.mp4 3``) and
    a comma-separated one spaces (``a b.mp4,3``)."""
    match = _COMMA_LINE.fullmatch(line) or _SPACE_LINE.fullmatch(line)
    return (match.group(1).strip(), match.group(2)) if match else None


def read_text_lines(path: Path) -> list[str]:
    """A text file's lines, a UTF-8 byte-order mark at its start removed."""
    return path.read_text(encoding="utf-8-sig").splitlines()


def read_list_file(list_file: str | Path, root: str | Path = "", num_classes: int | None = None) -> Annotations:
    """``path label`` or ``path,label`` lines; a path may contain spaces or commas (the label is the
    last field). Blank lines and ``#`` lines without a label are skipped."""
    list_file = Path(list_file)
    if not list_file.is_file():
        raise AnnotationError(list_file, None, "annotation file does not exist")
    records = []
    for number, line in enumerate(read_text_lines(list_file), start=1):
        line = line.strip()
        if not line:
            continue
        parts = parse_list_line(line)
        if parts is None:
            if line.startswith("#"):
                continue
            raise AnnotationError(list_file, number, f"expected 'path label' or 'path,label' (label missing or "
                                                     f"not an integer), got {line!r}")
        path, label = parts
        label = int(label)
        if label < 0 or (num_classes is not None and label >= num_classes):
            raise AnnotationError(list_file, number, f"label {label} out of range [0, {num_classes})")
        records.append(VideoRecord(str(Path(root) / path), label))
    if not records:
        raise AnnotationError(list_file, None, "no annotation lines")
    num_labels = max(r.label for r in records) + 1
    names = _class_names_beside(list_file, num_classes or num_labels)
    return Annotations(records, names, str(list_file))


def read_kinetics_csv(csv_file: str | Path, root: str | Path, class_names: list[str] | None = None) -> Annotations:
    """Kinetics' CSV; clips ``{youtube_id}_{start:06d}_{end:06d}.mp4`` in root or root/<label>/."""
    csv_file = Path(csv_file)
    if not csv_file.is_file():
        raise AnnotationError(csv_file, None, "annotation file does not exist")
    rows = []
    with csv_file.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        required = {"label", "youtube_id", "time_start", "time_end"}
        if not reader.fieldnames or not required <= set(reader.fieldnames):
            raise AnnotationError(csv_file, 1, f"header must contain {sorted(required)}, got {reader.fieldnames}")
        for number, row in enumerate(reader, start=2):
            try:
                start, end = int(float(row["time_start"])), int(float(row["time_end"]))
            except (TypeError, ValueError):
                raise AnnotationError(csv_file, number, f"time_start/time_end not numbers: {row}") from None
            if not row["label"] or not row["youtube_id"]:
                raise AnnotationError(csv_file, number, "empty label or youtube_id")
            rows.append((number, row["label"], f"{row['youtube_id']}_{start:06d}_{end:06d}.mp4"))
    names = class_names or sorted({label for _, label, _ in rows})
    lookup = {name: i for i, name in enumerate(names)}
    records = []
    for number, label, name in rows:
        if label not in lookup:
            raise AnnotationError(csv_file, number, f"unknown label {label!r}")
        nested = Path(root) / label / name
        records.append(VideoRecord(str(nested if nested.exists() else Path(root) / name), lookup[label]))
    return Annotations(records, names, str(csv_file))


def normalise_ssv2_template(template: str) -> str:
    """'Putting [something] into [something]' -> 'Putting something into something'."""
    return template.replace("[", "").replace("]", "")


def read_ssv2_json(split_json: str | Path, root: str | Path, labels_json: str | Path | None = None) -> Annotations:
    """SSV2's official split list and labels.json; videos root/<id>.webm or frame folders root/<id>/."""
    split_json = Path(split_json)
    labels_json = Path(labels_json) if labels_json else split_json.with_name("labels.json")
    for path in (split_json, labels_json):
        if not path.is_file():
            raise AnnotationError(path, None, "annotation file does not exist")
    try:
        labels = json.loads(labels_json.read_text(encoding="utf-8-sig"))
        entries = json.loads(split_json.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as err:
        raise AnnotationError(err.doc and split_json, err.lineno, f"invalid JSON: {err.msg}") from None
    ordered = sorted(labels.items(), key=lambda kv: int(kv[1]))
    names = [normalise_ssv2_template(name) for name, _ in ordered]
    lookup = {normalise_ssv2_template(name): int(i) for name, i in ordered}
    records = []
    for position, entry in enumerate(entries):
        if "id" not in entry or "template" not in entry:
            raise AnnotationError(split_json, None, f"entry {position} lacks 'id' or 'template': {entry}")
        template = normalise_ssv2_template(entry["template"])
        if template not in lookup:
            raise AnnotationError(split_json, None, f"entry {position} (id {entry['id']}): unknown label {template!r}")
        folder = Path(root) / str(entry["id"])
        path = folder if folder.is_dir() else Path(root) / f"{entry['id']}.webm"
        records.append(VideoRecord(str(path), lookup[template]))
    return Annotations(records, names, str(split_json))


def read_hmdb51_splits(split_dir: str | Path, root: str | Path, split: int = 1, train: bool = True) -> Annotations:
    """HMDB51's ``<class>_test_split{split}.txt`` files: tag 1 = train, 2 = test, 0 = unused."""
    split_dir = Path(split_dir)
    files = sorted(split_dir.glob(f"*_test_split{split}.txt"))
    if not files:
        raise AnnotationError(split_dir, None, f"no '*_test_split{split}.txt' files")
    names = sorted(f.name[: -len(f"_test_split{split}.txt")] for f in files)
    lookup = {name: i for i, name in enumerate(names)}
    wanted_tag = "1" if train else "2"
    records = []
    for file in files:
        name = file.name[: -len(f"_test_split{split}.txt")]
        for number, line in enumerate(read_text_lines(file), start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise AnnotationError(file, number, f"expected '<video> <0|1|2>', got {line.strip()!r}")
            if parts[1] == wanted_tag:
                records.append(VideoRecord(str(Path(root) / name / parts[0]), lookup[name]))
    return Annotations(records, names, str(split_dir))


def read_folder(root: str | Path, suffixes: tuple[str, ...] | None = None) -> Annotations:
    """``root/<class>/<video file or frame folder>``, classes in sorted order (like ImageFolder).

    Video files are taken by suffix (``suffixes``, default ``VIDEO_SUFFIXES``, case-insensitive);
    anything else in a class folder is listed in ``left_out`` with the reason."""
    root = Path(root)
    if not root.is_dir():
        raise AnnotationError(root, None, "dataset folder does not exist")
    names = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not names:
        raise AnnotationError(root, None, "no class folders")
    wanted = tuple(s.lower() if s.startswith(".") else f".{s.lower()}" for s in (suffixes or VIDEO_SUFFIXES))
    records, left_out = [], []
    for label, name in enumerate(names):
        for item in sorted((root / name).iterdir()):
            if item.is_dir():
                if any(p.suffix.lower() in IMAGE_SUFFIXES for p in item.iterdir()):
                    records.append(VideoRecord(str(item), label))
                else:
                    left_out.append((str(item), "a folder without image files (not a frame folder)"))
            elif item.suffix.lower() in wanted:
                records.append(VideoRecord(str(item), label))
            elif item.name.startswith("."):
                continue  # hidden files (.DS_Store and the like)
            else:
                why = ("an image, not a video (put a clip's frames in a folder of their own)"
                       if item.suffix.lower() in IMAGE_SUFFIXES else
                       f"suffix {item.suffix or '(none)'!r} is not a video container here "
                       f"(data.video_suffixes lists the ones to take)")
                left_out.append((str(item), why))
    return Annotations(records, names, str(root), left_out)


def load_annotations(format: str, annotations: str | Path, root: str | Path = "", *, split: int = 1,
                     train: bool = True, num_classes: int | None = None,
                     class_names: list[str] | None = None, video_suffixes: tuple[str, ...] | None = None) -> Annotations:
    """Read any supported layout (see the module docstring) into ``Annotations``."""
    if format == "list":
        result = read_list_file(annotations, root, num_classes)
    elif format == "kinetics":
        result = read_kinetics_csv(annotations, root, class_names)
    elif format == "ssv2":
        result = read_ssv2_json(annotations, root)
    elif format == "hmdb51":
        result = read_hmdb51_splits(annotations, root, split, train)
    elif format == "folder":
        result = read_folder(annotations, video_suffixes)
    else:
        raise ValueError(f"unknown dataset format {format!r}; choose from {FORMATS}")
    if class_names is not None and format == "list":
        result.class_names = list(class_names)
    return result


def normalise_path(path: str | Path) -> str:
    """An absolute, normalised form of ``path`` (relative paths against the working directory), so that
    a path written one way matches the same file written another."""
    return os.path.normpath(os.path.abspath(os.fspath(path)))


def read_skip_list(path: str | Path | None) -> set[str]:
    """Paths listed (first tab-separated field) in a skip list written by ``videomamba data check``,
    normalised (``normalise_path``); blank lines ignored, a byte-order mark removed."""
    if not path:
        return set()
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(path, None, "skip list does not exist")
    return {normalise_path(line.split("\t")[0]) for line in read_text_lines(path) if line.strip()}


@dataclass
class ClipSampling:
    """How a clip is read: ``mode`` dense or segment, ``clip_len`` frames, dense ``stride``, the
    short-video policy, the test layout (``test_clips`` temporal clips), and decoding options."""

    mode: str = "dense"
    clip_len: int = 16
    stride: int = 2
    short: str = "loop"
    test_clips: int = 1
    short_side: int | None = None
    backend: str = "pyav"

    def indices(self, frames: int, train: bool, rng: np.random.Generator) -> np.ndarray:
        if self.mode == "dense":
            return dense_indices(frames, self.clip_len, self.stride, train=train, num_clips=self.test_clips,
                                 rng=rng, short=self.short)
        if self.mode == "segment":
            return segment_indices(frames, self.clip_len, train=train, num_clips=self.test_clips, rng=rng,
                                   short=self.short)
        raise ValueError(f"unknown sampling mode {self.mode!r}; choose 'dense' or 'segment'")


@dataclass
class BadVideoPolicy:
    """What a bad video does: ``resample`` another index (default) or ``pad`` with a zero clip
    (label -1 so that losses and metrics ignore it); ``max_tries`` bounds the resampling."""

    on_error: str = "resample"
    max_tries: int = 20
    skip: set[str] = field(default_factory=set)


class VideoClipDataset(Dataset):
    """Clips of the videos in ``annotations``.

    Each item is a dict: ``video`` (C, T, H, W) float in training, (V, C, T, H, W) at test (V =
    temporal clips x spatial crops), ``label``, ``index`` (of the record actually read) and
    ``skipped``: the "path: reason" of every bad file met on the way, so that the training loop
    can count and report them (loader workers are separate processes). A bad file never raises.
    ``flip_label_map`` swaps left/right classes when the transform flipped the clip.
    """

    def __init__(self, annotations: Annotations, sampling: ClipSampling, transform, *, train: bool,
                 policy: BadVideoPolicy | None = None, seed: int = 0, flip_label_map: dict[int, int] | None = None):
        self.annotations = annotations
        self.policy = policy or BadVideoPolicy()
        skip = {normalise_path(p) for p in self.policy.skip}
        self.records = [r for r in annotations.records if normalise_path(r.path) not in skip]
        if not self.records:
            raise ValueError(f"{annotations.source}: no videos left after the skip list")
        self.sampling, self.transform, self.train, self.seed = sampling, transform, train, seed
        self.flip_label_map = flip_label_map or {}
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.records)

    @property
    def class_names(self) -> list[str]:
        return self.annotations.class_names

    def set_epoch(self, epoch: int) -> None:
        """Reseed the per-item randomness (frame sampling) for ``epoch``."""
        self.epoch = epoch

    def _rng(self, index: int, attempt: int) -> np.random.Generator:
        # Deterministic per (seed, epoch, index, attempt), whatever worker reads the item, so a
        # resumed run samples exactly the frames an uninterrupted one would.
        return np.random.default_rng([self.seed, self.epoch, index, attempt])

    def read_clip(self, index: int, rng: np.random.Generator) -> torch.Tensor:
        """uint8 frames (N, T, C, H, W) for the N temporal clips of record ``index``."""
        record = self.records[index]
        frames = num_frames(record.path)
        indices = self.sampling.indices(frames, self.train, rng)
        flat = read_frames(record.path, indices.reshape(-1), self.sampling.short_side, self.sampling.backend)
        return flat.view(indices.shape[0], indices.shape[1], *flat.shape[1:])

    def __getitem__(self, index: int) -> dict:
        skipped = []
        current = index
        for attempt in range(self.policy.max_tries):
            rng = self._rng(current, attempt)
            try:
                clips = self.read_clip(current, rng)
            except (VideoReadError, ValueError, OSError) as err:
                skipped.append(f"{self.records[current].path}: {getattr(err, 'reason', err)}")
                if self.policy.on_error == "pad":
                    break
                current = int(rng.integers(len(self.records)))
                continue
            if self.transform is not None:
                video, flipped = self.transform(clips, rng)
            else:
                video, flipped = clips.permute(0, 2, 1, 3, 4).float(), False
            label = self.records[current].label
            if flipped:
                label = self.flip_label_map.get(label, label)
            if self.train:
                video = video[0]
            return {"video": video, "label": label, "index": current, "skipped": skipped}
        shape_source = self.transform.output_shape(self.sampling) if self.transform else None
        if shape_source is None:
            raise RuntimeError(f"{len(skipped)} bad videos in a row, the last: {skipped[-1]}")
        video = torch.zeros(shape_source if not self.train else shape_source[1:])
        return {"video": video, "label": -1, "index": index, "skipped": skipped}


def collate_clips(batch: list[dict]) -> dict:
    """Stack videos and labels; concatenate the skipped-file reports."""
    return {
        "video": torch.stack([item["video"] for item in batch]),
        "label": torch.tensor([item["label"] for item in batch], dtype=torch.long),
        "index": torch.tensor([item["index"] for item in batch], dtype=torch.long),
        "skipped": [s for item in batch for s in item["skipped"]],
    }
