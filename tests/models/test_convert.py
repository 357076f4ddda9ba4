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
    assert torch.equal(ours["cls_token"], state["cls_token"])
    # 2D kernel inflated over the tubelet's 2 frames and averaged
    assert torch.allclose(ours["patch_embed.proj.weight"][:, :, 0], state["patch_embed.proj.weight"] / 2)
    assert torch.equal(ours["patch_embed.proj.weight"][:, :, 0], ours["patch_embed.proj.weight"][:, :, 1])
    # class row (middle, index 8 of 17) dropped; temporal expanding: each of the 2 time steps = image table
    image = torch.cat([state["pos_embed"][0, :8], state["pos_embed"][0, 9:]])
    assert torch.equal(ours["pos_embed"][0], image.repeat(2, 1))
    assert set(report.dropped) == {"head.weight", "head.bias"} and not report.missing and not report.unexpected


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
    with pytest.raises(ValueError, match="combine='sum'"):
        load_into(small(tubelet=1), tmp_path / "ogv.pth")


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
