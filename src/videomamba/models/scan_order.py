"""The order in which the backward direction reads the tokens.

The forward sequence is the class token (when there is one) followed by the patch tokens in
(t, h, w) raster order. The backward direction reads the patch tokens in a second order and the
class token last, so the class token sees the whole clip in that direction too.
"""

from __future__ import annotations

import torch

SCAN_ORDERS = ("spatiotemporal", "spatial", "temporal", "none")


def patch_backward_order(mode: str, n_t: int, n_h: int, n_w: int) -> torch.Tensor | None:
    """Permutation of the n_t*n_h*n_w patch indices read by the backward scan (None for 'none').

    spatiotemporal: the whole sequence reversed; spatial: each frame's tokens reversed, frames in
    order; temporal: frames reversed, each frame intact.
    """
    if mode not in SCAN_ORDERS:
        raise ValueError(f"unknown scan order {mode!r}; choose from {SCAN_ORDERS}")
    if mode == "none":
        return None
    grid = torch.arange(n_t * n_h * n_w).view(n_t, n_h * n_w)
    if mode == "spatiotemporal":
        grid = grid.flip(0).flip(1)
    elif mode == "spatial":
        grid = grid.flip(1)
    else:
        grid = grid.flip(0)
    return grid.reshape(-1)


def backward_order(mode: str, n_t: int, n_h: int, n_w: int, cls_token: bool = True) -> torch.Tensor | None:
    """Index ``idx`` such that ``x[:, idx]`` is the backward scan's sequence.

    ``x`` is the forward sequence (B, 1 + n_t*n_h*n_w, d) with the class token first, or
    (B, n_t*n_h*n_w, d) without one. With a class token it is read last. Mode 'none' gives None.
    """
    patches = patch_backward_order(mode, n_t, n_h, n_w)
    if patches is None or not cls_token:
        return patches
    return torch.cat([patches + 1, torch.zeros(1, dtype=torch.long)])
