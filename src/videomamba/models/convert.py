"""Weights into a VideoMamba from local files: ours, Vision Mamba (Vim) image checkpoints, and
OpenGVLab VideoMamba checkpoints (their image and video models). Nothing here downloads anything.

Every load goes through safetensors or ``torch.load(weights_only=True)``. Vim's and OpenGVLab's
training checkpoints also pickle an ``argparse.Namespace`` under 'args': exactly that class is
allow-listed (``torch.serialization.safe_globals``); a file that needs anything else is refused.

Which layout a file is in is read from its own evidence (``inspect_source``): its training args
(Vim's model names, OpenGVLab's), its keys and their shapes; ``layout=`` overrides it. Conversions
are pure functions over state dicts (timm's ``checkpoint_filter_fn`` pattern) that reproduce what
the source's forward computes:

* Vim (hustvl/Vim, bimamba v2): the class token sits at row ``M // 2`` of the image table (the
  "midclstok" models) or row 0, and Vim adds that row to it: here it is folded into the class token
  and removed from the table. The 2D patch kernel is inflated over the tubelet's frames by
  averaging, the grid resampled bicubically (as Vim's and DeiT's ``interpolate_pos_embed``), the
  video table built with the model's positional scheme. Vim averages the directions (``div2``).
  Its stride-8 models (overlapping patches) cannot be represented by a tubelet tokenizer: refused.
* OpenGVLab VideoMamba: ``pos_embed`` (1, 1 + M, d) with the class row at 0 and, for videos, a
  ``temporal_pos_embedding`` (1, T, d) added to the patch tokens: their sum is our joint table, row 0
  folds into the class token. Their image models have a 2D kernel (inflated like Vim's); their video
  models a 3D one of their tubelet length. They sum the two directions.
* The directions' combination: a model that averages (``combine='mean'``) reproduces a source that
  sums when out_proj is doubled, and the other way round (halved): both factors are powers of two,
  so the conversion is exact. ``create_model(pretrained=...)`` builds the source's combination.

Files may wrap the weights under 'model', 'model_ema', 'module' or 'state_dict', and prefix every
key with ``module.``, ``backbone.``, ``encoder.`` or ``vision_encoder.`` (DDP, detection and
multi-modal wrappers): both are undone, and ``ema=`` chooses the EMA copy.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, safe_open, save_file

from .pos_embed import LEARNED_POS_EMBEDS, resample_table, video_table_from_image
from .tokenizer import inflate_patch_kernel
from .videomamba import VideoMamba, VideoMambaConfig

LAYOUTS = ("videomamba", "vim", "opengvlab")
# Wrappers' key prefixes, outermost first (DDP, detection / segmentation backbones, UMT-style models).
KEY_PREFIXES = ("module.", "model.", "backbone.", "encoder.", "vision_encoder.")
# Parts of OpenGVLab / Vim files that have no counterpart in a VideoMamba classifier.
FOREIGN_PARTS = ("head_dist", "distill_head", "dist_token", "clip_", "vision_proj", "text_", "itm_head", "temp",
                 "decoder", "mask_token", "teacher", "pos_embed_dist")


class CheckpointError(ValueError):
    """A weights file that cannot be read or does not fit; the message names the file and the cause."""


@dataclass
class LoadReport:
    """What a conversion did: keys loaded as they are, resampled or folded, dropped on purpose (with
    the reason), missing from the file, and unexpected (not understood); and how the source was read."""

    layout: str
    source: str = ""  # what the file was read as, and on what evidence
    loaded: list[str] = field(default_factory=list)
    resampled: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"layout: {self.layout}"] + ([f"read as: {self.source}"] if self.source else [])
        lines.append(f"loaded: {len(self.loaded)} tensors")
        if self.resampled:
            lines.append(f"resampled / folded / rebuilt: {'; '.join(self.resampled)}")
        for key, why in self.dropped.items():
            lines.append(f"dropped {key}: {why}")
        if self.missing:
            lines.append(f"missing (left at their initialisation): {', '.join(self.missing)}")
        if self.unexpected:
            lines.append(f"unexpected (not used): {', '.join(self.unexpected)}")
        return "\n".join(lines)


@dataclass
class Checkpoint:
    """A weights file's tensors (prefixes removed) and what it says about itself: ``config`` (ours, as
    JSON), ``args`` (Vim's / OpenGVLab's training arguments), which copy was taken, what was stripped."""

    path: Path
    state: dict[str, torch.Tensor]
    metadata: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def strip_key_prefixes(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str, int]:
    """The backbone's keys without wrapper prefixes: (state, prefix removed, keys left out).

    A prefix is removed when the backbone (``layers.*``) lies under it; keys outside it (a text encoder
    beside a ``vision_encoder.``, say) are left out and counted."""
    removed, left_out = "", 0
    for _ in range(4):  # module.backbone.encoder. at most
        if any(k.startswith("layers.") for k in state):
            break
        for prefix in KEY_PREFIXES:
            inner = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if any(k.startswith("layers.") or any(k.startswith(p) for p in KEY_PREFIXES) for k in inner):
                left_out += len(state) - len(inner)
                state, removed = inner, removed + prefix
                break
        else:
            break
    return state, removed, left_out


def _tensor_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def read_checkpoint(path: str | Path, ema: bool | None = None) -> Checkpoint:
    """Read a .safetensors file or a torch checkpoint (``weights_only``) into a ``Checkpoint``.

    Torch checkpoints may hold the weights under 'model', 'module' or 'state_dict', an EMA copy under
    'model_ema', or be a raw state dict. ``ema``: None takes 'model' where there is one and the EMA
    copy otherwise; True the EMA copy; False the plain one. Raises ``CheckpointError`` naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such weights file")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file")
    notes: list[str] = []
    metadata: dict[str, Any] = {}
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = dict(handle.metadata() or {})
            state = load_file(str(path))
        except Exception as err:
            raise CheckpointError(f"{path}: not a readable safetensors file ({type(err).__name__}: {err})") from None
        if ema:
            raise CheckpointError(f"{path}: a safetensors file holds one copy of the weights; there is no EMA copy to take")
    else:
        try:
            with torch.serialization.safe_globals([argparse.Namespace]):  # the training args; nothing else
                obj = torch.load(path, map_location="cpu", weights_only=True)
        except PermissionError:
            raise CheckpointError(f"{path}: permission denied") from None
        except Exception as err:  # UnpicklingError naming the global for unsafe files, others for bad files
            text = str(err)
            unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", text)
            if unsafe:
                raise CheckpointError(
                    f"{path}: refused to load: the file needs arbitrary unpickling ({unsafe.group(1)}), which can run "
                    f"code. Convert it where you trust it, or pass a safetensors file.") from None
            detail = re.search(r"WeightsUnpickler error: \s*(.+)", text)
            reason = detail.group(1).strip() if detail else (text.splitlines()[0] if text else "empty or truncated")
            raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(err).__name__}: {reason})") from None
        state = _choose_weights(path, obj, ema, notes)
        if isinstance(obj, dict):
            if isinstance(obj.get("config"), dict) and "model" in obj["config"]:
                metadata["config"] = json.dumps(obj["config"]["model"])
            if isinstance(obj.get("args"), argparse.Namespace):
                metadata["args"] = vars(obj["args"])
            elif isinstance(obj.get("args"), dict):
                metadata["args"] = obj["args"]
    state, prefix, left_out = strip_key_prefixes(state)
    if prefix:
        notes.append(f"key prefix {prefix!r} removed" + (f", {left_out} keys outside it left out" if left_out else ""))
    return Checkpoint(path, state, metadata, notes)


