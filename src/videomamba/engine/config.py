"""Run configuration: dataclasses with the paper's defaults, YAML files over them, ``key=value`` over those.

One source of truth per default: the dataclasses below (and ``VideoMambaConfig`` for the model).
A YAML file sets any subset; the command line sets ``section.key=value`` (values parsed as YAML).
Unknown keys, values of the wrong type and missing dataset paths are reported before any work.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..models.videomamba import VideoMambaConfig


@dataclass
class ModelSection:
    """``name`` of a registered size, ``init`` weights (an image or video checkpoint) and any
    ``VideoMambaConfig`` field as an override (num_frames, img_size, scan_order, pos_embed, ...)."""

    name: str = "videomamba_small"
    init: str | None = None
    init_keep_head: bool = True  # keep the init file's classifier where its class count fits
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataSection:
    """Where the videos are and how clips are made (see ``videomamba.data``)."""

    format: str = "list"  # list | kinetics | ssv2 | hmdb51 | folder
    train: str | None = None  # annotations of the training split
    val: str | None = None  # annotations of the evaluation split
    root: str = ""  # prefix of the video paths
    hmdb_split: int = 1
    synthetic: bool = False  # generate the built-in dataset under root if it is absent
    synthetic_train_size: int = 1600
    synthetic_val_size: int = 400
    sampling: str = "dense"  # dense | segment
    clip_len: int = 16
    stride: int = 2
    short: str = "loop"  # loop | repeat_last
    img_size: int = 224
    short_side: int | None = None  # decode at this short side (None: as stored)
    test_clips: int = 1
    test_crops: int = 1
    test_short_side: int | None = None
    scale: list[float] = field(default_factory=lambda: [0.08, 1.0])  # RandomResizedCrop (VideoMAE)
    flip: bool = True
    flip_label_map: dict[int, int] = field(default_factory=dict)  # classes a horizontal flip swaps
    randaugment: str | None = "timm"  # timm | torchvision | null
    randaug_ops: int = 4
    randaug_magnitude: float = 7.0
    erase_prob: float = 0.25
    num_workers: int = 2
    skip_list: str | None = None
    # folder layout: the file suffixes taken as videos (None: every container FFmpeg reads, VIDEO_SUFFIXES)
    video_suffixes: list[str] | None = None
    on_error: str = "resample"  # resample | pad
    backend: str = "pyav"  # pyav | torchcodec


@dataclass
class OptimSection:
    """AdamW with linear warm-up then cosine decay (the paper: lr 3e-4, batch 64)."""

    lr: float = 3e-4
    min_lr: float = 1e-6
    warmup_lr: float = 1e-6
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    epochs: int = 30
    warmup_epochs: float = 1.0
    layer_decay: float = 1.0  # 1.0 = off; < 1 scales lr by decay**(depth - layer)
    clip_grad: float | None = None


@dataclass
class TrainSection:
    """Batching, regularisation, precision, checkpointing and logging."""

    batch_size: int = 64  # global effective batch: micro_batch x processes x accumulation
    micro_batch: int | None = None  # per process per forward; None = batch_size / processes
    label_smoothing: float = 0.1
    mixup: float = 0.0
    cutmix: float = 0.0
    mix_prob: float = 1.0
    drop_path: float = 0.1
    ema: bool = False
    ema_decay: float = 0.9998
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | bf16 | fp32
    grad_checkpointing: bool | int = False  # True: recompute every block in the backward; N: the first N
    # keep a block's cheap activations (in_proj and conv outputs, Δ, the gated scan output) out of memory
    # and recompute them in the backward, as mamba_ssm's checkpoint levels do; gradients are bit for bit
    recompute_activations: bool = False
    compile: bool = False
    # torch.compile's mode with compile: "reduce-overhead" captures CUDA graphs, which takes the host's
    # Python and launch time off the step (on an H100 the 32-frame videomamba_small step went from
    # host-bound 146-169 ms eager to 141 ms; docs/benchmarks.md)
    compile_mode: str = "default"  # default | reduce-overhead | max-autotune | max-autotune-no-cudagraphs
    seed: int = 0
    output: str = "runs/default"
    save_every_steps: int = 0  # 0 = only at epoch ends
    eval_every_epochs: int = 1  # 0 = only at the end
    log_every: int = 10
    max_steps: int | None = None  # end training after this many optimizer steps (tests, smoke runs)
    shuffle_check: bool = False  # after training, accuracy under the frame-shuffle orders
    threads: int | None = None  # torch CPU threads (None: torch's default)


@dataclass
class RunConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    train: TrainSection = field(default_factory=TrainSection)

    def to_dict(self) -> dict:
        """Plain Python (for checkpoints and logs)."""
        return dataclasses.asdict(self)


class ConfigError(ValueError):
    """A configuration problem, found before any work starts."""


def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple):
        args = typing.get_args(hint)
        return isinstance(value, (list, tuple)) and all(_type_ok(v, args[0]) for v in value) if args else True
    if origin is dict:
        key_type, value_type = typing.get_args(hint)
        return isinstance(value, dict) and all(_type_ok(k, key_type) and _type_ok(v, value_type) for k, v in value.items())
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def _numeric(value: Any, hint: Any) -> Any:
    """PyYAML reads '3e-4' (no dot) as a string (YAML 1.1): take it as the number it is."""
    if isinstance(value, str) and _type_ok(1.0, hint) and not _type_ok(value, hint):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _apply(section: Any, key: str, value: Any, where: str) -> None:
    hints = typing.get_type_hints(type(section))
    if key not in hints:
        raise ConfigError(f"{where}: unknown key '{key}'; known keys: {sorted(hints)}")
    value = _numeric(value, hints[key])
    if not _type_ok(value, hints[key]):
        raise ConfigError(f"{where}: '{key}' must be {_describe(hints[key])}, got {value!r} ({type(value).__name__})")
    if hints[key] is float or (typing.get_origin(hints[key]) in (typing.Union, types.UnionType) and float in typing.get_args(hints[key]) and isinstance(value, int)):
        value = float(value) if value is not None else None
    setattr(section, key, value)


def _apply_model(section: ModelSection, key: str, value: Any, where: str) -> None:
    if key in ("name", "init"):
        _apply(section, key, value, where)
        return
    if key == "overrides":
        for k, v in (value or {}).items():
            _apply_model(section, k, v, where)
        return
    hints = typing.get_type_hints(VideoMambaConfig)
    if key not in hints:
        raise ConfigError(f"{where}: unknown model key '{key}'; known: name, init, {sorted(hints)}")
    temporal_only = key == "tubelet" and isinstance(value, int)  # an int sets the temporal extent
    if not temporal_only and not _type_ok(value, hints[key]):
        raise ConfigError(f"{where}: model '{key}' must be {_describe(hints[key])}, got {value!r}")
    section.overrides[key] = value


def _merge(config: RunConfig, values: dict, where: str) -> None:
    for name, content in values.items():
        if name not in ("model", "data", "optim", "train"):
            raise ConfigError(f"{where}: unknown section '{name}'; sections: model, data, optim, train")
        if not isinstance(content, dict):
            raise ConfigError(f"{where}: section '{name}' must be a mapping, got {type(content).__name__}")
        section = getattr(config, name)
        for key, value in content.items():
            (_apply_model if name == "model" else _apply)(section, key, value, f"{where}: {name}")


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> RunConfig:
    """The run config from defaults, then the YAML file, then ``section.key=value`` overrides."""
    config = RunConfig()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file does not exist")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: invalid YAML: {err}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: top level must be a mapping of sections")
        _merge(config, values, str(path))
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"override {item!r}: expected section.key=value, e.g. optim.lr=1e-3")
        dotted, raw = item.split("=", 1)
        section, key = dotted.split(".", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        _merge(config, {section: {key: value}}, f"override {item!r}")
    return config


def validate(config: RunConfig, need_train: bool = True) -> None:
    """Check choices and paths before any work starts (raises ConfigError naming the problem)."""
    data = config.data
    choices = {"format": ("list", "kinetics", "ssv2", "hmdb51", "folder"), "sampling": ("dense", "segment"),
               "short": ("loop", "repeat_last"), "on_error": ("resample", "pad"), "backend": ("pyav", "torchcodec")}
    for key, allowed in choices.items():
        if getattr(data, key) not in allowed:
            raise ConfigError(f"data.{key}: {getattr(data, key)!r} is not one of {allowed}")
    if data.randaugment not in (None, "timm", "torchvision"):
        raise ConfigError(f"data.randaugment: {data.randaugment!r} is not one of timm, torchvision, null")
    compile_modes = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
    if config.train.compile_mode not in compile_modes:
        raise ConfigError(f"train.compile_mode: {config.train.compile_mode!r} is not one of {', '.join(compile_modes)}")
    if config.train.precision not in ("auto", "bf16", "fp32"):
        raise ConfigError(f"train.precision: {config.train.precision!r} is not one of auto, bf16, fp32")
    needed = [("data.train", data.train)] if need_train else []
    needed.append(("data.val", data.val))
    for name, value in needed:
        if value is None:
            raise ConfigError(f"{name} is not set: give the annotations of that split")
        if data.synthetic:
            continue  # generated before use
        path = Path(value)
        if not path.exists():
            raise ConfigError(f"{name}: {path} does not exist")
    if not data.synthetic and data.root and not Path(data.root).exists():
        raise ConfigError(f"data.root: {data.root} does not exist")
    if config.model.init is not None and not Path(config.model.init).is_file():
        raise ConfigError(f"model.init: {config.model.init} does not exist")
    if config.train.batch_size < 1:
        raise ConfigError("train.batch_size must be positive")
