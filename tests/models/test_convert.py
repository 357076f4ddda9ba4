"""Foreign checkpoints built from random weights in their exact layouts, loaded, and checked
tensor by tensor; our own safetensors and ONNX round trips."""

import argparse
import subprocess
import sys

import pytest
import torch

import videomamba
from videomamba.models.convert import load_into, read_state_dict, save_weights

D, DI, N, R, DEPTH = 32, 64, 16, 2, 2  # width, d_inner, d_state, dt_rank (ceil(32/16)), layers


def mixer_keys(prefix: str, g: torch.Generator) -> dict:
    """Vim's / OpenGVLab's bimamba-v2 mixer of one layer, key for key (shapes for d = 32)."""
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return {
        f"{prefix}A_log": r(DI, N), f"{prefix}A_b_log": r(DI, N), f"{prefix}D": r(DI), f"{prefix}D_b": r(DI),
        f"{prefix}in_proj.weight": r(2 * DI, D),
        f"{prefix}conv1d.weight": r(DI, 1, 4), f"{prefix}conv1d.bias": r(DI),
        f"{prefix}conv1d_b.weight": r(DI, 1, 4), f"{prefix}conv1d_b.bias": r(DI),
        f"{prefix}x_proj.weight": r(R + 2 * N, DI), f"{prefix}x_proj_b.weight": r(R + 2 * N, DI),
        f"{prefix}dt_proj.weight": r(DI, R), f"{prefix}dt_proj.bias": r(DI),
        f"{prefix}dt_proj_b.weight": r(DI, R), f"{prefix}dt_proj_b.bias": r(DI),
        f"{prefix}out_proj.weight": r(D, DI),
    }


def vim_state(grid: int = 4, seed: int = 0) -> dict:
    """Vim's image model: pos_embed (1, grid^2 + 1, d) with the class token in the middle row."""
    g = torch.Generator().manual_seed(seed)
    state = {"patch_embed.proj.weight": torch.randn(D, 3, 16, 16, generator=g),
             "patch_embed.proj.bias": torch.randn(D, generator=g),
             "pos_embed": torch.randn(1, grid * grid + 1, D, generator=g),
             "cls_token": torch.randn(1, 1, D, generator=g),
             "norm_f.weight": torch.randn(D, generator=g),
             "head.weight": torch.randn(1000, D, generator=g), "head.bias": torch.randn(1000, generator=g)}
    for i in range(DEPTH):
        state.update(mixer_keys(f"layers.{i}.mixer.", g))
        state[f"layers.{i}.norm.weight"] = torch.randn(D, generator=g)
    return state


def small(**overrides):
    return videomamba.create_model("videomamba_nano", embed_dim=D, depth=DEPTH, num_frames=4, img_size=64,
                                   num_classes=7, **overrides)


def save_vim(path, state):
    args = argparse.Namespace(model="vim_tiny_patch16_224_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2",
                              lr=5e-4)
    torch.save({"model": state, "optimizer": {}, "epoch": 299, "args": args}, path)
    return path


def test_vim_checkpoint_lands_tensor_by_tensor(tmp_path):
    state = vim_state()
    model = small()
    report = load_into(model, save_vim(tmp_path / "vim.pth", state))
    ours = model.state_dict()
    for i in range(DEPTH):
        for theirs, mine in (("A_log", "scan_fwd.A_log"), ("A_b_log", "scan_bwd.A_log"), ("D_b", "scan_bwd.D"),
                             ("conv1d_b.weight", "scan_bwd.conv1d.weight"), ("x_proj.weight", "scan_fwd.x_proj.weight"),
                             ("dt_proj_b.bias", "scan_bwd.dt_proj.bias"), ("in_proj.weight", "in_proj.weight"),
                             ("out_proj.weight", "out_proj.weight")):
            assert torch.equal(ours[f"layers.{i}.mixer.{mine}"], state[f"layers.{i}.mixer.{theirs}"]), (i, theirs)
        assert torch.equal(ours[f"layers.{i}.norm.weight"], state[f"layers.{i}.norm.weight"])
    assert torch.equal(ours["norm_f.weight"], state["norm_f.weight"])
    # Vim adds its class row (the middle one, 8 of 17) to the class token: folded in here
    assert torch.equal(ours["cls_token"], state["cls_token"] + state["pos_embed"][:, 8:9])
    # 2D kernel inflated over the tubelet's 2 frames and averaged
    assert torch.allclose(ours["patch_embed.proj.weight"][:, :, 0], state["patch_embed.proj.weight"] / 2)
    assert torch.equal(ours["patch_embed.proj.weight"][:, :, 0], ours["patch_embed.proj.weight"][:, :, 1])
    # class row (middle, index 8 of 17) dropped; temporal expanding: each of the 2 time steps = image table
    image = torch.cat([state["pos_embed"][0, :8], state["pos_embed"][0, 9:]])
    assert torch.equal(ours["pos_embed"][0], image.repeat(2, 1))
    assert set(report.dropped) == {"head.weight", "head.bias"} and not report.missing and not report.unexpected
    assert "1000 classes" in report.dropped["head.weight"]


