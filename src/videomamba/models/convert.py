"""Weights into a VideoMamba from local files: ours, Vision Mamba (Vim) image checkpoints, and
OpenGVLab VideoMamba checkpoints. Nothing here downloads anything.

Every load goes through safetensors or ``torch.load(weights_only=True)``. Vim's training checkpoints
also pickle an ``argparse.Namespace`` under 'args': exactly that class is allow-listed
(``torch.serialization.safe_globals``); a file that needs anything else is refused with the reason.

Conversions are pure functions over state dicts (timm's ``checkpoint_filter_fn`` pattern):

* Vim (hustvl/Vim, bimamba v2): 2D patch kernel inflated to 3D by averaging; the class-token row of
  the image table (the middle row, index M // 2, for Vim's mid-class-token models; or the first)
  dropped, the 14x14 (or other) grid resampled to the model's n_h x n_w, and the video table built
  with the model's positional scheme (temporal expanding by default); the class token put at the
  start; forward/backward parameters (``A_log`` / ``A_b_log``, ``conv1d`` / ``conv1d_b``, ...) mapped
  to ``scan_fwd`` / ``scan_bwd``; the head dropped.
* OpenGVLab VideoMamba: spatial ``pos_embed`` (1, 1 + M, d) with the class token at row 0 plus a
  ``temporal_pos_embedding`` (1, T, d) added to the patch tokens: their sum is exactly our joint
  table; the class token's row is folded into the class token (cls + pos[0]); 1x16x16 tubelets; the
  two directions summed (load into a model with ``combine="sum"``); ``norm`` is ``norm_f`` in
  masked-pretraining files; heads for other tasks (distillation, CLIP alignment, text) dropped.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, safe_open, save_file

from .pos_embed import LEARNED_POS_EMBEDS, resample_table, video_table_from_image
from .tokenizer import inflate_patch_kernel
from .videomamba import VideoMamba, VideoMambaConfig

LAYOUTS = ("videomamba", "vim", "opengvlab")
# Parts of OpenGVLab / Vim files that have no counterpart in a VideoMamba classifier.
FOREIGN_PARTS = ("head_dist", "clip_", "vision_proj", "text_", "itm_head", "temp", "decoder", "mask_token",
                 "teacher", "pos_embed_dist")


@dataclass
class LoadReport:
    """What a conversion did: keys loaded as they are, resampled, built (e.g. the video table),
    dropped on purpose (with the reason), missing from the file, and unexpected (not understood)."""

    layout: str
    loaded: list[str] = field(default_factory=list)
    resampled: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"layout: {self.layout}", f"loaded: {len(self.loaded)} tensors"]
        if self.resampled:
            lines.append(f"resampled / rebuilt: {', '.join(self.resampled)}")
        for key, why in self.dropped.items():
            lines.append(f"dropped {key}: {why}")
        if self.missing:
            lines.append(f"missing (left at their initialisation): {', '.join(self.missing)}")
        if self.unexpected:
            lines.append(f"unexpected (not used): {', '.join(self.unexpected)}")
        return "\n".join(lines)


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict, metadata) from a .safetensors file or a torch checkpoint (weights_only).

    Torch checkpoints may wrap the weights under 'model' (ours, Vim, OpenGVLab's ImageNet files) or
    'module', or be a raw state dict. Metadata: our config (safetensors metadata or the training
    checkpoint's config) and Vim's args as a dict when present.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    if path.suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
        return load_file(str(path)), metadata
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):  # Vim's 'args'; nothing else
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError (or RuntimeError) for unsafe globals
        raise ValueError(f"{path}: refused to load: the file needs arbitrary unpickling, which can run code "
                         f"({type(err).__name__}: {str(err).splitlines()[0]}). Convert it where you trust it, "
                         f"or pass a safetensors file.") from None
    metadata: dict = {}
    if isinstance(obj, dict):
        if isinstance(obj.get("config"), dict) and "model" in obj["config"]:
            metadata["config"] = json.dumps(obj["config"]["model"])
        if isinstance(obj.get("args"), argparse.Namespace):
            metadata["args"] = vars(obj["args"])
        for key in ("model", "module", "state_dict"):
            if isinstance(obj.get(key), dict):
                return obj[key], metadata
        if all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj, metadata
    raise ValueError(f"{path}: not a state dict (found {type(obj).__name__} with keys "
                     f"{list(obj)[:8] if isinstance(obj, dict) else '-'})")


def detect_layout(state: dict[str, torch.Tensor]) -> str:
    """'videomamba', 'vim' or 'opengvlab', from the key names."""
    if any(".scan_fwd." in k for k in state):
        return "videomamba"
    if "temporal_pos_embedding" in state or (
            "patch_embed.proj.weight" in state and state["patch_embed.proj.weight"].dim() == 5):
        return "opengvlab"
    if any(k.endswith("mixer.A_log") for k in state):
        return "vim"
    raise ValueError(f"unrecognised checkpoint layout (first keys: {list(state)[:6]})")


_MIXER_MAP = {  # foreign mixer key -> ours, per layer
    "in_proj.weight": "in_proj.weight", "out_proj.weight": "out_proj.weight",
    "A_log": "scan_fwd.A_log", "A_b_log": "scan_bwd.A_log", "D": "scan_fwd.D", "D_b": "scan_bwd.D",
    "conv1d.weight": "scan_fwd.conv1d.weight", "conv1d.bias": "scan_fwd.conv1d.bias",
    "conv1d_b.weight": "scan_bwd.conv1d.weight", "conv1d_b.bias": "scan_bwd.conv1d.bias",
    "x_proj.weight": "scan_fwd.x_proj.weight", "x_proj_b.weight": "scan_bwd.x_proj.weight",
    "dt_proj.weight": "scan_fwd.dt_proj.weight", "dt_proj.bias": "scan_fwd.dt_proj.bias",
    "dt_proj_b.weight": "scan_bwd.dt_proj.weight", "dt_proj_b.bias": "scan_bwd.dt_proj.bias",
}


def _map_blocks(state: dict, out: dict, report: LoadReport, own: dict) -> set[str]:
    """Per-layer keys (mixer, norm) and the final norm; returns the foreign keys consumed."""
    used = set()
    for key, value in state.items():
        match = re.fullmatch(r"layers\.(\d+)\.(mixer\.(.+)|norm\.weight)", key)
        if match:
            layer = match.group(1)
            target = (f"layers.{layer}.mixer.{_MIXER_MAP[match.group(3)]}" if match.group(3) in _MIXER_MAP
                      else None) if match.group(3) else f"layers.{layer}.norm.weight"
            if target is None:
                continue
            used.add(key)
            if target not in own:
                report.dropped[key] = "no such part in this model (e.g. backward parameters with scan order 'none', or fewer layers)"
                continue
            out[target] = value
        elif key in ("norm_f.weight", "norm.weight"):
            used.add(key)
            out["norm_f.weight"] = value
    return used


def _image_table(pos: torch.Tensor, cls_row: int | None) -> tuple[torch.Tensor, int]:
    """(image table (M, d) without the class-token row, side of the square grid)."""
    table = pos[0]
    if cls_row is not None:
        table = torch.cat([table[:cls_row], table[cls_row + 1:]])
    side = int(round(table.shape[0] ** 0.5))
    if side * side != table.shape[0]:
        raise ValueError(f"pos_embed has {table.shape[0]} patch rows, not a square grid")
    return table, side


def _resample_grid(table: torch.Tensor, side: int, n_h: int, n_w: int) -> torch.Tensor:
    if (side, side) == (n_h, n_w):
        return table
    return resample_table(table, (1, side, side), (1, n_h, n_w))


def vim_to_videomamba(state: dict, model: VideoMamba, args: dict | None = None) -> tuple[dict, LoadReport]:
    """Map a Vim image state dict onto ``model`` (see the module docstring)."""
    report = LoadReport("vim")
    own = model.state_dict()
    cfg = model.cfg
    out: dict[str, torch.Tensor] = {}
    used = _map_blocks(state, out, report, own)
    n_t, n_h, n_w = cfg.grid
    weight = state["patch_embed.proj.weight"]
    used.add("patch_embed.proj.weight")
    if weight.shape[-2:] != tuple(cfg.tubelet[1:]):
        raise ValueError(f"Vim patch kernel is {tuple(weight.shape[-2:])}, the model's tubelet is {cfg.tubelet}")
    out["patch_embed.proj.weight"] = inflate_patch_kernel(weight, cfg.tubelet[0])
    report.resampled.append(f"patch_embed.proj.weight (2D -> 3D, {cfg.tubelet[0]} frames, averaged)")
    if "patch_embed.proj.bias" in state:
        out["patch_embed.proj.bias"] = state["patch_embed.proj.bias"]
        used.add("patch_embed.proj.bias")
    if "cls_token" in state:
        used.add("cls_token")
        if "cls_token" in own:
            out["cls_token"] = state["cls_token"]
        else:
            report.dropped["cls_token"] = "the model has no class token"
    if "pos_embed" in state:
        used.add("pos_embed")
        pos = state["pos_embed"]
        middle = True if args is None else bool(args.get("use_middle_cls_token", True)) or "midclstok" in str(args.get("model", ""))
        has_cls = pos.shape[1] != int(round(pos.shape[1] ** 0.5)) ** 2
        cls_row = (pos.shape[1] - 1) // 2 if (has_cls and middle) else (0 if has_cls else None)
        table, side = _image_table(pos, cls_row)
        table = _resample_grid(table, side, n_h, n_w)
        if "pos_embed" in own:
            out["pos_embed"] = video_table_from_image(cfg.pos_embed, table, n_t)[None]
            report.resampled.append(f"pos_embed ({side}x{side} image table, class row {cls_row} dropped -> "
                                    f"{cfg.pos_embed} over {n_t}x{n_h}x{n_w})")
        else:
            report.dropped["pos_embed"] = f"the model's positional scheme is {cfg.pos_embed!r}"
    return _finish(state, out, used, own, report)


def opengvlab_to_videomamba(state: dict, model: VideoMamba) -> tuple[dict, LoadReport]:
    """Map an OpenGVLab VideoMamba state dict onto ``model`` (tubelet 1, combine='sum' to match)."""
    report = LoadReport("opengvlab")
    own = model.state_dict()
    cfg = model.cfg
    if cfg.combine != "sum":
        raise ValueError("OpenGVLab VideoMamba sums the two directions: create the model with combine='sum'")
    out: dict[str, torch.Tensor] = {}
    used = _map_blocks(state, out, report, own)
    n_t, n_h, n_w = cfg.grid
    weight = state["patch_embed.proj.weight"]
    used.add("patch_embed.proj.weight")
    if weight.dim() == 4:
        weight = inflate_patch_kernel(weight, cfg.tubelet[0])
    elif weight.shape[2] != cfg.tubelet[0]:
        raise ValueError(f"OpenGVLab tubelet is {weight.shape[2]} frames, the model's is {cfg.tubelet[0]}: "
                         f"create the model with tubelet=1")
    out["patch_embed.proj.weight"] = weight
    if "patch_embed.proj.bias" in state:
        out["patch_embed.proj.bias"] = state["patch_embed.proj.bias"]
        used.add("patch_embed.proj.bias")
    pos = state.get("pos_embed")
    if pos is not None:
        used.add("pos_embed")
        table, side = _image_table(pos, 0)
        table = _resample_grid(table, side, n_h, n_w)  # (n_h*n_w, d)
        temporal = state.get("temporal_pos_embedding")
        if temporal is not None:
            used.add("temporal_pos_embedding")
            temporal = temporal[0]
            if temporal.shape[0] != n_t:
                temporal = F.interpolate(temporal.t()[None], size=n_t, mode="linear", align_corners=False)[0].t()
                report.resampled.append(f"temporal_pos_embedding ({state['temporal_pos_embedding'].shape[1]} -> {n_t})")
        else:
            temporal = torch.zeros(n_t, table.shape[1])
        joint = (temporal[:, None, :] + table[None, :, :]).reshape(n_t * n_h * n_w, -1)
        if "pos_embed" in own:
            out["pos_embed"] = joint[None]
            report.resampled.append("pos_embed (spatial + temporal tables folded into the joint table)")
        else:
            report.dropped["pos_embed"] = f"the model's positional scheme is {cfg.pos_embed!r}"
        if "cls_token" in state and "cls_token" in own:
            out["cls_token"] = state["cls_token"] + pos[:, :1]  # their class token gets row 0 added
            used.add("cls_token")
    elif "cls_token" in state and "cls_token" in own:
        out["cls_token"] = state["cls_token"]
        used.add("cls_token")
    return _finish(state, out, used, own, report)


def _finish(state: dict, out: dict, used: set, own: dict, report: LoadReport) -> tuple[dict, LoadReport]:
    for key in state:
        if key in used:
            continue
        if key.startswith("head."):
            report.dropped[key] = "classifier of the source task (a new head is trained)"
        elif key.startswith(FOREIGN_PARTS):
            report.dropped[key] = "part of another task's model (distillation, CLIP alignment, decoder, ...)"
        else:
            report.unexpected.append(key)
    report.loaded = sorted(k for k in out if k in own)
    report.missing = sorted(k for k in own if k not in out and not k.startswith("head."))
    for key in out:
        if key in own and out[key].shape != own[key].shape:
            raise ValueError(f"{key}: converted shape {tuple(out[key].shape)} does not fit the model's "
                             f"{tuple(own[key].shape)} (width or depth of the source differs?)")
    return out, report


def _inflate_image_model(state: dict, source: VideoMambaConfig, model: VideoMamba, report: LoadReport) -> None:
    """An image VideoMamba (one frame, tubelet 1) into a video model, as the paper inflates ImageNet
    weights: the patch kernel repeated over the tubelet's frames and averaged, and the image table
    turned into the video table by the model's positional scheme."""
    cfg = model.cfg
    weight = state.get("patch_embed.proj.weight")
    if weight is not None and weight.shape[2] == 1:
        state["patch_embed.proj.weight"] = inflate_patch_kernel(weight[:, :, 0], cfg.tubelet[0])
        report.resampled.append(f"patch_embed.proj.weight (image kernel -> {cfg.tubelet[0]} frames, averaged)")
    if "pos_embed" in state and cfg.pos_embed in LEARNED_POS_EMBEDS:
        _, n_h, n_w = source.grid
        table = resample_table(state["pos_embed"][0], source.grid, (1, *cfg.grid[1:]))
        state["pos_embed"] = video_table_from_image(cfg.pos_embed, table, cfg.grid[0])[None]
        report.resampled.append(f"pos_embed ({n_h}x{n_w} image table -> {cfg.pos_embed} over "
                                f"{'x'.join(map(str, cfg.grid))})")


