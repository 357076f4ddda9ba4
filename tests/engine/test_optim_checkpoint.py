import random

import numpy as np
import pytest
import torch

import videomamba
from videomamba.engine.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from videomamba.engine.optim import WarmupCosine, param_groups


def test_no_weight_decay_on_norms_biases_tokens_and_tables():
    model = videomamba.create_model("videomamba_nano", embed_dim=16, depth=2)
    names = dict(model.named_parameters())
    decayed = set()
    for group in param_groups(model, 0.05):
        if group["weight_decay"] > 0:
            decayed |= {n for n, p in names.items() if any(p is q for q in group["params"])}
    assert "layers.0.mixer.in_proj.weight" in decayed and "head.weight" in decayed
    for name in ("cls_token", "pos_embed", "layers.0.norm.weight", "norm_f.weight", "head.bias",
                 "layers.0.mixer.scan_fwd.A_log", "layers.0.mixer.scan_fwd.D", "layers.1.mixer.scan_bwd.dt_proj.bias"):
        assert name not in decayed, name
    total = sum(len(g["params"]) for g in param_groups(model, 0.05))
    assert total == len(names)


def test_layer_decay_scales():
    model = videomamba.create_model("videomamba_nano", embed_dim=16, depth=2)
    scales = {round(g["lr_scale"], 6) for g in param_groups(model, 0.05, layer_decay=0.5)}
    assert scales == {0.125, 0.25, 0.5, 1.0}


def test_warmup_then_cosine():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = WarmupCosine(opt, lr=1.0, min_lr=0.0, warmup_lr=0.0, warmup_steps=10, total_steps=110)
    values = []
    for _ in range(110):
        values.append(opt.param_groups[0]["lr"])
        sched.step()
    assert values[0] == 0 and values[5] == pytest.approx(0.5) and values[10] == pytest.approx(1.0)
    assert values[60] == pytest.approx(0.5) and values[-1] < 0.001
    assert all(a >= b for a, b in zip(values[10:], values[11:]))


def test_checkpoint_weights_only_roundtrip_and_rng(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = {"model": {"w": torch.randn(3)}, "rng": rng_state(), "epoch": 2, "config": {"a": [1, 2]}}
    expected = (random.random(), np.random.rand(), torch.rand(1))
    save_checkpoint(tmp_path / "ck.pt", state)
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temp file left behind
    loaded = load_checkpoint(tmp_path / "ck.pt")  # weights_only=True inside
    set_rng_state(loaded["rng"])
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(1), expected[2])
    assert loaded["epoch"] == 2 and torch.equal(loaded["model"]["w"], state["model"]["w"])


def test_unsafe_checkpoint_is_refused(tmp_path):
    import argparse

    torch.save({"args": argparse.Namespace(lr=1)}, tmp_path / "unsafe.pt")
    with pytest.raises(ValueError, match="not a loadable training checkpoint"):
        load_checkpoint(tmp_path / "unsafe.pt")


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = videomamba.create_model("videomamba_nano", embed_dim=16, depth=2, num_frames=4, img_size=32).double()
    model.train()
    video = torch.randn(2, 3, 4, 32, 32, dtype=torch.float64)
    grads = []
    for checkpointing in (False, True):
        model.zero_grad()
        model.grad_checkpointing = checkpointing
        model(video).sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_ema_is_an_exponential_average():
    from videomamba.engine.optim import ModelEma

    model = torch.nn.Linear(2, 1, bias=False)
    torch.nn.init.constant_(model.weight, 1.0)
    ema = ModelEma(model, decay=0.9)
    torch.nn.init.constant_(model.weight, 3.0)
    ema.update(model)
    assert ema.shadow["weight"].flatten().tolist() == pytest.approx([1.2, 1.2])
