"""``create_model``: a registered size, built and, on request, loaded from a local weights file.

Kept apart from the model file so that the model knows nothing of the checkpoint converters, which
build on it (``models.convert``).
"""

from __future__ import annotations

from .convert import load_pretrained
from .videomamba import VideoMamba, model_config


def create_model(name: str, pretrained: str | None = None, **overrides) -> VideoMamba:
    """Build a registered VideoMamba, e.g. ``create_model('videomamba_small', num_classes=174)``.

    ``overrides`` are ``VideoMambaConfig`` fields: num_classes, num_frames, img_size, tubelet
    (an int sets the temporal extent only), scan_order, pos_embed, cls_token, drop_path_rate, ...
    ``pretrained``: a local weights file (see ``videomamba.models.convert``); nothing is downloaded.
    """
    model = VideoMamba(model_config(name, **overrides))
    if pretrained is not None:
        load_pretrained(model, pretrained)
    return model
