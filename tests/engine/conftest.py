from pathlib import Path

import pytest
import yaml

from videomamba.data.synthetic import SyntheticConfig, generate


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A small built-in dataset: 48 training and 15 validation clips of 16 frames at 64x64."""
    return generate(tmp_path_factory.mktemp("tiny_data"), SyntheticConfig(train_size=48, val_size=15, seed=1),
                    workers=1, progress=False)


def tiny_config(data_root: Path, output: Path, **sections) -> dict:
    """A run config small enough for a few seconds of CPU per epoch."""
    config = {
        "model": {"name": "videomamba_nano", "embed_dim": 32, "depth": 2},
        "data": {"format": "list", "root": str(data_root), "train": str(data_root / "motion/train.txt"),
                 "val": str(data_root / "motion/val.txt"), "clip_len": 8, "stride": 2, "img_size": 32,
                 "randaugment": "timm", "erase_prob": 0.25, "num_workers": 0, "scale": [0.5, 1.0]},
        "optim": {"lr": 1e-3, "epochs": 2, "warmup_epochs": 0.5},
        "train": {"batch_size": 4, "drop_path": 0.1, "output": str(output), "eval_every_epochs": 0, "log_every": 1,
                  "threads": 1},
    }
    for name, values in sections.items():
        config[name].update(values)
    return config


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path
