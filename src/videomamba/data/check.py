"""Validate a dataset before training: every file exists and opens, labels in range, counts per
class, the frame count of each video; bad files go to a skip list that training can take."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from .datasets import Annotations
from .video_io import VideoReadError, num_frames, read_frames


@dataclass
class CheckReport:
    total: int
    good: int
    bad: list[tuple[str, str]] = field(default_factory=list)
    frames: dict[str, int] = field(default_factory=dict)
    counts: list[int] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """Human-readable lines: totals, frame statistics, the classes, the bad files."""
        lines = [f"{self.total} videos, {self.good} readable, {len(self.bad)} bad"]
        if self.frames:
            values = sorted(self.frames.values())
            lines.append(f"frames per video: min {values[0]}, median {values[len(values) // 2]}, max {values[-1]}")
        empty = [name for name, count in zip(self.class_names, self.counts) if count == 0]
        lines.append(f"{len(self.class_names)} classes, videos per class: min {min(self.counts)}, max {max(self.counts)}"
                     + (f"; empty classes: {empty[:10]}" if empty else ""))
        lines += [f"BAD {path}: {reason}" for path, reason in self.bad]
        return "\n".join(lines)


def check_dataset(annotations: Annotations, min_frames: int = 1, decode: bool = True,
                  progress: bool = True) -> CheckReport:
    """Open every video as training will (the same index and decoding path, ``video_io``): count its
    frames and, with ``decode``, read its first, middle and last frame."""
    report = CheckReport(total=len(annotations.records), good=0, counts=annotations.counts(),
                         class_names=list(annotations.class_names))
    for record in tqdm(annotations.records, desc="checking videos", disable=not progress):
        if not 0 <= record.label < len(annotations.class_names):
            report.bad.append((record.path, f"label {record.label} out of range [0, {len(annotations.class_names)})"))
            continue
        try:
            frames = num_frames(record.path)
            if frames < min_frames:
                raise VideoReadError(record.path, f"{frames} frames, fewer than {min_frames}")
            if decode:
                read_frames(record.path, sorted({0, frames // 2, frames - 1}))
                frames = num_frames(record.path)  # a read may have recounted the frames by decoding
        except (VideoReadError, OSError, ValueError) as err:
            report.bad.append((record.path, getattr(err, "reason", str(err))))
            continue
        report.frames[record.path] = frames
        report.good += 1
    return report


def write_skip_list(report: CheckReport, path: str | Path) -> None:
    """One ``path<TAB>reason`` line per bad file (read by ``datasets.read_skip_list``)."""
    Path(path).write_text("".join(f"{p}\t{reason}\n" for p, reason in report.bad))
