import pytest
import torch
import torch.nn.functional as F

import videomamba
from videomamba.analysis.efficiency import count_macs, count_parameters
from videomamba.models.pos_embed import resample_table, video_table_from_image
from videomamba.models.tokenizer import inflate_patch_kernel


def tiny(**overrides):
    base = dict(embed_dim=16, depth=2, num_classes=5, num_frames=4, img_size=32)
    base.update(overrides)
    return videomamba.create_model("videomamba_nano", **base).eval()


def test_registry_and_front_door():
    assert {"videomamba_nano", "videomamba_tiny", "videomamba_small", "videomamba_middle"} <= set(videomamba.list_models())
    with pytest.raises(ValueError, match="unknown model"):
        videomamba.create_model("videomamba_huge")
    with pytest.raises(ValueError, match="unknown option"):
        videomamba.create_model("videomamba_nano", widht=3)


@pytest.mark.parametrize("frames,low,high,gflops", [(16, 26.3e6, 26.5e6, 34.2), (32, 26.8e6, 27.0e6, 68.5)])
def test_small_matches_paper(frames, low, high, gflops):
    model = videomamba.create_model("videomamba_small", num_frames=frames, num_classes=400)
    assert low <= count_parameters(model) <= high
    macs = count_macs(model.cfg)
    assert abs(macs["paper_comparable"] / 1e9 - gflops) <= 0.01 * gflops
    assert macs["full"] > macs["paper_comparable"]


def test_forward_shapes_and_head():
    model = tiny()
    video = torch.randn(2, 3, 4, 32, 32)
    assert model(video).shape == (2, 5)
    features = model.forward_features(video)
    assert features.shape == (2, 1 + 2 * 2 * 2, 16)
    assert model.forward_head(features, pre_logits=True).shape == (2, 16)
    model.reset_classifier(7)
    assert model(video).shape == (2, 7)


@pytest.mark.parametrize("T,H,W", [(8, 32, 32), (2, 48, 64), (4, 16, 16)])
def test_other_shapes_resample_positions(T, H, W):
    model = tiny()
    assert model(torch.randn(1, 3, T, H, W)).shape == (1, 5)


@pytest.mark.parametrize("shape,dim", [((1, 3, 5, 32, 32), "T=5"), ((1, 3, 4, 30, 32), "H=30"), ((1, 3, 4, 32, 40), "W=40")])
def test_bad_shape_names_dimension_value_and_tubelet(shape, dim):
    with pytest.raises(ValueError, match=rf"{dim} is not a positive multiple of the tubelet size"):
        tiny()(torch.randn(*shape))


def test_bad_rank_and_channels():
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        tiny()(torch.randn(3, 4, 32, 32))
    with pytest.raises(ValueError, match="channels"):
        tiny()(torch.randn(1, 1, 4, 32, 32))


def _class_token_state(model, video):
    return model.forward_features(video)[:, 0]


@pytest.mark.parametrize("mode", ["spatiotemporal", "spatial", "temporal"])
def test_backward_direction_reads_reordered_sequence(mode):
    torch.manual_seed(0)
    model = tiny(scan_order=mode).double()
    video = torch.randn(1, 3, 4, 32, 32, dtype=torch.float64)
    changed = video.clone()
    changed[:, :, -2:, -16:, -16:] += 1.0  # the last tubelet: only the last patch token changes
    diff = (_class_token_state(model, video) - _class_token_state(model, changed)).abs().max()
    # At init the effect is small (out_proj starts at std 0.02/sqrt(depth)) but far above float64
    # rounding (~1e-16); scan order 'none' below gives exactly zero.
    assert diff > 1e-10


def test_forward_only_class_token_sees_nothing():
    torch.manual_seed(0)
    model = tiny(scan_order="none").double()
    assert model.cfg.pool == "mean"
    video = torch.randn(1, 3, 4, 32, 32, dtype=torch.float64)
    changed = video.clone()
    changed[:, :, -2:, -16:, -16:] += 1.0
    diff = (_class_token_state(model, video) - _class_token_state(model, changed)).abs().max()
    assert diff == 0


def test_inflation_equals_2d_on_static_clip():
    torch.manual_seed(0)
    weight_2d = torch.randn(8, 3, 16, 16)
    bias = torch.randn(8)
    frame = torch.randn(1, 3, 32, 32)
    clip = frame[:, :, None].expand(1, 3, 2, 32, 32)
    out3d = F.conv3d(clip, inflate_patch_kernel(weight_2d, 2), bias, stride=(2, 16, 16))
    out2d = F.conv2d(frame, weight_2d, bias, stride=16)
    torch.testing.assert_close(out3d[:, :, 0], out2d, rtol=1e-5, atol=1e-5)


def test_temporal_expanding_gives_every_frame_the_image_table():
    image = torch.randn(6, 8)
    table = video_table_from_image("temporal_expand", image, n_t=3)
    assert table.shape == (18, 8)
    for t in range(3):
        assert torch.equal(table[6 * t:6 * (t + 1)], image)