def _choose_weights(path: Path, obj: Any, ema: bool | None, notes: list[str]) -> dict[str, torch.Tensor]:
    if _tensor_dict(obj):
        if ema:
            raise CheckpointError(f"{path}: a bare state dict holds no EMA copy ('model_ema')")
        return obj
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a state dict (found {type(obj).__name__})")
    plain = next((obj[k] for k in ("model", "module", "state_dict") if _tensor_dict(obj.get(k))), None)
    averaged = obj.get("model_ema") if _tensor_dict(obj.get("model_ema")) else None
    if ema is True:
        if averaged is None:
            raise CheckpointError(f"{path}: no EMA weights ('model_ema') in the file; its keys: {list(obj)[:8]}")
        notes.append("the EMA weights ('model_ema')")
        return averaged
    if plain is not None:
        if averaged is not None:
            notes.append("the plain weights ('model'; the file also holds 'model_ema': pass ema=True / --ema for it)")
        return plain
    if averaged is not None and ema is None:
        notes.append("the EMA weights ('model_ema', the only copy in the file)")
        return averaged
    raise CheckpointError(f"{path}: no weights found (looked for 'model', 'module', 'state_dict'"
                          f"{'' if ema is False else ', model_ema'}; the file's keys: {list(obj)[:8]})")


