"""Operators: the selective scan and its backends, the mixer's conv + SiLU, the
blocks' residual add + RMSNorm. Knows nothing of models or data."""

from .residual_norm import add_rms_norm
from .selective_scan import BACKENDS, ScanInputs, choose_backend, export_mode, selective_scan, selective_scan_pair
from .sequence_conv import sequence_conv_silu, sequence_conv_silu_pair
from .token_order import ScanOrder

__all__ = ["selective_scan", "selective_scan_pair", "ScanInputs", "sequence_conv_silu", "sequence_conv_silu_pair",
           "ScanOrder", "choose_backend", "export_mode", "BACKENDS", "add_rms_norm"]
