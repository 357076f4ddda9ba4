"""Models: tokenizer, positional embeddings, scan orders, the mixer and the VideoMamba model."""

from .scan_order import SCAN_ORDERS, backward_order
from .pos_embed import POS_EMBEDS
from .factory import create_model
from .videomamba import Internals, VideoMamba, VideoMambaConfig, list_models, model_config, register_model

__all__ = ["VideoMamba", "VideoMambaConfig", "Internals", "create_model", "list_models", "model_config",
           "register_model", "backward_order", "SCAN_ORDERS", "POS_EMBEDS"]