def read_state_dict(path: str | Path, ema: bool | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict, metadata) of a weights file (see ``read_checkpoint``)."""
    checkpoint = read_checkpoint(path, ema)
    return checkpoint.state, checkpoint.metadata


@dataclass(frozen=True)
class Source:
    """What a checkpoint's own forward computes, as far as converting it needs: its layout, how it
    combines the two directions (None: unknown), the frames per token of its patch embedding (None: a
    2D image kernel), the frames its positional tables cover, the row of its class token in its
    ``pos_embed`` (None: none there), and the evidence all this was read from."""

    layout: str
    combine: str | None = None
    tubelet_frames: int | None = None
    num_frames: int | None = None
    class_row: int | None = None
    evidence: str = ""
    config: VideoMambaConfig | None = None  # ours, when the file stores it

    def model_overrides(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """``overrides`` completed so that the model built from them computes what the source does:
        its combination of the directions (an explicit ``combine`` is kept: loading rescales out_proj
        exactly), its tubelet length and frame count where it has them. A tubelet override that a 3D
        kernel cannot take is an error naming both."""
        out = dict(overrides)
        if self.combine is not None:
            out.setdefault("combine", self.combine)
        if self.tubelet_frames is not None:
            given = out.get("tubelet")
            if given is None:
                out["tubelet"] = self.tubelet_frames
            elif (given if isinstance(given, int) else tuple(given)[0]) != self.tubelet_frames:
                raise CheckpointError(f"the checkpoint's patch kernel spans {self.tubelet_frames} frames, the override "
                                      f"asks for tubelet {given}: a 3D kernel cannot change its length")
        if self.num_frames is not None:
            out.setdefault("num_frames", self.num_frames)
        return out


def inspect_source(checkpoint: Checkpoint, layout: str = "auto") -> Source:
    """Read the checkpoint's layout and what its forward computes from its own evidence; ``layout``
    ('videomamba', 'vim', 'opengvlab') overrides the detection of the layout."""
    state, metadata = checkpoint.state, checkpoint.metadata
    args = metadata.get("args")
    name = str((args or {}).get("model") or "")
    if layout not in ("auto", *LAYOUTS):
        raise CheckpointError(f"{checkpoint.path}: unknown layout {layout!r}; choose from auto, {', '.join(LAYOUTS)}")
    kernel = state.get("patch_embed.proj.weight")
    if layout == "auto":
        if any(".scan_fwd." in k for k in state):
            layout, why = "videomamba", "keys of our mixer (scan_fwd / scan_bwd)"
        elif not any(k.endswith("mixer.A_log") for k in state):
            raise CheckpointError(f"{checkpoint.path}: unrecognised checkpoint layout: no Mamba mixer keys "
                                  f"(first keys: {list(state)[:6]})")
        elif "temporal_pos_embedding" in state or (kernel is not None and kernel.dim() == 5):
            layout, why = "opengvlab", "a 3D patch kernel / temporal_pos_embedding (OpenGVLab's video model)"
        elif name.startswith("vim") or (args is not None and ("use_middle_cls_token" in args or "if_cls_token" in args)):
            layout, why = "vim", f"its training args (model {name or '?'})"
        elif name.startswith("videomamba"):
            layout, why = "opengvlab", f"its training args (model {name})"
        else:
            layout, why = "opengvlab", ("a 2D kernel and no training args: OpenGVLab's released image weights are "
                                        "bare state dicts, Vim's files carry their args (layout='vim' to read it "
                                        "as Vim's)")
    else:
        why = "layout given"
    if layout == "videomamba":
        config = VideoMambaConfig.from_dict(json.loads(metadata["config"])) if "config" in metadata else None
        if config is None:
            return Source("videomamba", evidence=why)
        video = config.num_frames > 1  # an image model (one frame) inflates into any tubelet
        combine = config.combine if config.scan_order != "none" else None  # one direction: nothing combined
        return Source("videomamba", combine=combine, tubelet_frames=config.tubelet[0] if video else None,
                      num_frames=config.num_frames if video else None, evidence=why, config=config)
    if kernel is None:
        raise CheckpointError(f"{checkpoint.path}: no patch_embed.proj.weight: not a whole {layout} model")
    if layout == "vim":
        named = re.search(r"stride(\d+)", name)
        stride = int(named.group(1)) if named else int((args or {}).get("stride") or kernel.shape[-1])
        if stride != kernel.shape[-1]:
            raise CheckpointError(
                f"{checkpoint.path}: Vim model {name or ''} embeds {kernel.shape[-1]}x{kernel.shape[-1]} patches every "
                f"{stride} pixels (overlapping patches); a tubelet tokenizer takes non-overlapping patches and "
                f"cannot represent it. Use a stride-{kernel.shape[-1]} Vim model.")
        combine = "sum" if (args is not None and args.get("if_divide_out") is False) or (
            name and "div2" not in name and "bimambav2" in name) else "mean"
        pos = state.get("pos_embed")
        class_row = None
        if "cls_token" in state and pos is not None:
            middle = (bool(args.get("use_middle_cls_token")) if args is not None and "use_middle_cls_token" in args
                      else ("midclstok" in name) if name else True)
            class_row = (pos.shape[1] - 1) // 2 if middle else 0
        where = "none" if class_row is None else ("middle" if class_row else "first")
        return Source("vim", combine=combine, class_row=class_row,
                      evidence=f"{why}; class token {where}, directions {'averaged' if combine == 'mean' else 'summed'}")
    temporal = state.get("temporal_pos_embedding")
    frames = kernel.shape[2] if kernel.dim() == 5 else None
    num_frames = temporal.shape[1] * (frames or 1) if temporal is not None else None
    return Source("opengvlab", combine="sum", tubelet_frames=frames, num_frames=num_frames,
                  class_row=0 if "cls_token" in state and "pos_embed" in state else None,
                  evidence=f"{why}; {'video' if frames else 'image'} model, class token first, directions summed")


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
                report.dropped[key] = "no such part in this model (backward parameters with scan order 'none', or fewer layers)"
                continue
            out[target] = value
        elif key in ("norm_f.weight", "norm.weight"):
            used.add(key)
            out["norm_f.weight"] = value
    return used


def _image_table(pos: torch.Tensor, class_row: int | None) -> tuple[torch.Tensor, int]:
    """(image table (M, d) without the class-token row, side of its square grid)."""
    table = pos[0]
    if class_row is not None:
        table = torch.cat([table[:class_row], table[class_row + 1:]])
    side = int(round(table.shape[0] ** 0.5))
    if side * side != table.shape[0]:
        raise CheckpointError(f"pos_embed has {table.shape[0]} patch rows, not a square grid")
    return table, side


def resample_grid_bicubic(table: torch.Tensor, side: int, n_h: int, n_w: int) -> torch.Tensor:
    """An image table (side², d) on an n_h x n_w grid, bicubic as DeiT's, Vim's and OpenGVLab's
    ``interpolate_pos_embed`` (align_corners=False); unchanged when the grid is the same."""
    if (side, side) == (n_h, n_w):
        return table
    grid = table.t().reshape(1, -1, side, side)
    return F.interpolate(grid.float() if grid.dtype in (torch.float16, torch.bfloat16) else grid, size=(n_h, n_w),
                         mode="bicubic", align_corners=False).to(table.dtype).reshape(-1, n_h * n_w).t()


def _patch_kernel(state: dict, out: dict, used: set, cfg: VideoMambaConfig, report: LoadReport, source: str) -> None:
    weight = state["patch_embed.proj.weight"]
    used.add("patch_embed.proj.weight")
    if weight.shape[-2:] != tuple(cfg.tubelet[1:]):
        raise CheckpointError(f"{source} patch kernel is {tuple(weight.shape[-2:])}, the model's tubelet is {cfg.tubelet}")
    if weight.dim() == 4:
        out["patch_embed.proj.weight"] = inflate_patch_kernel(weight, cfg.tubelet[0])
        report.resampled.append(f"patch_embed.proj.weight (2D -> 3D, {cfg.tubelet[0]} frames, averaged)")
    elif weight.shape[2] != cfg.tubelet[0]:
        raise CheckpointError(f"{source} tubelet is {weight.shape[2]} frames, the model's is {cfg.tubelet[0]}: "
                              f"create the model with tubelet={weight.shape[2]}")
    else:
        out["patch_embed.proj.weight"] = weight
    if "patch_embed.proj.bias" in state:
        out["patch_embed.proj.bias"] = state["patch_embed.proj.bias"]
        used.add("patch_embed.proj.bias")


def foreign_to_videomamba(state: dict, model: VideoMamba, source: Source) -> tuple[dict, LoadReport, set]:
    """Map a Vim or OpenGVLab state dict onto ``model`` (see the module docstring): returns the mapped
    tensors, the report and the source keys consumed."""
    report = LoadReport(source.layout, source.evidence)
    own = model.state_dict()
    cfg = model.cfg
    out: dict[str, torch.Tensor] = {}
    used = _map_blocks(state, out, report, own)
    n_t, n_h, n_w = cfg.grid
    name = "Vim" if source.layout == "vim" else "OpenGVLab"
    _patch_kernel(state, out, used, cfg, report, name)
    pos = state.get("pos_embed")
    cls = state.get("cls_token")
    if pos is not None:
        used.add("pos_embed")
        table, side = _image_table(pos, source.class_row)
        table = resample_grid_bicubic(table, side, n_h, n_w)
        if side != n_h or side != n_w:
            report.resampled.append(f"pos_embed grid {side}x{side} -> {n_h}x{n_w} (bicubic)")
        temporal = state.get("temporal_pos_embedding")
        if temporal is not None:
            used.add("temporal_pos_embedding")
            temporal = temporal[0]
            if temporal.shape[0] != n_t:
                temporal = F.interpolate(temporal.t()[None], size=n_t, mode="linear", align_corners=False)[0].t()
                report.resampled.append(f"temporal_pos_embedding ({state['temporal_pos_embedding'].shape[1]} -> {n_t}, linear)")
            joint = (temporal[:, None, :] + table[None, :, :]).reshape(n_t * n_h * n_w, -1)
            built, how = joint, "spatial + temporal tables added into the joint table"
        elif cfg.pos_embed in LEARNED_POS_EMBEDS:
            built = video_table_from_image(cfg.pos_embed, table, n_t)
            how = f"{side}x{side} image table -> {cfg.pos_embed} over {n_t}x{n_h}x{n_w}"
        else:
            built, how = None, ""
        if "pos_embed" in own and built is not None:
            out["pos_embed"] = built[None]
            report.resampled.append(f"pos_embed ({how})")
        else:
            report.dropped["pos_embed"] = f"the model's positional scheme is {cfg.pos_embed!r}"
    if cls is not None:
        used.add("cls_token")
        if "cls_token" not in own:
            report.dropped["cls_token"] = "the model has no class token"
        elif pos is not None and source.class_row is not None:
            # the source adds its class row to the class token; ours takes no positional row
            out["cls_token"] = cls + pos[:, source.class_row:source.class_row + 1]
            report.resampled.append(f"cls_token (+ pos_embed row {source.class_row}, which the source adds to it)")
        else:
            out["cls_token"] = cls
    return out, report, used


def _rescale_combine(out: dict, source_combine: str | None, model: VideoMamba, report: LoadReport) -> None:
    """Make a model that combines the directions otherwise than the source compute the same: out_proj
    doubled (source sums, model averages) or halved (the other way round); exact (powers of two)."""
    cfg = model.cfg
    if source_combine is None or cfg.scan_order == "none" or source_combine == cfg.combine:
        return
    factor = 2.0 if source_combine == "sum" else 0.5
    keys = [k for k in out if k.endswith("mixer.out_proj.weight")]
    for key in keys:
        out[key] = out[key] * factor
    if keys:
        how = {"sum": "sums", "mean": "averages"}
        report.resampled.append(f"out_proj x {factor:g} in every layer (the source {how[source_combine]} the two "
                                f"directions, this model {how[cfg.combine]} them)")


def _finish(state: dict, out: dict, used: set, own: dict, report: LoadReport, keep_head: bool) -> dict:
    for key in ("head.weight", "head.bias"):
        if key not in state:
            continue
        used.add(key)
        if not keep_head:
            report.dropped[key] = "classifier dropped on request"
        elif key in own and state[key].shape == own[key].shape:
            out[key] = state[key]
        else:
            shape = tuple(state[key].shape)
            report.dropped[key] = (f"classifier of {shape[0]} classes; the model has "
                                   f"{own['head.weight'].shape[0] if 'head.weight' in own else 'no'} (a new head is trained)")
    for key in state:
        if key in used or key in report.dropped:
            continue
        if key.startswith(FOREIGN_PARTS):
            report.dropped[key] = "part of another task's model (distillation, CLIP alignment, decoder, ...)"
        elif key.startswith("head."):
            report.dropped[key] = "part of the source's classifier"
        else:
            report.unexpected.append(key)
    report.loaded = sorted(k for k in out if k in own)
    report.missing = sorted(k for k in own if k not in out and not k.startswith("head."))
    for key in out:
        if key in own and out[key].shape != own[key].shape:
            raise CheckpointError(f"{key}: converted shape {tuple(out[key].shape)} does not fit the model's "
                                  f"{tuple(own[key].shape)} (width or depth of the source differs?)")
    return {k: v for k, v in out.items() if k in own}


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


def own_to_videomamba(state: dict, model: VideoMamba, source: Source) -> tuple[dict, LoadReport, set]:
    """Map our own weights onto ``model``: an image model inflated, the positional table resampled to
    the model's grid. Returns the mapped tensors, the report and the source keys consumed."""
    report = LoadReport("videomamba", source.evidence)
    own = model.state_dict()
    state = dict(state)
    config = source.config
    if config is not None and config.num_frames == 1 and model.cfg.tubelet[0] > 1:
        _inflate_image_model(state, config, model, report)
    if "pos_embed" in state and "pos_embed" not in own:
        report.dropped["pos_embed"] = f"the model's positional scheme is {model.cfg.pos_embed!r}"
        del state["pos_embed"]
    if "pos_embed" in state and "pos_embed" in own and state["pos_embed"].shape != own["pos_embed"].shape:
        if config is None:
            raise CheckpointError(f"pos_embed has shape {tuple(state['pos_embed'].shape)}, the model needs "
                                  f"{tuple(own['pos_embed'].shape)}, and the file stores no config to resample from")
        state["pos_embed"] = resample_table(state["pos_embed"][0], config.grid, model.cfg.grid)[None]
        report.resampled.append(f"pos_embed ({config.grid} -> {model.cfg.grid})")
    out = {k: v for k, v in state.items() if k in own and not k.startswith("head.")}
    return out, report, set(out)


