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


def test_paired_difference_interval_and_exact_sign_flip_test():
    from videomamba.analysis.ablation import paired_difference, seeds_needed

    # differences 1, 2, 3 over seeds 0-2: mean 2, t-interval 2 ± 4.303 * 1 / sqrt(3); all signs positive,
    # so only the two all-same-sign patterns are as extreme: p = 2 / 8
    test = paired_difference({0: 11.0, 1: 12.0, 2: 13.0, 3: 50.0}, {0: 10.0, 1: 10.0, 2: 10.0})
    assert test["n"] == 3 and test["mean"] == 2.0 and test["p"] == 0.25 and test["min_p"] == 0.25
    assert abs(test["high"] - (2 + 4.303 / 3 ** 0.5)) < 1e-9 and not test["separated"]
    six = paired_difference({s: 5.0 + 0.1 * s for s in range(6)}, {s: 0.0 for s in range(6)})
    assert six["separated"] and six["p"] == 2 / 64
    mixed = paired_difference({0: 1.0, 1: -1.0, 2: 1.0, 3: -1.0}, {s: 0.0 for s in range(4)})
    assert mixed["p"] == 1.0 and not mixed["separated"]
    assert seeds_needed() == 6


def test_seeds_to_separate_is_the_first_sample_size_whose_interval_excludes_zero():
    from videomamba.analysis.ablation import paired_difference, seeds_to_separate

    # mean 2.5, spread 3.57: t(9) 2.262 * 3.57 / sqrt(10) = 2.55 > 2.5, t(10) 2.228 * 3.57 / sqrt(11) = 2.40 < 2.5
    assert seeds_to_separate(2.5, 3.57) == 11 and seeds_to_separate(-2.5, 3.57) == 11
    assert seeds_to_separate(0.0, 1.0) is None and seeds_to_separate(0.01, 10.0) is None
    assert seeds_to_separate(1.0, 0.0) == 6  # no spread: the sign-flip test's own minimum
    # the estimate agrees with the interval: differences drawn with that mean and spread at that n separate
    for n in (6, 10, 11, 12):
        diffs = [2.5 + 3.57 * ((-1) ** s) * (1 if s < n - n % 2 else 0) for s in range(n)]
        test = paired_difference(dict(enumerate(diffs)), {s: 0.0 for s in range(n)})
        needed = test["seeds_to_separate"]
        assert test["separated"] == (needed is not None and needed <= n)


def test_report_from_finished_runs_lists_the_comparisons(tmp_path):
    """The shipped H200 results of the single-action set re-summarised without training: the three
    scan-order comparisons and the temporal-expanding ones appear with their intervals."""
    from pathlib import Path

    from videomamba.analysis.ablation import STUDIES, AblationSetup, report_from_results

    results = Path(__file__).resolve().parents[2] / "docs/results/ablations_single_results.jsonl"
    summary = report_from_results(list(STUDIES), AblationSetup.preset("gpu-single"), results, tmp_path)
    pairs = {(c["better"], c["than"]) for c in summary["comparisons"]["scan"]}
    assert pairs == {("spatiotemporal", "temporal"), ("spatiotemporal", "spatial"), ("temporal", "spatial")}
    assert all(c["n"] == 3 for c in summary["comparisons"]["pos"])
    assert "paired comparisons over seeds" in (tmp_path / "ablations.md").read_text()


def test_two_phase_results_pair_six_seeds(tmp_path):
    """The shipped H100 results of the two-phase set: six seeds pair every comparison, so the sign-flip
    test can reach p < 0.05; the default model sits inside the 60-85 % band the benchmark is sized for,
    and the report states what docs/ablations.md reads from it."""
    from pathlib import Path

    from videomamba.analysis.ablation import STUDIES, AblationSetup, report_from_results

    results = Path(__file__).resolve().parents[2] / "docs/results/ablations_two_phase_results.jsonl"
    summary = report_from_results(list(STUDIES), AblationSetup.preset("gpu"), results, tmp_path)
    scan = {(c["better"], c["than"]): c for c in summary["comparisons"]["scan"]}
    assert all(c["n"] == 6 and c["min_p"] == 2 / 64 for c in scan.values())
    assert 60 <= summary["studies"]["pos"]["temporal_expand"]["mean"] <= 85
    first = scan[("spatiotemporal", "temporal")]
    assert first["mean"] > 0 and not first["separated"] and first["seeds_to_separate"] > 6
    width = summary["comparisons"]["width"][0]
    assert width["separated"] and width["low"] > 0
    report = (tmp_path / "ablations.md").read_text()
    assert "| scan | spatiotemporal vs temporal | +2.5 | [-1.3, +6.2] | 0.16 (0.03) | no | 11 |" in report
