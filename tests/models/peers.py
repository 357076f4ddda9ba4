"""Float64 ports of the peers' forward passes, written from their public code, to check that an
imported checkpoint computes here what it computes there.

* OpenGVLab VideoMamba (videomamba/image_sm/models/videomamba.py, video_sm/models/videomamba.py):
  class token first, ``pos_embed`` added to [class token, patches]; the video model then adds
  ``temporal_pos_embedding`` to the patch tokens of each frame; mamba_ssm's Mamba with ``bimamba``
  (v2: the backward direction on the flipped sequence, the two outputs summed before out_proj).
* Vim (hustvl/Vim, vim/models_mamba.py): the class token inserted at ``M // 2`` before ``pos_embed``
  is added; bimamba v2 with ``if_divide_out`` (the two outputs averaged).

Both use mamba_ssm's "Add -> RMSNorm -> Mixer" block with the residual in float32 (here float64),
the final ``norm_f`` on residual + hidden, and read the class token out. Weights are plain dicts in
the peers' key layout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-5


def rms_norm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * weight


def _scan(u, delta, A, B, C, D, z):
    """Mamba's selective scan as a loop: u, delta, z (b, d, L); A (d, n); B, C (b, n, L)."""
    b, d, L = u.shape
    h = u.new_zeros(b, d, A.shape[1])
    ys = []
    for t in range(L):
        h = torch.exp(delta[:, :, t, None] * A) * h + delta[:, :, t, None] * B[:, None, :, t] * u[:, :, t, None]
        ys.append((h * C[:, None, :, t]).sum(-1))
    y = torch.stack(ys, -1) + D[None, :, None] * u
    return y * F.silu(z)


def _direction(x, z, p: dict, suffix: str):
    """One direction of mamba_simple's bimamba v2 on (b, d_inner, L) x and z."""
    weight, bias = p[f"conv1d{suffix}.weight"], p[f"conv1d{suffix}.bias"]
    k = weight.shape[-1]
    u = F.silu(F.conv1d(x, weight, bias, padding=k - 1, groups=x.shape[1])[..., :x.shape[-1]])
    x_dbl = torch.einsum("rd,bdl->brl", p[f"x_proj{suffix}.weight"], u)
    rank, n = p[f"dt_proj{suffix}.weight"].shape[1], p[f"A{suffix}_log"].shape[1] if suffix else p["A_log"].shape[1]
    dt, B, C = x_dbl.split([rank, n, n], dim=1)
    delta = F.softplus(torch.einsum("dr,brl->bdl", p[f"dt_proj{suffix}.weight"], dt) + p[f"dt_proj{suffix}.bias"][:, None])
    A = -torch.exp(p["A_b_log" if suffix else "A_log"])
    return _scan(u, delta, A, B, C, p["D_b" if suffix else "D"], z)


def bimamba_mixer(hidden: torch.Tensor, p: dict, divide_out: bool) -> torch.Tensor:
    """mamba_simple.Mamba(bimamba_type='v2') on (B, L, dim): in_proj, both directions (the backward one
    on the flipped sequence, flipped back), summed (OpenGVLab) or averaged (Vim's div2), out_proj."""
    xz = torch.einsum("ed,bld->bel", p["in_proj.weight"], hidden)
    x, z = xz.chunk(2, dim=1)
    y = _direction(x, z, p, "") + _direction(x.flip(-1), z.flip(-1), p, "_b").flip(-1)
    if divide_out:
        y = y / 2
    return torch.einsum("de,bel->bld", p["out_proj.weight"], y)


def _layer_params(state: dict, i: int) -> dict:
    prefix = f"layers.{i}.mixer."
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def run_blocks(tokens: torch.Tensor, state: dict, divide_out: bool) -> torch.Tensor:
    """mamba_ssm's blocks (hidden, residual) and norm_f, as the peers' forward_features run them."""
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("layers."))
    hidden, residual = tokens, None
    for i in range(depth):
        residual = hidden if residual is None else residual + hidden
        hidden = bimamba_mixer(rms_norm(residual, state[f"layers.{i}.norm.weight"]), _layer_params(state, i), divide_out)
    return rms_norm(residual + hidden, state["norm_f.weight"])


def _patches_2d(image: torch.Tensor, state: dict) -> torch.Tensor:
    weight = state["patch_embed.proj.weight"]
    out = F.conv2d(image, weight, state["patch_embed.proj.bias"], stride=weight.shape[-1])
    return out.flatten(2).transpose(1, 2)


def opengvlab_image_forward(image: torch.Tensor, state: dict) -> torch.Tensor:
    """OpenGVLab's image VisionMamba: (B, 3, H, W) -> logits."""
    x = _patches_2d(image, state)
    x = torch.cat([state["cls_token"].expand(x.shape[0], -1, -1), x], dim=1) + state["pos_embed"]
    return run_blocks(x, state, divide_out=False)[:, 0] @ state["head.weight"].t() + state["head.bias"]


def opengvlab_video_forward(video: torch.Tensor, state: dict) -> torch.Tensor:
    """OpenGVLab's video VisionMamba: (B, 3, T, H, W) -> logits."""
    weight = state["patch_embed.proj.weight"]
    x = F.conv3d(video, weight, state["patch_embed.proj.bias"], stride=weight.shape[2:])
    b, c, t, h, w = x.shape
    x = x.permute(0, 2, 3, 4, 1).reshape(b * t, h * w, c)
    x = torch.cat([state["cls_token"].expand(x.shape[0], -1, -1), x], dim=1) + state["pos_embed"]
    cls_tokens = x[:b, :1]
    x = x[:, 1:].reshape(b, t, h * w, c) + state["temporal_pos_embedding"][0][None, :, None, :]
    x = torch.cat([cls_tokens, x.reshape(b, t * h * w, c)], dim=1)
    return run_blocks(x, state, divide_out=False)[:, 0] @ state["head.weight"].t() + state["head.bias"]


def vim_tokens(image: torch.Tensor, state: dict, middle: bool = True) -> tuple[torch.Tensor, int]:
    """Vim's sequence before the first block: patches with the class token inserted at M // 2 (or
    first), plus pos_embed; and the class token's position."""
    x = _patches_2d(image, state)
    position = x.shape[1] // 2 if middle else 0
    cls = state["cls_token"].expand(x.shape[0], -1, -1)
    x = torch.cat([x[:, :position], cls, x[:, position:]], dim=1)
    return x + state["pos_embed"], position


def vim_forward(image: torch.Tensor, state: dict, middle: bool = True) -> torch.Tensor:
    """Vim's forward (bimamba v2, div2, class token in the middle or first): (B, 3, H, W) -> logits."""
    x, position = vim_tokens(image, state, middle)
    return run_blocks(x, state, divide_out=True)[:, position] @ state["head.weight"].t() + state["head.bias"]