def convert_checkpoint(checkpoint: Checkpoint, model: VideoMamba, layout: str = "auto",
                       keep_head: bool = True) -> tuple[dict[str, torch.Tensor], LoadReport]:
    """The checkpoint's tensors mapped onto ``model``'s keys, with the report of what was done."""
    source = inspect_source(checkpoint, layout)
    mapping = own_to_videomamba if source.layout == "videomamba" else foreign_to_videomamba
    out, report, used = mapping(checkpoint.state, model, source)
    _rescale_combine(out, source.combine, model, report)
    converted = _finish(checkpoint.state, out, used, model.state_dict(), report, keep_head)
    if checkpoint.notes:
        report.source = "; ".join([report.source] + checkpoint.notes if report.source else checkpoint.notes)
    return converted, report


def load_into(model: VideoMamba, path: str | Path | Checkpoint, layout: str = "auto", strict: bool = True,
              ema: bool | None = None, keep_head: bool = True) -> LoadReport:
    """Load any supported file into ``model`` and return the report. With ``strict``, a backbone
    tensor missing from the file or a key not understood is an error naming them. ``layout``
    overrides the detected layout; ``ema`` chooses the EMA copy (see ``read_checkpoint``);
    ``keep_head=False`` drops the file's classifier even where it fits."""
    checkpoint = path if isinstance(path, Checkpoint) else read_checkpoint(path, ema)
    converted, report = convert_checkpoint(checkpoint, model, layout, keep_head)
    if strict and (report.missing or report.unexpected):
        raise CheckpointError(f"{checkpoint.path}: does not fit the model ({report.layout} layout): missing "
                              f"{report.missing[:10]}, unexpected {report.unexpected[:10]}")
    model.load_state_dict(converted, strict=False)
    return report


def load_pretrained(model: VideoMamba, path: str | Path, layout: str = "auto", strict: bool = True,
                    ema: bool | None = None, keep_head: bool = True) -> LoadReport:
    """Our weights, or a Vim / OpenGVLab file, into an existing ``model`` (see ``load_into``)."""
    return load_into(model, path, layout=layout, strict=strict, ema=ema, keep_head=keep_head)


def load_init(model: VideoMamba, path: str | Path, keep_head: bool = True) -> LoadReport:
    """Initialise a model for training (``model.init``) from an image or video checkpoint."""
    report = load_into(model, path, strict=True, keep_head=keep_head)
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