def test_other_schemes_shapes_and_endpoints():
    image = torch.randn(6, 8)
    spatial = video_table_from_image("spatial_interp", image, n_t=3)
    assert spatial.shape == (18, 8)
    torch.testing.assert_close(spatial[0], image[0])
    torch.testing.assert_close(spatial[-1], image[-1])
    embed = video_table_from_image("embed_dim_interp", image, n_t=3)
    assert embed.shape == (18, 8)
    torch.testing.assert_close(embed[0, 0], image[0, 0])  # first channel of the first token kept
    torch.testing.assert_close(embed[-1, -1], image[-1, -1])


def test_resample_identity_and_shape():
    table = torch.randn(2 * 3 * 4, 5)
    assert torch.equal(resample_table(table, (2, 3, 4), (2, 3, 4)), table)
    assert resample_table(table, (2, 3, 4), (4, 6, 2)).shape == (48, 5)


@pytest.mark.parametrize("scheme", ["temporal_expand", "spatial_interp", "embed_dim_interp", "random", "sinusoidal", "none"])
def test_every_positional_scheme_runs(scheme):
    model = tiny(pos_embed=scheme)
    assert model(torch.randn(1, 3, 4, 32, 32)).shape == (1, 5)
    assert (model.pos_embed is not None) == (scheme not in ("sinusoidal", "none"))


def test_no_class_token_mean_pool_and_sum_combine():
    model = tiny(cls_token=False, combine="sum")
    assert model.cfg.pool == "mean"
    assert model.forward_features(torch.randn(1, 3, 4, 32, 32)).shape == (1, 8, 16)


def test_internals_from_one_pass():
    model = tiny()
    video = torch.randn(2, 3, 4, 32, 32)
    logits, internals = model.forward_with_internals(video, record=("delta", "features"))
    torch.testing.assert_close(logits, model(video))
    assert len(internals.deltas) == 2 and len(internals.features) == 2
    forward, backward = internals.deltas[0]
    assert forward.shape == backward.shape == (2, 9)
    assert (forward > 0).all() and internals.grid == (2, 2, 2) and internals.prefix == 1


def test_drop_path_trains_and_is_identity_in_eval():
    model = tiny(drop_path_rate=0.5)
    video = torch.randn(4, 3, 4, 32, 32)
    model.eval()
    torch.testing.assert_close(model(video), model(video))
    model.train()
    loss = model(video).sum()
    loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "scan_bwd" in n or "head" in n)


def test_backward_through_model_matches_reference_scan(monkeypatch):
    torch.manual_seed(1)
    model = tiny().double()
    video = torch.randn(1, 3, 4, 32, 32, dtype=torch.float64)
    grads = {}
    for backend in ("reference", "chunked"):
        monkeypatch.setenv("VIDEOMAMBA_SCAN_BACKEND", backend)
        model.zero_grad()
        model(video).sum().backward()
        grads[backend] = [p.grad.clone() for p in model.parameters()]
    for a, b in zip(grads["reference"], grads["chunked"]):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_scan_order_is_the_backward_order():
    """The model hands the mixers the backward order as positions to compute (``ScanOrder``): the
    reversal for the spatio-temporal mode, the per-frame modes with the class token read last."""
    import videomamba
    from videomamba.models import backward_order

    model = videomamba.create_model("videomamba_nano", embed_dim=32, depth=1)
    assert model.scan_order((2, 2, 2)).mode == "reverse"
    assert videomamba.create_model("videomamba_nano", embed_dim=32, depth=1, scan_order="none").scan_order((2, 2, 2)) is None
    for mode in ("spatial", "temporal"):
        order = videomamba.create_model("videomamba_nano", embed_dim=32, depth=1, scan_order=mode).scan_order((2, 2, 2))
        assert order.mode == mode and torch.equal(order.positions(9), backward_order(mode, 2, 2, 2))


def test_halves_projection_is_the_split_linear_forward_and_backward():
    """in_proj returns x and z from the two halves of one nn.Linear weight: the same values and
    gradients (weight and input) as splitting the full product, float64."""
    from videomamba.models.mixer import HalvesProjection

    torch.manual_seed(0)
    for bias in (False, True):
        halves = HalvesProjection(6, 10, bias=bias).double()
        full = torch.nn.Linear(6, 10, bias=bias).double()
        full.load_state_dict(halves.state_dict())
        x = torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True)
        x_ref = x.detach().clone().requires_grad_()
        got, want = halves(x), full(x_ref).chunk(2, dim=-1)
        grads = [torch.randn_like(w) for w in want]
        sum((g * o).sum() for g, o in zip(grads, got)).backward()
        sum((g * o).sum() for g, o in zip(grads, want)).backward()
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b)
        torch.testing.assert_close(x.grad, x_ref.grad)
        for name, p in halves.named_parameters():
            torch.testing.assert_close(p.grad, dict(full.named_parameters())[name].grad)


@pytest.mark.parametrize("recomputed", [True, 2])
def test_recomputing_blocks_gives_the_same_gradients(recomputed):
    """Gradient checkpointing of every block (True) or of the first N trades memory for time only."""
    import videomamba

    torch.manual_seed(0)
    model = videomamba.create_model("videomamba_nano", embed_dim=32, depth=3, num_frames=4, img_size=32).double()
    video = torch.randn(2, 3, 4, 32, 32, dtype=torch.float64)
    grads = []
    for setting in (False, recomputed):
        model.grad_checkpointing = setting
        model.zero_grad()
        model(video).square().sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
