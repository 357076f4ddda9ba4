"""Operators: the selective scan and its backends, the mixer's conv + SiLU. Knows nothing of models or data."""

from .selective_scan import BACKENDS, choose_backend, export_mode, selective_scan
from .sequence_conv import sequence_conv_silu

__all__ = ["selective_scan", "sequence_conv_silu", "choose_backend", "export_mode", "BACKENDS"]
