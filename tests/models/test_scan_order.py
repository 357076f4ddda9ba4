import pytest
import torch

from videomamba.models import backward_order


# Grid n_t=3, n_h=2, n_w=2: patch indices 0..11, frame t holds 4t..4t+3. With the class token the
# forward sequence is [cls, p0, ..., p11] and patch p_i sits at position i + 1.
HAND_WRITTEN = {
    "spatiotemporal": [12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
    "spatial": [4, 3, 2, 1, 8, 7, 6, 5, 12, 11, 10, 9, 0],
    "temporal": [9, 10, 11, 12, 5, 6, 7, 8, 1, 2, 3, 4, 0],
}


@pytest.mark.parametrize("mode", sorted(HAND_WRITTEN))
def test_backward_order_matches_definition(mode):
    assert backward_order(mode, 3, 2, 2).tolist() == HAND_WRITTEN[mode]
    without_cls = [i - 1 for i in HAND_WRITTEN[mode][:-1]]
    assert backward_order(mode, 3, 2, 2, cls_token=False).tolist() == without_cls


def test_spatiotemporal_is_full_reversal():
    x = torch.arange(1 + 4 * 3 * 5)
    assert torch.equal(x[backward_order("spatiotemporal", 4, 3, 5)], x.flip(0))


def test_none_and_unknown():
    assert backward_order("none", 3, 2, 2) is None
    with pytest.raises(ValueError, match="unknown scan order"):
        backward_order("diagonal", 3, 2, 2)


@pytest.mark.parametrize("cls_token", [True, False])
def test_spatiotemporal_order_is_the_whole_sequence_reversed(cls_token):
    """The model reads this order in place (reversed addressing) on that promise."""
    order = backward_order("spatiotemporal", 3, 2, 4, cls_token=cls_token)
    assert torch.equal(order, torch.arange(len(order) - 1, -1, -1))
