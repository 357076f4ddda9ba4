"""Frame orders of the frame-shuffle test, applied to (..., C, T, H, W) clips.

The paper's orders on 8 units (1-based): interleaved [1,8,2,7,3,6,4,5], pairwise
[1,2,7,8,5,6,3,4], block-wise [5,6,7,8,1,2,3,4]; sequential is the identity. For any even number
of units 2m they generalise as: interleaved takes alternately from the front and the back;
pairwise keeps the first pair and then takes the other pairs in reverse order; block-wise swaps the
two halves. The unit is one tubelet step (2 frames) by default, one frame on request.
"""

from __future__ import annotations

import torch

SHUFFLE_ORDERS = ("sequential", "blockwise", "pairwise", "interleaved")


def shuffle_order(name: str, units: int) -> list[int]:
    """0-based permutation of ``units`` units for the named order."""
    if name not in SHUFFLE_ORDERS:
        raise ValueError(f"unknown shuffle order {name!r}; choose from {SHUFFLE_ORDERS}")
    if name == "sequential":
        return list(range(units))
    if units % 2:
        raise ValueError(f"the {name} order needs an even number of units, got {units}")
    half = units // 2
    if name == "blockwise":
        return list(range(half, units)) + list(range(half))
    if name == "interleaved":
        order = []
        for i in range(half):
            order += [i, units - 1 - i]
        return order
    if units % 4 and units > 2:
        raise ValueError(f"the pairwise order needs a multiple of 4 units (or 2), got {units}")
    pairs = [[2 * p, 2 * p + 1] for p in range(half)]
    return [u for pair in [pairs[0]] + pairs[1:][::-1] for u in pair]


def shuffle_frames(video: torch.Tensor, name: str, unit: int = 2) -> torch.Tensor:
    """Reorder the frames of (..., C, T, H, W) video in units of ``unit`` frames."""
    frames = video.shape[-3]
    if frames % unit:
        raise ValueError(f"{frames} frames are not a multiple of the shuffle unit {unit}")
    order = shuffle_order(name, frames // unit)
    index = torch.tensor([u * unit + k for u in order for k in range(unit)], device=video.device)
    return video.index_select(video.dim() - 3, index)
