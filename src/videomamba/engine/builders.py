"""From a RunConfig to the model and the data loaders."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler

from ..data import BadVideoPolicy, ClipSampling, ClipTransform, VideoClipDataset, collate_clips, load_annotations
from ..data.datasets import read_skip_list
from ..models import VideoMamba, create_model
from .config import RunConfig
from .distributed import DistInfo


def ensure_synthetic(config: RunConfig, info: DistInfo) -> None:
    """Generate the built-in dataset under data.root if the config asks for it and it is absent."""
    if not config.data.synthetic:
        return
    from ..data.synthetic import SyntheticConfig, generate

    cfg = SyntheticConfig(train_size=config.data.synthetic_train_size, val_size=config.data.synthetic_val_size,
                          frames=max(16, config.data.clip_len), size=64, seed=0)
    if info.is_main:
        generate(config.data.root, cfg)
    if info.enabled:
        torch.distributed.barrier()


def annotations(config: RunConfig, split: str):
    """The annotations of ``split`` ('train' or 'val'); the files the layout left out are reported,
    one line each, to stderr."""
    data = config.data
    result = load_annotations(data.format, getattr(data, split), data.root, split=data.hmdb_split,
                              train=split == "train",
                              video_suffixes=tuple(data.video_suffixes) if data.video_suffixes else None)
    if result.left_out:
        print(f"{result.source}: {len(result.left_out)} files left out of the {split} split:\n  "
              + "\n  ".join(f"{path}: {why}" for path, why in result.left_out), file=sys.stderr)
    return result


def build_model(config: RunConfig, num_classes: int, class_names: list[str] | None) -> VideoMamba:
    """The model of the config (num_classes from the data), with ``model.init`` weights if given."""
    overrides = dict(config.model.overrides)
    overrides.setdefault("num_frames", config.data.clip_len)
    overrides.setdefault("img_size", config.data.img_size)
    overrides.setdefault("drop_path_rate", config.train.drop_path)
    overrides["num_classes"] = num_classes
    overrides["class_names"] = class_names
    model = create_model(config.model.name, **overrides)
    if config.model.init:
        from ..models.convert import load_init

        load_init(model, config.model.init, keep_head=config.model.init_keep_head)
    return model


def sampling(config: RunConfig) -> ClipSampling:
    data = config.data
    return ClipSampling(mode=data.sampling, clip_len=data.clip_len, stride=data.stride, short=data.short,
                        test_clips=data.test_clips, short_side=data.short_side, backend=data.backend)


def build_dataset(config: RunConfig, split: str, train: bool) -> VideoClipDataset:
    data = config.data
    transform = ClipTransform(data.img_size, train=train, scale=tuple(data.scale), flip=data.flip,
                              randaugment=data.randaugment, randaug_ops=data.randaug_ops,
                              randaug_magnitude=data.randaug_magnitude, erase_prob=data.erase_prob,
                              test_crops=data.test_crops, test_short_side=data.test_short_side)
    policy = BadVideoPolicy(on_error=data.on_error, skip=read_skip_list(data.skip_list))
    return VideoClipDataset(annotations(config, split), sampling(config), transform, train=train, policy=policy,
                            seed=config.train.seed, flip_label_map={int(k): int(v) for k, v in data.flip_label_map.items()})


def build_loader(dataset: VideoClipDataset, batch: int, info: DistInfo, train: bool, workers: int,
                 seed: int) -> tuple[DataLoader, DistributedSampler]:
    """A loader over a DistributedSampler (also with one process: its order is a pure function of
    seed and epoch, which is what exact resumption needs)."""
    sampler = DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=train, seed=seed,
                                 drop_last=train)
    loader = DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers, collate_fn=collate_clips,
                        drop_last=train, pin_memory=info.device.type == "cuda",
                        persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
                        generator=torch.Generator().manual_seed(seed))  # worker seeds: not the global RNG
    return loader, sampler


class SkipFirst(torch.utils.data.Sampler):
    """A sampler that leaves out the first ``skip`` indices of another (resuming mid-epoch)."""

    def __init__(self, sampler, skip: int):
        self.sampler, self.skip = sampler, skip

    def __iter__(self):
        for position, index in enumerate(self.sampler):
            if position >= self.skip:
                yield index

    def __len__(self):
        return max(len(self.sampler) - self.skip, 0)


def run_dir(config: RunConfig) -> Path:
    path = Path(config.train.output)
    path.mkdir(parents=True, exist_ok=True)
    return path

