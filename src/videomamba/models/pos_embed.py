"""Positional embeddings of the video tokens, built from an image table where the paper says so.

Every scheme yields one joint table over the n_t*n_h*n_w patch tokens (the paper keeps no separate
temporal table). The learned schemes differ only in how that table is initialised from an image
table P_image (n_h*n_w, d): copied n_t times (temporal expanding, the paper's default and best),
interpolated along the token axis (spatial interpolation), or interpolated along channels to
d*n_t and reshaped (embedding-dim interpolation); 'random' ignores it. Without an image checkpoint
the image table is itself drawn at random (trunc-normal, std 0.02), so the schemes still differ in
structure exactly as they do with ImageNet weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

POS_EMBEDS = ("temporal_expand", "spatial_interp", "embed_dim_interp", "random", "sinusoidal", "none")
LEARNED_POS_EMBEDS = ("temporal_expand", "spatial_interp", "embed_dim_interp", "random")


def random_table(tokens: int, dim: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A (tokens, dim) table, truncated normal with std 0.02 (ViT's init)."""
    table = torch.empty(tokens, dim)
    torch.nn.init.trunc_normal_(table, std=0.02, a=-0.04, b=0.04, generator=generator)
    return table


def video_table_from_image(scheme: str, image_table: torch.Tensor, n_t: int) -> torch.Tensor:
    """Build the joint (n_t*n_h*n_w, d) table from an image table (n_h*n_w, d) by ``scheme``."""
    spatial, dim = image_table.shape
    if scheme == "temporal_expand":
        return image_table.repeat(n_t, 1)
    if scheme == "spatial_interp":
        # (1, d, n_h*n_w) -> (1, d, n_t*n_h*n_w): linear interpolation along the token axis.
        stretched = F.interpolate(image_table.t()[None], size=n_t * spatial, mode="linear", align_corners=True)
        return stretched[0].t().contiguous()
    if scheme == "embed_dim_interp":
        # (1, n_h*n_w, d) -> (1, n_h*n_w, d*n_t) along channels, then split channels over time:
        # token (t, s) takes channels [t*d, (t+1)*d) of spatial token s.
        stretched = F.interpolate(image_table[None], size=dim * n_t, mode="linear", align_corners=True)[0]
        return stretched.view(spatial, n_t, dim).transpose(0, 1).reshape(n_t * spatial, dim).contiguous()
    if scheme == "random":
        return random_table(n_t * spatial, dim)
    raise ValueError(f"positional scheme {scheme!r} has no learned table; learned schemes: {LEARNED_POS_EMBEDS}")


def sinusoidal_table(tokens: int, dim: int) -> torch.Tensor:
    """1-D sine-cosine table over the raster index of the tokens (Vaswani et al.), (tokens, dim)."""
    position = torch.arange(tokens, dtype=torch.float64)[:, None]
    freqs = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64) * (-math.log(10000.0) / dim))
    table = torch.zeros(tokens, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * freqs)
    table[:, 1::2] = torch.cos(position * freqs[: dim // 2])
    return table.float()


def resample_table(table: torch.Tensor, old_grid: tuple[int, int, int], new_grid: tuple[int, int, int]) -> torch.Tensor:
    """Trilinearly resample a joint (n_t*n_h*n_w, d) table from ``old_grid`` to ``new_grid``."""
    if tuple(old_grid) == tuple(new_grid):
        return table
    dim = table.shape[-1]
    volume = table.reshape(*old_grid, dim).permute(3, 0, 1, 2)[None]
    volume = F.interpolate(volume if volume.dtype == torch.float64 else volume.float(), size=tuple(new_grid),
                           mode="trilinear", align_corners=False)
    return volume[0].permute(1, 2, 3, 0).reshape(-1, dim).to(table.dtype)