def _own_to_videomamba(state: dict, model: VideoMamba, metadata: dict) -> tuple[dict, LoadReport]:
    """Our own weights: positional table resampled to the model's grid, a head of another size dropped."""
    report = LoadReport("videomamba")
    own = model.state_dict()
    state = dict(state)
    source = VideoMambaConfig.from_dict(json.loads(metadata["config"])) if "config" in metadata else None
    if source is not None and source.num_frames == 1 and model.cfg.tubelet[0] > 1:
        _inflate_image_model(state, source, model, report)
    if "pos_embed" in state and "pos_embed" not in own:
        report.dropped["pos_embed"] = f"the model's positional scheme is {model.cfg.pos_embed!r}"
        del state["pos_embed"]
    if "pos_embed" in state and "pos_embed" in own and state["pos_embed"].shape != own["pos_embed"].shape:
        if "config" not in metadata:
            raise ValueError(f"pos_embed has shape {tuple(state['pos_embed'].shape)}, the model needs "
                             f"{tuple(own['pos_embed'].shape)}, and the file stores no config to resample from")
        source = VideoMambaConfig.from_dict(json.loads(metadata["config"]))
        state["pos_embed"] = resample_table(state["pos_embed"][0], source.grid, model.cfg.grid)[None]
        report.resampled.append(f"pos_embed ({source.grid} -> {model.cfg.grid})")
    for key in ("head.weight", "head.bias"):
        if key in state and (key not in own or state[key].shape != own[key].shape):
            report.dropped[key] = "classifier of another size"
            del state[key]
    report.unexpected = sorted(k for k in state if k not in own)
    report.loaded = sorted(k for k in state if k in own)
    report.missing = sorted(k for k in own if k not in state and not k.startswith("head."))
    return {k: v for k, v in state.items() if k in own}, report


