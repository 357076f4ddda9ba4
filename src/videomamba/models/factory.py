"""``create_model``: a registered size, built and, on request, loaded from a local weights file.

Kept apart from the model file so that the model knows nothing of the checkpoint converters, which
build on it (``models.convert``).
"""

from __future__ import annotations

from .convert import Checkpoint, inspect_source, load_into, read_checkpoint
from .videomamba import VideoMamba, model_config


def create_model(name: str, pretrained: str | None = None, layout: str = "auto", ema: bool | None = None,
                 keep_head: bool = True, **overrides) -> VideoMamba:
    """Build a registered VideoMamba, e.g. ``create_model('videomamba_small', num_classes=174)``.

    ``overrides`` are ``VideoMambaConfig`` fields: num_classes, num_frames, img_size, tubelet
    (an int sets the temporal extent only), scan_order, pos_embed, cls_token, drop_path_rate, ...

    ``pretrained``: a local weights file (ours, Vim's or OpenGVLab's; see ``models.convert``), read
    as ``layout`` ('auto': from the file's own evidence). The model is built to compute what the
    file's model computes where an override does not say otherwise: its combination of the two
    directions, its tubelet length and frame count, and its class count when its classifier is kept
    (``keep_head``). ``ema`` chooses the file's EMA copy. Nothing is downloaded.
    """
    if pretrained is None:
        return VideoMamba(model_config(name, **overrides))
    checkpoint = read_checkpoint(pretrained, ema)
    model = model_for_checkpoint(name, checkpoint, layout, keep_head, **overrides)
    load_into(model, checkpoint, layout=layout, keep_head=keep_head)
    return model


def model_for_checkpoint(name: str, checkpoint: Checkpoint, layout: str = "auto", keep_head: bool = True,
                         **overrides) -> VideoMamba:
    """The registered size ``name`` built to compute what ``checkpoint``'s model computes (see
    ``create_model``), not loaded yet."""
    overrides = inspect_source(checkpoint, layout).model_overrides(overrides)
    head = checkpoint.state.get("head.weight")
    if keep_head and head is not None and head.dim() == 2 and "num_classes" not in overrides:
        overrides["num_classes"] = head.shape[0]
    return VideoMamba(model_config(name, **overrides))
