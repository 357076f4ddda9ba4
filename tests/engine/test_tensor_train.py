import pytest
import torch

from videomamba.engine.tensor_train import (
    TensorClips,
    TensorTrainSettings,
    augment,
    evaluate_clips,
    frame_index,
    to_model_input,
    train_on_tensors,
)
from videomamba.models import create_model


def test_frame_index_even_centred_and_jittered():
    assert frame_index(32, 8, 2, "cpu", train=False).tolist() == [[1 + 4 * i for i in range(8)]] * 2
    assert frame_index(16, 16, 1, "cpu", train=False).tolist() == [list(range(16))]
    index = frame_index(32, 16, 500, "cpu", train=True, generator=torch.Generator().manual_seed(0))
    offsets = index[:, 0]
    assert set(offsets.tolist()) == {0, 1}  # a random offset inside the stride of 2
    assert (index - offsets[:, None] == torch.arange(16) * 2).all()
    with pytest.raises(ValueError, match="cannot take 12 frames evenly from clips of 32"):
        frame_index(32, 12, 1, "cpu", train=False)


def test_augment_flip_maps_labels_and_mirrors_exactly():
    generator = torch.Generator().manual_seed(3)
    video = torch.randn(64, 3, 4, 8, 8, generator=generator)
    labels = torch.arange(64) % 10
    out, mapped = augment(video, labels, (1.0, 1.0), {0: 1, 1: 0, 6: 7, 7: 6}, 10, generator)
    flipped = ~torch.isclose(out, video, atol=1e-5).flatten(1).all(1)
    assert 0 < flipped.sum() < 64
    torch.testing.assert_close(out[flipped], video[flipped].flip(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[~flipped], video[~flipped], atol=1e-5, rtol=0)
    swap = torch.tensor([1, 0, 2, 3, 4, 5, 7, 6, 8, 9])
    assert torch.equal(mapped[flipped], swap[labels[flipped]])
    assert torch.equal(mapped[~flipped], labels[~flipped])


def test_augment_crop_is_one_window_for_all_frames():
    video = torch.randn(1, 3, 1, 16, 16).repeat(4, 1, 6, 1, 1)  # identical frames
    out, _ = augment(video, torch.zeros(4, dtype=torch.long), (0.5, 0.6), None, 10,
                     torch.Generator().manual_seed(0))
    assert torch.allclose(out[:, :, :1].expand_as(out), out)  # every frame cropped the same way
    assert not torch.allclose(out, video)


def test_tensor_clips_rejects_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        TensorClips(torch.zeros(2, 4, 8, 8, 3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="3 labels for 2 clips"):
        TensorClips(torch.zeros(2, 4, 8, 8, 3, dtype=torch.uint8), torch.zeros(3, dtype=torch.long))


def _order_task(count: int, seed: int) -> TensorClips:
    """Label 1: brightness rises over the clip; 0: it falls. Needs the frame order."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (count,), generator=generator)
    ramp = torch.linspace(40, 215, 8)
    frames = torch.where(labels[:, None] == 1, ramp, ramp.flip(0))[:, :, None, None, None].expand(count, 8, 16, 16, 3)
    noise = torch.randint(-10, 11, frames.shape, generator=generator)
    return TensorClips((frames + noise).clamp(0, 255).to(torch.uint8), labels)


def test_train_on_tensors_learns_an_order_task_and_shuffles_hurt_it():
    torch.manual_seed(0)
    model = create_model("videomamba_nano", embed_dim=32, depth=2, num_frames=8, img_size=16, tubelet=(2, 8, 8),
                         num_classes=2)
    settings = TensorTrainSettings(num_frames=8, epochs=6, batch_size=16, lr=3e-3, warmup_epochs=0.5, seed=0)
    result = train_on_tensors(model, _order_task(128, 0), _order_task(64, 1), settings)
    assert len(result.losses) == 6 and result.steps == 48
    assert result.losses[-1] < result.losses[0]
    assert result.top1 == 100.0
    # block-wise swaps the halves: a rising ramp becomes a jump down in the middle
    assert evaluate_clips(model, _order_task(64, 1), 8, frame_order="blockwise") < 90.0
    assert to_model_input(torch.zeros(1, 2, 4, 4, 3, dtype=torch.uint8)).shape == (1, 3, 2, 4, 4)
