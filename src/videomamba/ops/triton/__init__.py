"""The Triton kernels of the mixer's fast path, one module per kernel family.

    settings       every launch choice (tiles, warps, pipelining, segments, builds): ``SCAN``, ``CONV``
    common         host helpers: whether Triton is there, memory orders, output buffers
    language       device helpers shared by the kernels (bf16 word loads, softplus, scan-order positions,
                   the state tile)
    scan_kernels   the selective scan's kernels; ``scan`` launches them (one direction or both in one launch)
    gate           the SiLU(z) gate on the two directions' sum, and its backward
    reduce         sums of the partial results the scan backward writes
    conv           the depthwise conv + SiLU along the scan order
    norm           the pre-norm blocks' residual add fused with their RMSNorm

Each runs on CUDA tensors, or anywhere under TRITON_INTERPRET=1 (the tests). ``ops.selective_scan``
and ``ops.sequence_conv`` wrap them as custom ops and pick them where they apply.
"""

from .common import available, empty_like_layout, is_channels_last
from .gate import gate_output
from .scan import (checkpoint_shape, empty_state, empty_state_sums, triton_backward, triton_backward_pair,
                   triton_forward, triton_forward_pair)
from .settings import CONV, NORM, SCAN, override

__all__ = ["available", "is_channels_last", "empty_like_layout", "empty_state", "empty_state_sums", "checkpoint_shape",
           "triton_forward", "triton_backward", "triton_forward_pair", "triton_backward_pair", "gate_output",
           "SCAN", "CONV", "NORM", "override"]