def test_vim_other_grid_is_resampled_and_schemes_follow(tmp_path):
    path = save_vim(tmp_path / "vim8.pth", vim_state(grid=7))  # like Vim's stride-8 model: another grid
    model = small(pos_embed="embed_dim_interp")
    report = load_into(model, path)
    assert model.pos_embed.shape == (1, 2 * 4 * 4, D)
    assert any("7x7" in line for line in report.resampled)


def test_only_argparse_namespace_is_allow_listed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("this would run",))

    torch.save({"model": vim_state(), "args": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="refused to load: the file needs arbitrary unpickling"):
        read_state_dict(tmp_path / "evil.pth")
    state, metadata = read_state_dict(save_vim(tmp_path / "ok.pth", vim_state()))
    assert metadata["args"]["lr"] == 5e-4


def opengvlab_state(frames: int = 4, seed: int = 1, masked_pretraining: bool = False) -> dict:
    """OpenGVLab VideoMamba: 1x16x16 tubelet, pos_embed (1, 1 + M, d) with class row 0, temporal table."""
    g = torch.Generator().manual_seed(seed)
    state = {"patch_embed.proj.weight": torch.randn(D, 3, 1, 16, 16, generator=g),
             "patch_embed.proj.bias": torch.randn(D, generator=g),
             "pos_embed": torch.randn(1, 17, D, generator=g),
             "temporal_pos_embedding": torch.randn(1, frames, D, generator=g),
             "cls_token": torch.randn(1, 1, D, generator=g),
             ("norm.weight" if masked_pretraining else "norm_f.weight"): torch.randn(D, generator=g),
             "head.weight": torch.randn(400, D, generator=g), "head.bias": torch.randn(400, generator=g),
             "clip_decoder.0.head.weight": torch.randn(8, D, generator=g)}
    for i in range(DEPTH):
        state.update(mixer_keys(f"layers.{i}.mixer.", g))
        state[f"layers.{i}.norm.weight"] = torch.randn(D, generator=g)
    return state


@pytest.mark.parametrize("masked", [False, True])
def test_opengvlab_checkpoint_folds_tables_and_class_row(tmp_path, masked):
    state = opengvlab_state(masked_pretraining=masked)
    torch.save(state, tmp_path / "ogv.pth")  # a raw state dict
    model = small(tubelet=1, combine="sum")
    report = load_into(model, tmp_path / "ogv.pth")
    ours = model.state_dict()
    assert torch.equal(ours["patch_embed.proj.weight"], state["patch_embed.proj.weight"])
    joint = ours["pos_embed"][0].view(4, 16, D)
    for t in range(4):
        torch.testing.assert_close(joint[t], state["pos_embed"][0, 1:] + state["temporal_pos_embedding"][0, t])
    torch.testing.assert_close(ours["cls_token"], state["cls_token"] + state["pos_embed"][:, :1])
    norm_key = "norm.weight" if masked else "norm_f.weight"
    assert torch.equal(ours["norm_f.weight"], state[norm_key])
    assert torch.equal(ours["layers.1.mixer.scan_bwd.x_proj.weight"], state["layers.1.mixer.x_proj_b.weight"])
    assert "clip_decoder.0.head.weight" in report.dropped and not report.unexpected
    # a model that averages the directions reproduces the summing source with out_proj doubled (exact)
    mean = small(tubelet=1)
    report = load_into(mean, tmp_path / "ogv.pth")
    assert torch.equal(mean.state_dict()["layers.0.mixer.out_proj.weight"], 2 * state["layers.0.mixer.out_proj.weight"])
    assert any("out_proj x 2" in line for line in report.resampled)


def test_safetensors_round_trip_identical_outputs(tmp_path):
    model = small().eval()
    save_weights(model, tmp_path / "w.safetensors")
    again = videomamba.create_model("videomamba_nano", embed_dim=D, depth=DEPTH, num_frames=4, img_size=64,
                                    num_classes=7, pretrained=str(tmp_path / "w.safetensors")).eval()
    video = torch.randn(2, 3, 4, 64, 64)
    assert torch.equal(model(video), again(video))


def test_convert_cli_and_onnx_export(tmp_path):
    pytest.importorskip("onnxruntime")
    save_vim(tmp_path / "vim.pth", vim_state())
    env_cmd = [sys.executable, "-m", "videomamba"]
    out = subprocess.run(env_cmd + ["convert", str(tmp_path / "vim.pth"), str(tmp_path / "v.safetensors"),
                                    "--model", "videomamba_nano", "--num-classes", "7", "--num-frames", "4"],
                         capture_output=True, text=True)
    assert out.returncode != 0 and "does not fit" in out.stderr  # nano is 96 wide: the Vim file is 32 wide
    out = subprocess.run(env_cmd + ["convert", str(tmp_path / "vim.pth"), str(tmp_path / "v.safetensors"),
                                    "--model", "videomamba_nano", "--embed-dim", "32", "--depth", "2",
                                    "--num-classes", "7", "--num-frames", "4", "--img-size", "64"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "dropped head.weight" in out.stdout
    converted = videomamba.create_model("videomamba_nano", embed_dim=D, depth=DEPTH, num_frames=4, img_size=64,
                                        num_classes=7, pretrained=str(tmp_path / "v.safetensors"))
    reference = small()
    load_into(reference, tmp_path / "vim.pth")
    for key, value in reference.state_dict().items():
        if not key.startswith("head."):
            assert torch.equal(converted.state_dict()[key], value), key
    model = small().eval()
    save_weights(model, tmp_path / "m.safetensors")
    done = subprocess.run(env_cmd + ["export", str(tmp_path / "m.safetensors"), "--onnx", str(tmp_path / "m.onnx")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "max |difference|" in done.stdout
    from videomamba.models.export import check_onnx

    assert check_onnx(model, tmp_path / "m.onnx", clips=2) < 1e-4


def test_image_model_inflates_into_video_model_by_scheme(tmp_path):
    from videomamba.models.convert import load_into, save_weights
    from videomamba.models.pos_embed import video_table_from_image

    torch.manual_seed(0)
    image = videomamba.create_model("videomamba_nano", num_frames=1, tubelet=1)
    with torch.no_grad():
        image.pos_embed.normal_()
    path = tmp_path / "image.safetensors"
    save_weights(image, path)
    for scheme in ("temporal_expand", "spatial_interp", "embed_dim_interp"):
        video = videomamba.create_model("videomamba_nano", pos_embed=scheme)
        report = load_into(video, path)
        expected = video_table_from_image(scheme, image.pos_embed[0].detach(), video.cfg.grid[0])
        torch.testing.assert_close(video.pos_embed[0].detach(), expected)
        kernel = image.patch_embed.proj.weight.detach()
        torch.testing.assert_close(video.patch_embed.proj.weight.detach(), kernel.repeat(1, 1, 2, 1, 1) / 2)
        assert any("image kernel" in line for line in report.resampled)
    for scheme in ("sinusoidal", "none"):
        video = videomamba.create_model("videomamba_nano", pos_embed=scheme)
        assert "pos_embed" in load_into(video, path).dropped
    # a clip of repeated frames gives the image model's features (temporal expanding, one tubelet)
    video = videomamba.create_model("videomamba_nano", num_frames=2)
    load_into(video, path)
    frame = torch.randn(2, 3, 1, 64, 64)
    torch.testing.assert_close(video.forward_features(frame.repeat(1, 1, 2, 1, 1)), image.forward_features(frame),
                               atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------------
# Each peer's own forward (tests/models/peers.py, float64) against ours after import, within 1e-8.

@pytest.fixture
def float64_default():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _double(state: dict) -> dict:
    return {k: v.double() for k, v in state.items()}


def _with_head(state: dict, classes: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {**state, "head.weight": torch.randn(classes, D, generator=g, dtype=torch.float64) * 0.1,
            "head.bias": torch.randn(classes, generator=g, dtype=torch.float64)}


def _scaled(state: dict) -> dict:
    """Random weights scaled to keep a 2-layer float64 forward in a well-conditioned range."""
    out = {}
    for k, v in state.items():
        if k.endswith("A_log") or k.endswith("A_b_log"):
            out[k] = torch.log(torch.rand_like(v) * 3 + 0.5)
        elif k.endswith("norm.weight") or k == "norm_f.weight":
            out[k] = 1 + 0.1 * v
        else:
            out[k] = v * 0.1
    return out


def opengvlab_image_state(seed: int = 3) -> dict:
    state = _double(opengvlab_state(seed=seed))
    del state["temporal_pos_embedding"], state["clip_decoder.0.head.weight"]
    state["patch_embed.proj.weight"] = state["patch_embed.proj.weight"][:, :, 0]  # their image model: 2D kernel
    return _with_head(_scaled(state), 5, seed)


def test_opengvlab_image_model_raw_state_dict_computes_their_forward(tmp_path, float64_default):
    """OpenGVLab's ImageNet weights are a bare state dict with Vim's keys: read as OpenGVLab's image
    model (class token first, pos row 0 folded, directions summed), not as Vim's."""
    from tests.models import peers

    state = opengvlab_image_state()
    torch.save(state, tmp_path / "videomamba_s16_in1k.pth")
    model = videomamba.create_model("videomamba_nano", pretrained=str(tmp_path / "videomamba_s16_in1k.pth"),
                                    embed_dim=D, depth=DEPTH, num_frames=1, img_size=64, tubelet=1).eval()
    assert model.cfg.combine == "sum" and model.cfg.num_classes == 5  # built to match, the head kept
    image = torch.randn(2, 3, 64, 64)
    theirs = peers.opengvlab_image_forward(image, state)
    ours = model(image[:, :, None])
    assert (ours - theirs).abs().max() / theirs.abs().max() < 1e-8


def test_opengvlab_video_classifier_with_prefix_and_ema_computes_their_forward(tmp_path, float64_default):
    """A Kinetics classifier of OpenGVLab's video model inside a DDP checkpoint (``module.`` keys), its
    EMA copy chosen; the head kept, the temporal table added into the joint one."""
    from tests.models import peers

    state = _scaled(_double(opengvlab_state(frames=4, seed=5)))
    del state["clip_decoder.0.head.weight"]
    state = _with_head(state, 6, 5)
    ema = {k: v + 0.01 for k, v in state.items()}
    wrapped = lambda s: {f"module.{k}": v for k, v in s.items()}  # noqa: E731
    torch.save({"model": wrapped(state), "model_ema": wrapped(ema), "epoch": 3}, tmp_path / "k400.pth")
    video = torch.randn(2, 3, 4, 64, 64)
    for use_ema, truth in ((False, state), (True, ema)):
        model = videomamba.create_model("videomamba_nano", pretrained=str(tmp_path / "k400.pth"), ema=use_ema,
                                        embed_dim=D, depth=DEPTH, img_size=64).eval()
        assert model.cfg.tubelet[0] == 1 and model.cfg.num_frames == 4 and model.cfg.num_classes == 6
        theirs = peers.opengvlab_video_forward(video, truth)
        assert (model(video) - theirs).abs().max() / theirs.abs().max() < 1e-8
    report = load_into(videomamba.create_model("videomamba_nano", embed_dim=D, depth=DEPTH, img_size=64, num_frames=4,
                                               tubelet=1, num_classes=6), tmp_path / "k400.pth", keep_head=False)
    assert "head.weight" in report.dropped and "prefix 'module.' removed" in report.source


def vim_image_state(seed: int = 7) -> dict:
    return _with_head(_scaled(_double(vim_state(seed=seed))), 5, seed)


def save_vim_args(path, state, model_name: str, **extra):
    torch.save({"model": state, "args": argparse.Namespace(model=model_name, **extra)}, path)
    return path


VIM_MID = "vim_tiny_patch16_224_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2"


def test_vim_middle_class_token_block_by_block(tmp_path, float64_default):
    """Vim's middle class token puts it elsewhere in the sequence than ours, so the forward is checked
    in parts: the tokens entering the first block (the class token with its positional row, the patch
    tokens with theirs), every mixer on the same input, and the head on the class token."""
    from tests.models import peers
    from videomamba.ops import ScanOrder

    state = vim_image_state()
    path = save_vim_args(tmp_path / "vim.pth", state, VIM_MID)
    model = videomamba.create_model("videomamba_nano", pretrained=str(path), embed_dim=D, depth=DEPTH,
                                    num_frames=1, img_size=64, tubelet=1).eval()
    assert model.cfg.combine == "mean"
    image = torch.randn(2, 3, 64, 64)
    tokens, position = peers.vim_tokens(image, state)
    ours = model.patch_embed(image[:, :, None])[0] + model.pos_embed
    ours_cls = model.cls_token.expand(2, -1, -1)
    theirs_patches = torch.cat([tokens[:, :position], tokens[:, position + 1:]], dim=1)
    assert (ours - theirs_patches).abs().max() < 1e-12 and (ours_cls - tokens[:, position:position + 1]).abs().max() < 1e-12
    hidden = torch.randn(2, 17, D)
    for i, layer in enumerate(model.layers):
        params = {k.split(".mixer.", 1)[1]: v for k, v in state.items() if k.startswith(f"layers.{i}.mixer.")}
        theirs = peers.bimamba_mixer(peers.rms_norm(hidden, state[f"layers.{i}.norm.weight"]), params, divide_out=True)
        mine = layer.mixer(layer.norm(hidden), ScanOrder("reverse"))
        assert (mine - theirs).abs().max() / theirs.abs().max() < 1e-8, i
    final = torch.randn(2, 17, D)
    theirs = peers.rms_norm(final, state["norm_f.weight"])[:, 0] @ state["head.weight"].t() + state["head.bias"]
    assert (model.head(model.norm_f(final)[:, 0]) - theirs).abs().max() < 1e-10


@pytest.mark.parametrize("combine", [None, "sum"])
def test_vim_first_class_token_whole_forward(tmp_path, float64_default, combine):
    """A Vim model with its class token first runs in our token order: the whole forward matches, also
    in a model that sums the directions (out_proj halved on import)."""
    from tests.models import peers

    state = vim_image_state(seed=11)
    path = save_vim_args(tmp_path / "vim_first.pth", state, "vim_tiny_patch16_224_bimambav2_div2",
                         use_middle_cls_token=False, if_cls_token=True)
    overrides = {"combine": combine} if combine else {}
    model = videomamba.create_model("videomamba_nano", pretrained=str(path), embed_dim=D, depth=DEPTH, num_frames=1,
                                    img_size=64, tubelet=1, **overrides).eval()
    image = torch.randn(2, 3, 64, 64)
    theirs = peers.vim_forward(image, state, middle=False)
    assert (model(image[:, :, None]) - theirs).abs().max() / theirs.abs().max() < 1e-8


def test_our_weights_load_exactly_into_the_other_combination(tmp_path, float64_default):
    mean = small().eval()
    save_weights(mean, tmp_path / "mean.safetensors")
    summed = small(combine="sum").eval()
    report = load_into(summed, tmp_path / "mean.safetensors")
    assert any("out_proj x 0.5" in line for line in report.resampled)
    video = torch.randn(2, 3, 4, 64, 64)
    assert (summed(video) - mean(video)).abs().max() < 1e-12
    # built from the file, the model takes the stored combination
    again = videomamba.create_model("videomamba_nano", pretrained=str(tmp_path / "mean.safetensors"), embed_dim=D,
                                    depth=DEPTH, num_frames=4, img_size=64)
    assert again.cfg.combine == "mean" and again.cfg.num_classes == 7


def test_layout_detected_from_the_files_evidence(tmp_path):
    from videomamba.models.convert import inspect_source, read_checkpoint

    def source(obj, name, **kwargs):
        torch.save(obj, tmp_path / name)
        return inspect_source(read_checkpoint(tmp_path / name), **kwargs)

    image = opengvlab_image_state()
    assert source(image, "raw.pth").layout == "opengvlab"
    assert source({"model": image, "args": argparse.Namespace(model="videomamba_small")}, "deit.pth").layout == "opengvlab"
    vim = source({"model": vim_state(), "args": argparse.Namespace(model=VIM_MID)}, "vim.pth")
    assert (vim.layout, vim.combine, vim.class_row) == ("vim", "mean", 8)
    forced = source(image, "forced.pth", layout="vim")
    assert forced.layout == "vim" and forced.class_row == 8  # no args: Vim's default, the middle
    assert source(opengvlab_state(), "video.pth").tubelet_frames == 1
    with pytest.raises(ValueError, match="overlapping patches"):
        source({"model": vim_state(), "args": argparse.Namespace(
            model="vim_small_patch16_stride8_224_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2")}, "s8.pth")


def test_wrapped_files_prefixes_ema_and_distillation_parts(tmp_path):
    from videomamba.models.convert import CheckpointError, read_checkpoint

    state = opengvlab_state()
    multimodal = {**{f"vision_encoder.{k}": v for k, v in state.items()}, "text_encoder.layer.0.weight": torch.ones(2)}
    torch.save(multimodal, tmp_path / "umt.pth")
    checkpoint = read_checkpoint(tmp_path / "umt.pth")
    assert "layers.0.norm.weight" in checkpoint.state and "1 keys outside it left out" in checkpoint.notes[0]
    torch.save({"model_ema": state}, tmp_path / "ema_only.pth")
    assert "only copy" in read_checkpoint(tmp_path / "ema_only.pth").notes[0]
    with pytest.raises(CheckpointError, match="no EMA copy"):
        read_checkpoint(tmp_path / "umt.pth", ema=True)
    distilled = {**state, "distill_head.weight": torch.ones(3, D), "distill_head.bias": torch.ones(3)}
    torch.save(distilled, tmp_path / "distilled.pth")
    report = load_into(small(tubelet=1, combine="sum"), tmp_path / "distilled.pth")  # strict
    assert "distill_head.weight" in report.dropped
    (tmp_path / "garbage.pth").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="garbage.pth: not a readable torch checkpoint"):
        read_checkpoint(tmp_path / "garbage.pth")
    import os

    if os.geteuid() != 0:  # root reads every file
        (tmp_path / "locked.pth").write_bytes(b"x")
        (tmp_path / "locked.pth").chmod(0)
        with pytest.raises(CheckpointError, match="permission denied"):
            read_checkpoint(tmp_path / "locked.pth")


def test_foreign_grid_is_resampled_bicubic(tmp_path):
    from videomamba.models.convert import resample_grid_bicubic

    table = torch.randn(49, D)
    got = resample_grid_bicubic(table, 7, 4, 4)
    want = torch.nn.functional.interpolate(table.t().reshape(1, D, 7, 7), size=(4, 4), mode="bicubic",
                                           align_corners=False).reshape(D, 16).t()
    assert torch.equal(got, want)
    report = load_into(small(pos_embed="temporal_expand"), save_vim(tmp_path / "v7.pth", vim_state(grid=7)))
    assert any("bicubic" in line for line in report.resampled)


def test_convert_cli_layout_ema_and_head_flags(tmp_path):
    """``videomamba convert`` on an OpenGVLab Kinetics classifier in a DDP checkpoint: the model is built
    to match it (tubelet 1, its frames, summed directions, its 6 classes), ``--ema`` takes the EMA copy,
    ``--drop-head`` drops the classifier, ``--layout vim`` is honoured (and refused here: no middle row)."""
    state = opengvlab_state(frames=4, seed=9)
    del state["clip_decoder.0.head.weight"]
    state["head.weight"], state["head.bias"] = torch.randn(6, D), torch.randn(6)
    ema = {k: v + 1 for k, v in state.items()}
    torch.save({"model": {f"module.{k}": v for k, v in state.items()},
                "model_ema": {f"module.{k}": v for k, v in ema.items()}}, tmp_path / "k400.pth")
    base = [sys.executable, "-m", "videomamba", "convert", str(tmp_path / "k400.pth")]
    size = ["--model", "videomamba_nano", "--embed-dim", str(D), "--depth", str(DEPTH), "--img-size", "64"]
    out = subprocess.run(base + [str(tmp_path / "ema.safetensors"), "--ema"] + size, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "tubelet (1, 16, 16), 4 frames, combine sum, 6 classes" in out.stdout and "EMA" in out.stdout
    converted = videomamba.create_model("videomamba_nano", pretrained=str(tmp_path / "ema.safetensors"),
                                        embed_dim=D, depth=DEPTH, img_size=64)
    assert torch.equal(converted.head.weight, ema["head.weight"]) and converted.cfg.combine == "sum"
    out = subprocess.run(base + [str(tmp_path / "nohead.safetensors"), "--drop-head", "--num-classes", "6"] + size,
                         capture_output=True, text=True)
    assert out.returncode == 0 and "classifier dropped on request" in out.stdout, out.stderr[-2000:]
    out = subprocess.run(base + [str(tmp_path / "vim.safetensors"), "--layout", "vim"] + size,
                         capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
