"""videomamba: VideoMamba (KAIST, ECCV 2024), a pure-Mamba video classifier, as a library and CLI."""

from .models import VideoMamba, VideoMambaConfig, create_model, list_models
from .ops import selective_scan

__version__ = "0.1.0"
__all__ = ["create_model", "list_models", "VideoMamba", "VideoMambaConfig", "selective_scan", "__version__"]
