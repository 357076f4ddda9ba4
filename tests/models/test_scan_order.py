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


def _mixer_on_gathered_copies(mixer, hidden, index):
    """The mixer written the plain way: the backward direction runs on permuted copies of x and z
    (``index`` from ``backward_order``) with the reference scan, and its output is permuted back."""
    import torch.nn.functional as F

    from videomamba.ops import selective_scan, sequence_conv_silu

    x, z = (half.transpose(1, 2) for half in mixer.in_proj(hidden))
    inverse = torch.argsort(index)

    def direction(scan, x, z):
        u = F.silu(F.conv1d(x, scan.conv1d.weight, scan.conv1d.bias, padding=scan.conv1d.padding[0],
                            groups=x.shape[1])[..., :x.shape[-1]])
        assert torch.allclose(u, sequence_conv_silu(x, scan.conv1d.weight, scan.conv1d.bias))
        inputs = scan.project(u)
        return selective_scan(**inputs._asdict(), z=z, delta_softplus=True, backend="reference")

    y = direction(mixer.scan_fwd, x, z) + direction(mixer.scan_bwd, x[:, :, index], z[:, :, index])[:, :, inverse]
    return mixer.out_proj(y.transpose(1, 2)) * (0.5 if mixer.combine == "mean" else 1.0)


@pytest.mark.parametrize("scan_order", ["spatiotemporal", "spatial", "temporal"])
@pytest.mark.parametrize("cls_token", [True, False])
@pytest.mark.parametrize("combine", ["mean", "sum"])
def test_mixer_equals_scanning_gathered_copies(scan_order, cls_token, combine):
    """The mixer's one forward path (the backward order handed to the ops, which read the positions in
    it) against gathering permuted copies and scanning those with the reference loop: same output and
    same gradients of every parameter and of the input, float64."""
    torch.manual_seed(0)
    model = videomamba.create_model("videomamba_nano", num_frames=4, img_size=32, num_classes=5, depth=1,
                                    scan_order=scan_order, cls_token=cls_token, combine=combine).double()
    mixer = model.layers[0].mixer
    grid = model.cfg.grid
    index = backward_order(scan_order, *grid, cls_token=cls_token)
    hidden = torch.randn(2, len(index), model.cfg.embed_dim, dtype=torch.float64, requires_grad=True)
    results = []
    for run in (lambda h: mixer(h, model.scan_order(grid)), lambda h: _mixer_on_gathered_copies(mixer, h, index)):
        mixer.zero_grad()
        hidden.grad = None
        out = run(hidden)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        results.append((out.detach(), hidden.grad.clone(), [p.grad.clone() for p in mixer.parameters()]))
    (out_a, dh_a, grads_a), (out_b, dh_b, grads_b) = results
    torch.testing.assert_close(out_a, out_b, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(dh_a, dh_b, rtol=1e-10, atol=1e-12)
    for a, b in zip(grads_a, grads_b):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("mode", ["spatiotemporal", "spatial", "temporal"])
@pytest.mark.parametrize("cls_token", [True, False])
def test_computed_positions_are_the_backward_order(mode, cls_token):
    """ops.ScanOrder (what the kernels compute) and backward_order (what the gathers use) agree."""
    from videomamba.ops import ScanOrder

    n_t, n_h, n_w = 3, 2, 4
    computed = ScanOrder("reverse") if mode == "spatiotemporal" else ScanOrder(mode, n_h * n_w, int(cls_token))
    expected = backward_order(mode, n_t, n_h, n_w, cls_token=cls_token)
    assert torch.equal(computed.positions(n_t * n_h * n_w + int(cls_token)), expected)
