"""Data: decoding (PyAV), the dataset formats, sampling, v2 transforms and the built-in dataset."""

from .datasets import (Annotations, BadVideoPolicy, ClipSampling, VideoClipDataset, collate_clips,
                       load_annotations, read_skip_list)
from .transforms import ClipTransform, SoftTargets
from .video_io import VideoReadError, read_frames

__all__ = ["Annotations", "BadVideoPolicy", "ClipSampling", "VideoClipDataset", "collate_clips",
           "load_annotations", "read_skip_list", "ClipTransform", "SoftTargets", "VideoReadError", "read_frames"]