def load_into(model: VideoMamba, path: str | Path, layout: str = "auto", strict: bool = True) -> LoadReport:
    """Load any supported file into ``model`` and return the report. With ``strict``, a backbone
    tensor missing from the file or a key not understood is an error naming them."""
    state, metadata = read_state_dict(path)
    layout = detect_layout(state) if layout == "auto" else layout
    if layout == "vim":
        converted, report = vim_to_videomamba(state, model, metadata.get("args"))
    elif layout == "opengvlab":
        converted, report = opengvlab_to_videomamba(state, model)
    elif layout == "videomamba":
        converted, report = _own_to_videomamba(state, model, metadata)
    else:
        raise ValueError(f"unknown layout {layout!r}; choose from {LAYOUTS}")
    if strict and (report.missing or report.unexpected):
        raise ValueError(f"{path}: does not fit the model ({report.layout} layout): missing {report.missing[:10]}, "
                         f"unexpected {report.unexpected[:10]}")
    model.load_state_dict(converted, strict=False)
    return report


def load_pretrained(model: VideoMamba, path: str | Path, strict: bool = True) -> LoadReport:
    """``create_model(name, pretrained=PATH)``: our weights, or a Vim / OpenGVLab file, into ``model``."""
    return load_into(model, path, strict=strict)


def load_init(model: VideoMamba, path: str | Path) -> LoadReport:
    """Initialise a model for training (``model.init``) from an image or video checkpoint."""
    report = load_into(model, path, strict=True)
    print(f"initialised from {path}\n{report}")
    return report


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
