"""VideoMamba (KAIST, ECCV 2024): config, model and the registry of named sizes.

(B, C, T, H, W) -> tubelet tokens (t, h, w order) + joint positional table -> class token first ->
L pre-norm residual blocks around a bidirectional Mamba mixer -> final RMSNorm -> class token (or
mean of the tokens) -> linear head. Every variant of the paper (scan order, positional scheme, size,
class token) is a field of ``VideoMambaConfig``; sizes are registered configs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.utils.checkpoint
from torch import nn

from ..ops import ScanOrder, add_rms_norm
from .mixer import BiMambaMixer, compute_dtype
from .pos_embed import (LEARNED_POS_EMBEDS, POS_EMBEDS, random_table, resample_table,
                        sinusoidal_table, video_table_from_image)
from .scan_order import SCAN_ORDERS
from .tokenizer import TubeletEmbed


@dataclass
class VideoMambaConfig:
    """Everything that defines a VideoMamba. Defaults are the paper's VideoMamba-S at 16 frames."""

    embed_dim: int = 384
    depth: int = 24
    d_state: int = 16
    expand: int = 2
    d_conv: int = 4
    dt_rank: int | None = None  # None: ceil(embed_dim / 16), as Mamba
    num_classes: int = 400
    num_frames: int = 16
    img_size: int = 224
    in_chans: int = 3
    tubelet: tuple[int, int, int] = (2, 16, 16)
    scan_order: str = "spatiotemporal"  # spatiotemporal | spatial | temporal | none
    pos_embed: str = "temporal_expand"  # temporal_expand | spatial_interp | embed_dim_interp | random | sinusoidal | none
    cls_token: bool = True
    global_pool: str = "auto"  # auto | token | mean; auto = token unless there is no class token or no backward scan
    combine: str = "mean"  # mean (Vim) | sum (OpenGVLab VideoMamba)
    drop_path_rate: float = 0.0
    drop_rate: float = 0.0  # dropout before the head
    norm_eps: float = 1e-5
    class_names: list[str] | None = None

    def __post_init__(self):
        self.tubelet = tuple(int(s) for s in self.tubelet)
        if len(self.tubelet) != 3:
            raise ValueError(f"tubelet must be (t, h, w), got {self.tubelet}")
        if self.scan_order not in SCAN_ORDERS:
            raise ValueError(f"unknown scan_order {self.scan_order!r}; choose from {SCAN_ORDERS}")
        if self.pos_embed not in POS_EMBEDS:
            raise ValueError(f"unknown pos_embed {self.pos_embed!r}; choose from {POS_EMBEDS}")
        if self.global_pool not in ("auto", "token", "mean"):
            raise ValueError(f"global_pool must be auto, token or mean, got {self.global_pool!r}")
        if self.global_pool == "token" and not self.cls_token:
            raise ValueError("global_pool='token' needs cls_token=True")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for num_classes={self.num_classes}")
        for name, size, step in (("num_frames", self.num_frames, self.tubelet[0]),
                                 ("img_size", self.img_size, self.tubelet[1]),
                                 ("img_size", self.img_size, self.tubelet[2])):
            if size % step:
                raise ValueError(f"{name}={size} is not a multiple of the tubelet size {step} (tubelet {self.tubelet})")

    @property
    def grid(self) -> tuple[int, int, int]:
        """(n_t, n_h, n_w) of the configured input shape."""
        t, h, w = self.tubelet
        return self.num_frames // t, self.img_size // h, self.img_size // w

    @property
    def pool(self) -> str:
        """The readout actually used: 'token' or 'mean'."""
        if self.global_pool != "auto":
            return self.global_pool
        return "token" if self.cls_token and self.scan_order != "none" else "mean"

    def to_dict(self) -> dict:
        """Plain-Python form (lists, not tuples) for JSON metadata and checkpoints."""
        out = dataclasses.asdict(self)
        out["tubelet"] = list(self.tubelet)
        return out

    @classmethod
    def from_dict(cls, values: dict) -> "VideoMambaConfig":
        """Inverse of ``to_dict``; unknown keys are an error naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown VideoMambaConfig keys {unknown}; known keys: {sorted(known)}")
        return cls(**values)


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero the whole residual branch of a sample with probability ``rate``."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep


class Block(nn.Module):
    """Pre-norm residual block: residual + drop_path(mixer(RMSNorm(residual))), residual in float32.

    The add is left to whoever reads the residual next (the next block, or the final norm), where
    ``ops.add_rms_norm`` fuses it with that norm: a block takes the residual stream and the previous
    block's output (None for the first block) and returns the stream with that output added, and its own.
    """

    def __init__(self, cfg: VideoMambaConfig, drop_path_rate: float):
        super().__init__()
        self.norm = nn.RMSNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.mixer = BiMambaMixer(cfg.embed_dim, d_state=cfg.d_state, expand=cfg.expand, dt_rank=cfg.dt_rank,
                                  d_conv=cfg.d_conv, bidirectional=cfg.scan_order != "none", combine=cfg.combine)
        self.drop_path_rate = drop_path_rate

    def forward(self, residual: torch.Tensor, branch: torch.Tensor | None = None, order: ScanOrder | None = None,
                return_delta: bool = False, recompute: bool = False):
        """(residual + branch, this block's output (drop path applied), the mixer's Δ or None)."""
        residual, hidden = add_rms_norm(residual, branch, self.norm.weight, self.norm.eps, compute_dtype(residual))
        out = self.mixer(hidden, order, return_delta, recompute)
        out, deltas = out if return_delta else (out, None)
        if self.drop_path_rate and self.training:  # the stream's dtype: the rescale 1 / keep not rounded to bf16
            out = drop_path(out.to(residual.dtype), self.drop_path_rate, True)
        return residual, out, deltas


@dataclass
class Internals:
    """What a forward pass can hand back beside its output.

    deltas[layer] = (forward, backward): channel-mean Δ, (B, L) over the full sequence (class token
    included) in forward order; backward is None without a backward scan.
    features[layer]: the residual stream after that layer, (B, L, d).
    grid: (n_t, n_h, n_w) of the patch tokens; prefix: number of leading non-patch tokens.
    """

    grid: tuple[int, int, int]
    prefix: int
    deltas: list[tuple[torch.Tensor, torch.Tensor | None]] = field(default_factory=list)
    features: list[torch.Tensor] = field(default_factory=list)


class VideoMamba(nn.Module):
    """The VideoMamba classifier. Input (B, C, T, H, W) float; output (B, num_classes)."""

    def __init__(self, cfg: VideoMambaConfig, image_pos_table: torch.Tensor | None = None):
        super().__init__()
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        self.patch_embed = TubeletEmbed(cfg.tubelet, cfg.in_chans, cfg.embed_dim)
        n_t, n_h, n_w = cfg.grid
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim)) if cfg.cls_token else None
        self.pos_embed = None
        if cfg.pos_embed in LEARNED_POS_EMBEDS:
            if image_pos_table is None:
                image_pos_table = random_table(n_h * n_w, cfg.embed_dim)
            table = video_table_from_image(cfg.pos_embed, image_pos_table, n_t)
            self.pos_embed = nn.Parameter(table[None])
        rates = torch.linspace(0, cfg.drop_path_rate, cfg.depth).tolist()
        self.layers = nn.ModuleList(Block(cfg, rate) for rate in rates)
        self.norm_f = nn.RMSNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.head_drop = nn.Dropout(cfg.drop_rate)
        self.head = nn.Linear(cfg.embed_dim, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        # recompute blocks in the backward pass instead of storing their activations: False, True (every
        # block) or the number of leading blocks (memory against time, as OpenGVLab's checkpoint_num)
        self.grad_checkpointing: bool | int = False
        # inside the blocks that are stored, recompute the mixer's large cheap activations (in_proj and conv
        # outputs, Δ) in the backward instead of storing them (``BiMambaMixer.forward``)
        self.recompute_activations: bool = False
        self.init_weights()

    def init_weights(self) -> None:
        """Vim's init: trunc-normal(0.02) linears (dt_proj keeps Mamba's), zero biases, class token
        trunc-normal(0.02); out_proj scaled by 1/sqrt(depth) (GPT-2's pre-norm residual rescale)."""
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear) and not name.endswith("dt_proj"):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for layer in self.layers:
            with torch.no_grad():
                layer.mixer.out_proj.weight.div_(math.sqrt(self.cfg.depth))
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)

    @property
    def prefix_tokens(self) -> int:
        return 1 if self.cls_token is not None else 0

    def positional_table(self, grid: tuple[int, int, int]) -> torch.Tensor | None:
        """The (n_t*n_h*n_w, d) table for a token grid, resampled from the configured grid if needed."""
        if self.cfg.pos_embed == "none":
            return None
        if self.cfg.pos_embed == "sinusoidal":
            return sinusoidal_table(math.prod(grid), self.cfg.embed_dim).to(self.patch_embed.proj.weight.device)
        return resample_table(self.pos_embed[0], self.cfg.grid, grid)

    def scan_order(self, grid: tuple[int, int, int]) -> ScanOrder | None:
        """The backward direction's order of the full sequence as positions the ops compute (None for
        'none'); the same permutation as ``backward_order`` returns as an index."""
        if self.cfg.scan_order == "none":
            return None
        if self.cfg.scan_order == "spatiotemporal":  # the whole sequence reversed, class token last
            return ScanOrder("reverse")
        return ScanOrder(self.cfg.scan_order, grid[1] * grid[2], self.prefix_tokens)

    def forward_features(self, video: torch.Tensor, internals: Internals | None = None,
                         record: tuple[str, ...] = ()) -> torch.Tensor:
        """(B, C, T, H, W) -> normed tokens (B, prefix + n_t*n_h*n_w, d).

        To look inside, pass an empty ``Internals`` and ``record`` with 'delta' and/or 'features';
        they are filled during this same forward pass.
        """
        tokens, grid = self.patch_embed(video)
        table = self.positional_table(grid)
        if table is not None:
            tokens = tokens + table.to(tokens.dtype)
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1).to(tokens.dtype), tokens], dim=1)
        order = self.scan_order(grid)
        if internals is not None:
            internals.grid, internals.prefix = grid, self.prefix_tokens
        want_delta = internals is not None and "delta" in record
        residual = tokens.to(torch.promote_types(tokens.dtype, torch.float32))  # float32 at least
        recomputed = 0
        if self.training and torch.is_grad_enabled():
            recomputed = len(self.layers) if self.grad_checkpointing is True else int(self.grad_checkpointing or 0)
        # saved-tensor hooks are not traced by torch.compile: a compiled model stores its activations
        recompute = (self.recompute_activations and torch.is_grad_enabled()
                     and not torch.compiler.is_compiling())
        branch = None
        for index, layer in enumerate(self.layers):
            if index < recomputed:  # recompute this block in the backward pass instead of storing it
                residual, branch, deltas = torch.utils.checkpoint.checkpoint(layer, residual, branch, order, want_delta,
                                                                             use_reentrant=False)
            else:
                residual, branch, deltas = layer(residual, branch, order, want_delta, recompute)
            if want_delta:
                internals.deltas.append(tuple(deltas))
            if internals is not None and "features" in record:
                internals.features.append(residual + branch)
        return add_rms_norm(residual, branch, self.norm_f.weight, self.norm_f.eps)[1]

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Normed tokens (B, L, d) -> logits (B, num_classes), or the pooled (B, d) with pre_logits."""
        if self.cfg.pool == "token":
            pooled = features[:, 0]
        else:
            pooled = features[:, self.prefix_tokens:].mean(dim=1)
        pooled = self.head_drop(pooled)
        return pooled if pre_logits else self.head(pooled)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(video))

    def forward_with_internals(self, video: torch.Tensor, record: tuple[str, ...] = ("delta",)):
        """Logits and an ``Internals`` with what ``record`` names, from one forward pass."""
        internals = Internals(grid=(0, 0, 0), prefix=0)
        logits = self.forward_head(self.forward_features(video, internals, record))
        return logits, internals

    def reset_classifier(self, num_classes: int, class_names: list[str] | None = None) -> None:
        """Replace the head for ``num_classes`` outputs (0: no head), freshly initialised."""
        self.cfg = dataclasses.replace(self.cfg, num_classes=num_classes, class_names=class_names)
        self.num_classes = num_classes
        device = self.norm_f.weight.device
        self.head = nn.Linear(self.cfg.embed_dim, num_classes).to(device) if num_classes > 0 else nn.Identity()
        if num_classes > 0:
            nn.init.trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)

    def no_weight_decay(self) -> set[str]:
        """Parameter names kept out of weight decay besides norms and biases."""
        return {"cls_token", "pos_embed"}


# ---------------------------------------------------------------------------- registry
_REGISTRY: dict[str, Callable[[], VideoMambaConfig]] = {}


def register_model(fn: Callable[[], VideoMambaConfig]) -> Callable[[], VideoMambaConfig]:
    """Register a named size: a function that returns its ``VideoMambaConfig``."""
    _REGISTRY[fn.__name__] = fn
    return fn


@register_model
def videomamba_nano() -> VideoMambaConfig:
    """Trains on a 2-core CPU in minutes: 64x64 clips of 16 frames, 8x4x4 tokens."""
    return VideoMambaConfig(embed_dim=96, depth=6, num_frames=16, img_size=64, num_classes=10)


@register_model
def videomamba_tiny() -> VideoMambaConfig:
    """Width 192, depth 24 (the paper's other width)."""
    return VideoMambaConfig(embed_dim=192, depth=24)


@register_model
def videomamba_small() -> VideoMambaConfig:
    """The paper's model: width 384, depth 24."""
    return VideoMambaConfig(embed_dim=384, depth=24)


@register_model
def videomamba_middle() -> VideoMambaConfig:
    """Width 576, depth 32 (Vim-M's size)."""
    return VideoMambaConfig(embed_dim=576, depth=32)


def list_models() -> list[str]:
    """Names of the registered sizes."""
    return sorted(_REGISTRY)


def model_config(name: str, **overrides) -> VideoMambaConfig:
    """The config of a named size with ``overrides`` applied (see ``create_model``)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered: {list_models()}")
    cfg = _REGISTRY[name]()
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if isinstance(overrides.get("tubelet"), int):  # an int is the temporal extent, patches unchanged
        overrides["tubelet"] = (overrides["tubelet"], cfg.tubelet[1], cfg.tubelet[2])
    known = {f.name for f in dataclasses.fields(VideoMambaConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for {name}; known: {sorted(known)}")
    return dataclasses.replace(cfg, **overrides)
