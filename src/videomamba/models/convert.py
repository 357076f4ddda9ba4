"""Loading weights into a VideoMamba from local files. Nothing here downloads anything.

Every load goes through safetensors or ``torch.load(weights_only=True)``: a file that would need
arbitrary unpickling is refused with the reason, never opened with the safety off.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, safe_open, save_file

from .videomamba import VideoMamba, VideoMambaConfig


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict, metadata) from a .safetensors file or a torch checkpoint (weights_only).

    Torch checkpoints may wrap the weights under 'model' (our training checkpoints, Vim) or be a
    raw state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    if path.suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
        return load_file(str(path)), metadata
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError (or RuntimeError) for unsafe globals
        raise ValueError(f"{path}: refused to load: the file needs arbitrary unpickling, which can run code "
                         f"({type(err).__name__}: {str(err).splitlines()[0]}). Convert it where you trust it, "
                         f"or pass a safetensors file.") from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        metadata = {"config": json.dumps(obj["config"]["model"])} if isinstance(obj.get("config"), dict) and "model" in obj["config"] else {}
        return obj["model"], metadata
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, {}
    raise ValueError(f"{path}: not a state dict (found {type(obj).__name__} with keys {list(obj)[:8] if isinstance(obj, dict) else '-'})")


def save_weights(model: VideoMamba, path: str | Path) -> None:
    """Write the model's weights as safetensors, with its config (class names included) as metadata."""
    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"config": json.dumps(model.cfg.to_dict()), "format": "videomamba"})
    tmp.replace(path)


def config_from_file(path: str | Path) -> VideoMambaConfig | None:
    """The VideoMambaConfig stored in a weights file's metadata, or None if it holds none."""
    _, metadata = read_state_dict(path)
    return VideoMambaConfig.from_dict(json.loads(metadata["config"])) if "config" in metadata else None


def load_pretrained(model: VideoMamba, path: str | Path, strict: bool = True) -> dict[str, list[str]]:
    """Load our own weights (safetensors or a training checkpoint) into ``model``.

    A positional table of another grid is resampled. Returns a report of missing and unexpected
    keys; with ``strict`` any missing or unexpected key is an error that names them.
    """
    from .pos_embed import resample_table

    state, metadata = read_state_dict(path)
    if "pos_embed" in state and model.pos_embed is not None and state["pos_embed"].shape != model.pos_embed.shape:
        if "config" not in metadata:
            raise ValueError(f"{path}: pos_embed has shape {tuple(state['pos_embed'].shape)}, the model needs "
                             f"{tuple(model.pos_embed.shape)}, and the file stores no config to resample from")
        source = VideoMambaConfig.from_dict(json.loads(metadata["config"]))
        state["pos_embed"] = resample_table(state["pos_embed"][0], source.grid, model.cfg.grid)[None]
    result = model.load_state_dict(state, strict=False)
    report = {"missing": list(result.missing_keys), "unexpected": list(result.unexpected_keys)}
    if strict and (report["missing"] or report["unexpected"]):
        raise ValueError(f"{path}: weights do not fit the model: missing {report['missing'][:10]}, "
                         f"unexpected {report['unexpected'][:10]}")
    return report


def load_init(model: VideoMamba, path: str | Path) -> dict[str, list[str]]:
    """Initialise a model for training from a video checkpoint of ours: every backbone tensor must
    fit (the positional table is resampled); a head of another size is dropped and left fresh."""
    state, metadata = read_state_dict(path)
    own = model.state_dict()
    dropped = [k for k in ("head.weight", "head.bias") if k in state and (k not in own or state[k].shape != own[k].shape)]
    for key in dropped:
        del state[key]
    if "pos_embed" in state and model.pos_embed is not None and state["pos_embed"].shape != model.pos_embed.shape:
        from .pos_embed import resample_table

        if "config" not in metadata:
            raise ValueError(f"{path}: pos_embed of shape {tuple(state['pos_embed'].shape)} and no config to resample from")
        source = VideoMambaConfig.from_dict(json.loads(metadata["config"]))
        state["pos_embed"] = resample_table(state["pos_embed"][0], source.grid, model.cfg.grid)[None]
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("head.")]
    if missing or result.unexpected_keys:
        raise ValueError(f"{path}: does not fit {type(model).__name__}: missing {missing[:10]}, "
                         f"unexpected {list(result.unexpected_keys)[:10]}")
    return {"dropped": dropped, "missing": list(result.missing_keys), "unexpected": []}
