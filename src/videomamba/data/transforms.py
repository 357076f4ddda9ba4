"""Clip augmentation with torchvision.transforms.v2 on ``tv_tensors.Video``: one random draw per clip.

Training: RandomResizedCrop (VideoMAE's scale (0.08, 1) and ratio (3/4, 4/3)) -> horizontal flip
(with an optional label map that swaps left/right classes, or off) -> RandAugment -> float,
normalise -> RandomErasing (p 0.25, the same box on every frame). Test: short-side resize, then a
centre crop or three crops along the long side, for each temporal clip.

RandAugment: torchvision's policy (``v2.RandAugment``, 2 ops at magnitude 9) is not the timm policy
``rand-m7-n4-mstd0.5-inc1`` that VideoMAE and OpenGVLab's VideoMamba train with. Both are offered;
the default is ``timm`` (4 ops, magnitude 7 with noise std 0.5, each op applied with probability 0.5,
the 'increasing' op set), implemented here on torchvision's functional ops, one draw per clip.

Batch level: ``SoftTargets`` turns labels into soft targets with label smoothing and, optionally,
torchvision's v2 MixUp / CutMix on the (B, C, T, H, W) batch (they mix along the batch and cut the
last two axes, H and W, identically for every frame; timm's Mixup cuts the wrong axes of 5-D input).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FILL = [124, 116, 104]  # ImageNet mean in uint8, timm's fill for geometric ops


def _signed(value: float, rng: np.random.Generator) -> float:
    return value if rng.random() < 0.5 else -value


class TimmRandAugment:
    """timm's ``rand-m{M}-n{N}-mstd{S}-inc1`` on uint8 (..., C, H, W): one draw for the whole clip."""

    OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing",
           "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
           "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")

    def __init__(self, num_ops: int = 4, magnitude: float = 7.0, magnitude_std: float = 0.5, prob: float = 0.5):
        self.num_ops, self.magnitude, self.magnitude_std, self.prob = num_ops, magnitude, magnitude_std, prob

    def _apply(self, name: str, video: torch.Tensor, level: float, rng: np.random.Generator) -> torch.Tensor:
        frac = level / 10.0
        h, w = video.shape[-2:]
        if name == "AutoContrast":
            return TF.autocontrast(video)
        if name == "Equalize":
            return TF.equalize(video)
        if name == "Invert":
            return TF.invert(video)
        if name == "Rotate":
            return TF.rotate(video, _signed(30.0 * frac, rng), fill=FILL)
        if name == "PosterizeIncreasing":
            return TF.posterize(video, max(1, 4 - int(4 * frac)))
        if name == "SolarizeIncreasing":
            return TF.solarize(video, 256 - int(256 * frac))
        if name == "SolarizeAdd":
            added = (video.int() + int(110 * frac)).clamp(0, 255).to(torch.uint8)
            return torch.where(video < 128, added, video)
        factor = 1.0 + _signed(0.9 * frac, rng)
        if name == "ColorIncreasing":
            return TF.adjust_saturation(video, factor)
        if name == "ContrastIncreasing":
            return TF.adjust_contrast(video, factor)
        if name == "BrightnessIncreasing":
            return TF.adjust_brightness(video, factor)
        if name == "SharpnessIncreasing":
            return TF.adjust_sharpness(video, factor)
        if name in ("ShearX", "ShearY"):
            degrees = math.degrees(math.atan(_signed(0.3 * frac, rng)))
            shear = [degrees, 0.0] if name == "ShearX" else [0.0, degrees]
            return TF.affine(video, angle=0.0, translate=[0, 0], scale=1.0, shear=shear, fill=FILL)
        if name in ("TranslateXRel", "TranslateYRel"):
            shift = _signed(0.45 * frac, rng)
            translate = [round(shift * w), 0] if name == "TranslateXRel" else [0, round(shift * h)]
            return TF.affine(video, angle=0.0, translate=translate, scale=1.0, shear=[0.0, 0.0], fill=FILL)
        raise ValueError(name)

    def __call__(self, video: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        for name in rng.choice(self.OPS, self.num_ops, replace=True):
            if rng.random() > self.prob:
                continue
            level = float(np.clip(rng.normal(self.magnitude, self.magnitude_std), 0.0, 10.0))
            video = self._apply(str(name), video, level, rng)
        return video


class ClipTransform:
    """uint8 clips (N, T, C, H, W) -> float (N * crops, C, T, size, size), plus whether it flipped.

    ``train``: the augmentation chain above on each clip (N is 1 in training). Test: resize the
    short side to ``size`` (or ``test_short_side``) and take ``test_crops`` (1: centre, 3: along the
    long side) per clip, clip-major (view v = clip * crops + crop).
    """

    def __init__(self, size: int, train: bool, *, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), flip: bool = True,
                 randaugment: str | None = "timm", randaug_ops: int = 4, randaug_magnitude: float = 7.0,
                 erase_prob: float = 0.25, test_crops: int = 1, test_short_side: int | None = None,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD):
        if randaugment not in (None, "none", "timm", "torchvision"):
            raise ValueError(f"randaugment must be 'timm', 'torchvision' or None, got {randaugment!r}")
        if test_crops not in (1, 3):
            raise ValueError(f"test_crops must be 1 or 3, got {test_crops}")
        self.size, self.train, self.flip, self.test_crops = size, train, flip, test_crops
        self.test_short_side = test_short_side or size
        self.crop = v2.RandomResizedCrop(size, scale=scale, ratio=ratio, antialias=True)
        self.randaugment = None
        if randaugment == "timm":
            self.randaugment = TimmRandAugment(randaug_ops, randaug_magnitude)
        elif randaugment == "torchvision":
            tv_randaug = v2.RandAugment(num_ops=2, magnitude=9, fill=FILL)
            self.randaugment = lambda video, rng: tv_randaug(video)
        self.normalize = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])
        self.erase = v2.RandomErasing(p=erase_prob, value=0.0) if erase_prob > 0 else None

    def output_shape(self, sampling) -> tuple[int, ...]:
        """(V, C, T, H, W) of one item, for padding bad samples."""
        views = 1 if self.train else sampling.test_clips * self.test_crops
        return views, 3, sampling.clip_len, self.size, self.size

    def _train_clip(self, clip: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, bool]:
        video = tv_tensors.Video(clip)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.integers(2**62)))  # v2 draws from torch's RNG: seed it per clip
            video = self.crop(video)
            flipped = self.flip and rng.random() < 0.5
            if flipped:
                video = TF.horizontal_flip(video)
            if self.randaugment is not None:
                video = tv_tensors.wrap(self.randaugment(video.as_subclass(torch.Tensor), rng), like=video)
            video = self.normalize(video)
            if self.erase is not None:
                video = self.erase(video)
        return video.as_subclass(torch.Tensor).permute(1, 0, 2, 3), flipped

    def _test_views(self, clip: torch.Tensor) -> list[torch.Tensor]:
        video = TF.resize(tv_tensors.Video(clip), self.test_short_side, antialias=True)
        height, width = video.shape[-2:]
        crop = self.size
        if self.test_crops == 1:
            offsets = [((height - crop) // 2, (width - crop) // 2)]
        elif width >= height:
            offsets = [((height - crop) // 2, x) for x in (0, (width - crop) // 2, width - crop)]
        else:
            offsets = [(y, (width - crop) // 2) for y in (0, (height - crop) // 2, height - crop)]
        views = []
        for top, left in offsets:
            view = TF.crop(video, top, left, crop, crop)
            views.append(self.normalize(view).as_subclass(torch.Tensor).permute(1, 0, 2, 3))
        return views

    def __call__(self, clips: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, bool]:
        if self.train:
            views, flips = zip(*(self._train_clip(clip, rng) for clip in clips))
            return torch.stack(views), any(flips)
        return torch.stack([v for clip in clips for v in self._test_views(clip)]), False


class SoftTargets:
    """Labels (B,) -> soft targets (B, K): label smoothing, and MixUp/CutMix on the batch if enabled.

    ``mix_prob``: chance a batch is mixed; MixUp or CutMix chosen with equal chance when both alphas
    are positive. The video batch is (B, C, T, H, W); CutMix cuts the same H x W box in every frame.
    """

    def __init__(self, num_classes: int, smoothing: float = 0.1, mixup_alpha: float = 0.0,
                 cutmix_alpha: float = 0.0, mix_prob: float = 1.0):
        self.num_classes, self.smoothing, self.mix_prob = num_classes, smoothing, mix_prob
        mixers = []
        if mixup_alpha > 0:
            mixers.append(v2.MixUp(alpha=mixup_alpha, num_classes=num_classes))
        if cutmix_alpha > 0:
            mixers.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
        self.mixer = v2.RandomChoice(mixers) if mixers else None

    def __call__(self, video: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mixer is not None and torch.rand(()) < self.mix_prob:
            mixed, targets = self.mixer(tv_tensors.Video(video), labels)
            video = mixed.as_subclass(torch.Tensor)
        else:
            targets = torch.nn.functional.one_hot(labels, self.num_classes).float()
        targets = targets * (1.0 - self.smoothing) + self.smoothing / self.num_classes
        return video, targets
