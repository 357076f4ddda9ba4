import numpy as np
import pytest
import torch

import videomamba
from videomamba.analysis import delta
from videomamba.analysis.efficiency import (ViTBaseline, count_macs, efficiency_table, measure_macs,
                                            vit_attention_macs, write_efficiency_report)


def tiny(**overrides):
    base = dict(embed_dim=16, depth=3, num_classes=5, num_frames=6, img_size=48)
    base.update(overrides)
    return videomamba.create_model("videomamba_nano", **base).eval()


@pytest.mark.parametrize("scan_order", ["spatiotemporal", "spatial", "temporal", "none"])
def test_planted_delta_lands_on_its_token(scan_order):
    """A large dt planted at one token of every direction's scan inputs shows as the hottest tubelet of
    every layer's Δ map: both directions' Δ are reported in forward (memory) order, whatever order the
    backward direction reads them in."""
    model = tiny(scan_order=scan_order)
    n_t, n_h, n_w = model.cfg.grid  # (3, 3, 3)
    target = (2, 0, 1)
    position = 1 + (target[0] * n_h + target[1]) * n_w + target[2]  # after the class token
    for layer in model.layers:
        for scan in (layer.mixer.scan_fwd, layer.mixer.scan_bwd):
            if scan is not None:
                scan.project = lambda x, *rest, original=scan.project: _plant(original(x, *rest), position)
    maps = delta.compute_delta_maps(model, torch.randn(1, 3, 6, 48, 48))
    for direction in ("forward", "backward", "mean"):
        pixels = maps.pixels(direction)
        assert pixels.shape == (3, 6, 48, 48)
        for layer in range(3):
            hot = (pixels[layer] == pixels[layer].max()).nonzero()
            frames, rows, cols = hot[:, 0].unique(), hot[:, 1].unique(), hot[:, 2].unique()
            assert frames.tolist() == [4, 5]  # tubelet step 2 = frames 4 and 5
            assert rows.tolist() == list(range(0, 16)) and cols.tolist() == list(range(16, 32))


def _plant(inputs, position):
    planted = torch.full_like(inputs.delta, -5.0)
    planted[:, :, position] = 50.0
    return inputs._replace(delta=planted)


def test_outputs_and_summary(tmp_path):
    model = tiny()
    shown = torch.randint(0, 255, (6, 3, 48, 48), dtype=torch.uint8)
    maps = delta.compute_delta_maps(model, torch.randn(3, 6, 48, 48))
    assert set(maps.maps) == {"forward", "backward", "mean"} and maps.maps["mean"].shape == (3, 3, 3, 3)
    mask = np.zeros((6, 48, 48), bool)
    mask[:, :16, :16] = True
    rows = delta.layer_summary(maps, "mean", mask)
    assert len(rows) == 3 and all(0 < r["top10_share"] <= 1 and 0 <= r["mask_share"] <= 1 for r in rows)
    assert rows[0]["mask_area"] == pytest.approx(1 / 9)
    assert delta.save_grid(maps, shown, tmp_path / "g.png").stat().st_size > 0
    assert delta.save_animation(maps, shown, tmp_path / "a.gif", [0, 2]).stat().st_size > 0
    delta.write_summary({d: delta.layer_summary(maps, d, mask) for d in delta.DIRECTIONS}, tmp_path / "s.md")
    assert (tmp_path / "s.md").read_text().count("\n") == 5


@pytest.mark.parametrize("overrides", [{}, {"scan_order": "none"}, {"cls_token": False}, {"d_state": 4, "expand": 1}])
def test_flop_counter_equals_hand_count(overrides):
    model = tiny(**overrides)
    measured = measure_macs(model, torch.randn(1, 3, 6, 48, 48))
    hand = count_macs(model.cfg)
    assert measured["full"] == hand["full"]
    assert measured["paper_comparable"] == hand["paper_comparable"]
    assert measured["scan"] == hand["scan"]


def test_paper_comparable_from_the_counter_is_the_papers_figure():
    model = videomamba.create_model("videomamba_small").eval()
    measured = measure_macs(model, torch.randn(1, 3, 16, 224, 224))
    assert abs(measured["paper_comparable"] / 1e9 - 34.2) < 0.1  # paper: 34 G


def test_vit_baseline_and_table(tmp_path):
    vit = ViTBaseline(num_classes=5, embed_dim=32, depth=2, heads=2).eval()
    assert vit(torch.randn(2, 3, 4, 32, 32)).shape == (2, 5)
    # VideoMAE-S at 16 frames: linear layers from the counter + attention by hand = the paper's 57 G
    macs = measure_macs(ViTBaseline().eval(), torch.randn(1, 3, 16, 224, 224))
    total = macs["full"] + (0 if macs["attention_seen"] else vit_attention_macs(1568))
    assert abs(total / 1e9 - 57) < 1
    rows = efficiency_table([4, 8], 32, 2, torch.device("cpu"), "videomamba_nano", repeats=1)
    assert [r.model for r in rows] == ["videomamba_nano", "vit_s_videomae"] * 2
    assert rows[2].gmacs_full > rows[0].gmacs_full and all(r.clips_per_s > 0 for r in rows)
    write_efficiency_report(rows, tmp_path, "note")
    for name in ("efficiency.md", "efficiency.csv", "efficiency.png"):
        assert (tmp_path / name).is_file()


def test_projected_crossover_of_a_line_and_a_parabola():
    from videomamba.analysis.efficiency import projected_crossover

    frames = [16, 32, 64, 128]
    mamba = [40.0 + 2.0 * f for f in frames]  # crosses 0.01 f^2 + f + 10 where 0.01 f^2 - f - 30 = 0
    attention = [0.01 * f * f + f + 10.0 for f in frames]
    expected = (1.0 + (1.0 + 4 * 0.01 * 30.0) ** 0.5) / (2 * 0.01)
    assert abs(projected_crossover(frames, mamba, attention) - expected) < 1e-6
    assert projected_crossover(frames, attention, mamba) is None  # the Mamba side already faster
    assert projected_crossover(frames, [f * 10.0 for f in frames], [1.0 + f for f in frames]) is None  # never
    with pytest.raises(ValueError, match="at least 3"):
        projected_crossover([16, 32], [1.0, 2.0], [1.0, 2.0])
