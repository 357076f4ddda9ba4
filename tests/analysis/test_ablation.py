import json

import numpy as np
import torch

from videomamba.analysis.ablation import AblationSetup, image_frames, plan, run_ablations


def test_plan_shares_the_default_run_between_studies():
    setup = AblationSetup.preset("gpu")
    table, jobs = plan(setup, ["scan", "pos", "frames", "width", "init", "shuffle"])
    default = table["pos"]["temporal_expand"][0].key
    for study, variant in (("frames", "16"), ("width", "narrow"), ("init", "image model"), ("shuffle", "motion")):
        assert table[study][variant][0].key == default
    # scan 4 (no class token), pos 6, frames +2, width +1, init +1, digit task +1
    assert len(jobs) == 15 * len(setup.seeds)
    scan = table["scan"]["spatial"][0]
    assert dict(scan.overrides) == {"scan_order": "spatial", "cls_token": False}
    assert table["init"]["scratch"][0].init is None and table["width"]["wide"][0].init == "192"


def test_image_frames_only_where_the_digit_shows():
    opacity = torch.tensor([[0.0, 0.2, 0.7, 1.0], [1.0, 1.0, 0.1, 0.0]])
    frames = torch.arange(2 * 4, dtype=torch.uint8).view(2, 4, 1, 1, 1).expand(2, 4, 2, 2, 3).contiguous()
    data = {"train_frames": frames, "train_opacity": opacity, "train_digit": torch.tensor([3, 5])}
    picked = image_frames(data, "train", 2, seed=0)
    assert picked.frames.shape == (4, 1, 2, 2, 3)
    assert sorted(picked.frames[:, 0, 0, 0, 0].tolist()) == [2, 3, 4, 5]  # clip 0: frames 2, 3; clip 1: 0, 1
    assert picked.labels.tolist() == [3, 3, 5, 5]


def test_reduced_ablation_runs_reports_and_resumes(tmp_path):
    setup = AblationSetup.preset("cpu")
    summary = run_ablations(["scan", "shuffle"], setup, tmp_path, device="cpu", progress=False)
    for name in ("ablations.md", "ablations.png", "summary.json", "results.jsonl", "image_model_d32.safetensors",
                 "model_motion.safetensors", "model_digit.safetensors"):
        assert (tmp_path / name).is_file(), name
    rows = summary["studies"]["scan"]
    assert set(rows) == {"spatial", "temporal", "spatiotemporal", "none"}
    assert all(len(row["seeds"]) == len(setup.seeds) and 0 <= row["mean"] <= 100 for row in rows.values())
    orders = summary["studies"]["shuffle"]["digit"]["orders"]
    assert set(orders) == {"sequential", "blockwise", "pairwise", "interleaved"}
    report = (tmp_path / "ablations.md").read_text()
    assert "| spatiotemporal |" in report and "64.7" in report  # the paper's SSV2 figure beside ours
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == 1 + 6 * len(setup.seeds)  # image model + 4 scan variants + 2 shuffle tasks
    first = {json.loads(line).get("key"): json.loads(line)["top1"] for line in lines}
    again = run_ablations(["scan", "shuffle"], setup, tmp_path, device="cpu", progress=False)
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == len(lines)  # nothing retrained
    assert again["studies"]["scan"]["none"]["seeds"] == rows["none"]["seeds"]
    assert np.isfinite(list(first.values())).all()
