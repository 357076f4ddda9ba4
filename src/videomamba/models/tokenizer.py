"""The video tokenizer: a Conv3d over non-overlapping tubelets, and its 2D-to-3D inflation."""

from __future__ import annotations

import torch
from torch import nn


class TubeletEmbed(nn.Module):
    """(B, C, T, H, W) -> (B, n_t*n_h*n_w, d) tokens in (t, h, w) order, and the grid (n_t, n_h, n_w)."""

    def __init__(self, tubelet: tuple[int, int, int], in_chans: int, embed_dim: int):
        super().__init__()
        self.tubelet = tuple(tubelet)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=self.tubelet, stride=self.tubelet)

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        if video.dim() != 5:
            raise ValueError(f"expected a video batch (B, C, T, H, W), got shape {tuple(video.shape)}")
        if video.shape[1] != self.proj.in_channels:
            raise ValueError(f"expected {self.proj.in_channels} channels (dimension 1 of (B, C, T, H, W)), "
                             f"got {video.shape[1]}")
        for name, size, step in zip("THW", video.shape[2:], self.tubelet):
            if size % step or size == 0:
                raise ValueError(f"input {name}={size} is not a positive multiple of the tubelet size "
                                 f"{step} along {name} (tubelet {self.tubelet})")
        tokens = self.proj(video)  # (B, d, n_t, n_h, n_w)
        grid = tuple(tokens.shape[2:])
        return tokens.flatten(2).transpose(1, 2), grid


def inflate_patch_kernel(weight_2d: torch.Tensor, temporal: int) -> torch.Tensor:
    """Inflate a 2D patch kernel (d, C, p, p) to 3D (d, C, temporal, p, p): repeat along time and
    divide by ``temporal``, so a clip of identical frames gives the 2D output."""
    return weight_2d.unsqueeze(2).repeat(1, 1, temporal, 1, 1) / temporal
