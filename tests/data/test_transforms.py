import numpy as np
import pytest
import torch

from videomamba.data.transforms import ClipTransform, SoftTargets, TimmRandAugment


def static_clip(frames=8, height=40, width=56, seed=0):
    g = torch.Generator().manual_seed(seed)
    frame = torch.randint(0, 256, (3, height, width), generator=g, dtype=torch.uint8)
    return frame[None, None].expand(1, frames, 3, height, width).contiguous()


@pytest.mark.parametrize("randaugment", ["timm", "torchvision", None])
def test_one_random_draw_for_every_frame(randaugment):
    transform = ClipTransform(32, train=True, randaugment=randaugment, erase_prob=1.0)
    for seed in range(8):
        video, _ = transform(static_clip(seed=seed), np.random.default_rng(seed))
        assert video.shape == (1, 3, 8, 32, 32)
        for t in range(1, 8):
            assert torch.equal(video[0, :, t], video[0, :, 0]), f"frame {t} differs (seed {seed})"


def test_flip_is_reported_and_can_be_off():
    clip = static_clip()
    flips = [ClipTransform(32, train=True, randaugment=None, erase_prob=0)(clip, np.random.default_rng(s))[1]
             for s in range(40)]
    assert 5 < sum(flips) < 35
    never = ClipTransform(32, train=True, flip=False, randaugment=None, erase_prob=0)
    assert not any(never(clip, np.random.default_rng(s))[1] for s in range(20))


def test_timm_randaugment_changes_pixels_and_keeps_dtype():
    video = static_clip()[0]
    changed = 0
    for s in range(10):
        out = TimmRandAugment()(video, np.random.default_rng(s))
        assert out.dtype == torch.uint8 and out.shape == video.shape
        changed += int(not torch.equal(out, video))
    assert changed >= 5


def test_multiview_layout_clip_major():
    clips = torch.zeros(2, 4, 3, 40, 80, dtype=torch.uint8)
    clips[1] = 255  # clip 1 white, clip 0 black
    clips[:, :, :, :, :10] = 128  # left edge gray: only the left crop sees it
    transform = ClipTransform(40, train=False, test_crops=3, mean=(0, 0, 0), std=(1, 1, 1))
    views, flipped = transform(clips, np.random.default_rng(0))
    assert views.shape == (6, 3, 4, 40, 40) and not flipped
    means = views.mean(dim=(1, 2, 3, 4))
    assert means[:3].max() < 0.3 and means[3:].min() > 0.7  # views 0-2 from clip 0, 3-5 from clip 1
    left_edge = views[:, 0, 0, 0, 0]
    assert torch.allclose(left_edge[[0, 3]], torch.tensor(128 / 255))


def test_soft_targets_smoothing_and_video_cutmix():
    labels = torch.tensor([0, 1, 2, 3])
    video = torch.arange(4.0).view(4, 1, 1, 1, 1).expand(4, 3, 4, 16, 16).contiguous()
    plain_video, plain = SoftTargets(5, smoothing=0.1)(video, labels)
    assert torch.equal(plain_video, video)
    torch.testing.assert_close(plain.sum(1), torch.ones(4))
    assert plain[0, 0] == pytest.approx(0.92)
    torch.manual_seed(0)
    mixed_video, mixed = SoftTargets(5, smoothing=0.0, cutmix_alpha=1.0)(video, labels)
    assert mixed_video.shape == video.shape and mixed.shape == (4, 5)
    # CutMix pastes the same H x W box in every frame and channel
    diff = mixed_video != video
    assert torch.equal(diff[:, :1, :1].expand_as(diff), diff)
    torch.testing.assert_close(mixed.sum(1), torch.ones(4))
