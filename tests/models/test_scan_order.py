import pytest
import torch

import videomamba

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


@pytest.mark.parametrize("scan_order", ["spatiotemporal", "spatial", "temporal", "none"])
@pytest.mark.parametrize("cls_token", [True, False])
def test_backward_order_read_in_place_gives_the_same_model(scan_order, cls_token):
    """The backward direction reading the forward-order tensors in its own order (the GPU's path: the
    conv and the scan address the positions) against gathering permuted copies (the CPU's path for
    the per-frame orders): same outputs, gradients and Δ."""
    from videomamba.models.mixer import BiMambaMixer

    torch.manual_seed(0)
    model = videomamba.create_model("videomamba_nano", num_frames=4, img_size=32, num_classes=5, depth=2,
                                    scan_order=scan_order, cls_token=cls_token).double()
    clip = torch.randn(2, 3, 4, 32, 32, dtype=torch.float64)
    results = []
    for in_place in (False, True):
        model.read_order_in_place = in_place
        for module in model.modules():
            if isinstance(module, BiMambaMixer):
                module.per_frame_in_place = in_place
        model.zero_grad()
        logits, internals = model.forward_with_internals(clip)
        logits.square().sum().backward()
        results.append((logits.detach(), [p.grad.clone() for p in model.parameters()], internals.deltas))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-12, atol=1e-12)
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    for layer_a, layer_b in zip(results[0][2], results[1][2]):  # Δ of both directions, in forward order
        for a, b in zip(layer_a, layer_b):
            assert (a is None) == (b is None)
            if a is not None:  # Δ is reported in float32 (its channel mean sums in each memory order)
                torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("mode", ["spatiotemporal", "spatial", "temporal"])
@pytest.mark.parametrize("cls_token", [True, False])
def test_computed_positions_are_the_backward_order(mode, cls_token):
    """ops.ScanOrder (what the kernels compute) and backward_order (what the gathers use) agree."""
    from videomamba.ops import ScanOrder

    n_t, n_h, n_w = 3, 2, 4
    computed = ScanOrder("reverse") if mode == "spatiotemporal" else ScanOrder(mode, n_h * n_w, int(cls_token))
    expected = backward_order(mode, n_t, n_h, n_w, cls_token=cls_token)
    assert torch.equal(computed.positions(n_t * n_h * n_w + int(cls_token)), expected)
