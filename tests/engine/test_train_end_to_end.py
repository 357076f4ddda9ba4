"""Training subprocesses: exact resumption after SIGKILL, DDP equivalence on gloo, a failing rank,
NaN handling, evaluation and prediction from the saved model."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from .conftest import tiny_config, write_config

pytestmark = pytest.mark.slow
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def train_cmd(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "videomamba", "train", "--config", str(config), "--no-progress", *extra]


def final_weights(run: Path) -> dict:
    return torch.load(run / "last.pt", weights_only=True)["model"]


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path, tiny_data):
    settings = {"train": {"save_every_steps": 2}}
    straight = write_config(tmp_path / "a.yaml", tiny_config(tiny_data, tmp_path / "straight", **settings))
    subprocess.run(train_cmd(straight), check=True, env=ENV, capture_output=True, timeout=600)

    killed_cfg = write_config(tmp_path / "b.yaml", tiny_config(tiny_data, tmp_path / "killed", **settings))
    process = subprocess.Popen(train_cmd(killed_cfg), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = tmp_path / "killed" / "last.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    state = torch.load(checkpoint, weights_only=True)
    steps_per_epoch = 48 // 4
    assert 0 < state["global_step"] < 2 * steps_per_epoch and state["batches_done"] > 0  # mid-epoch

    resumed = subprocess.run(train_cmd(killed_cfg), env=ENV, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stderr
    a, b = final_weights(tmp_path / "straight"), final_weights(tmp_path / "killed")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_two_process_gloo_equals_one_process_same_global_batch(tmp_path, tiny_data):
    overrides = {"train": {"max_steps": 3, "drop_path": 0.0}, "data": {"randaugment": None, "erase_prob": 0.0}}
    single = write_config(tmp_path / "single.yaml", tiny_config(tiny_data, tmp_path / "single", **overrides))
    subprocess.run(train_cmd(single), check=True, env=ENV, capture_output=True, timeout=600)
    double = write_config(tmp_path / "double.yaml", tiny_config(tiny_data, tmp_path / "double", **overrides))
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
                          "-m", "videomamba", "train", "--config", str(double), "--no-progress"],
                         env=ENV, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    a, b = final_weights(tmp_path / "single"), final_weights(tmp_path / "double")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)
    # evaluation gathered every view from both ranks, the sampler's padded copy removed: 15 videos
    assert json.loads((tmp_path / "double" / "eval.json").read_text())["videos"] == 15
    assert json.loads((tmp_path / "single" / "eval.json").read_text())["videos"] == 15


def test_killed_rank_ends_the_job_with_nonzero_exit(tmp_path, tiny_data):
    cfg = write_config(tmp_path / "c.yaml", tiny_config(tiny_data, tmp_path / "run", optim={"epochs": 50}))
    launcher = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                                 "--master_port", "29533", "-m", "videomamba", "train", "--config", str(cfg),
                                 "--no-progress"], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 300
    while not metrics.exists() and time.time() < deadline:
        time.sleep(0.05)
    victim = None
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"RANK=1" in environ and b"TORCHELASTIC_RUN_ID" in b" ".join(environ) and str(cfg).encode() in Path(
                    f"/proc/{pid}/cmdline").read_bytes():
                victim = int(pid)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    start = time.time()
    launcher.wait(timeout=180)
    assert launcher.returncode != 0
    assert time.time() - start < 180


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(tmp_path, tiny_data):
    cfg = write_config(tmp_path / "c.yaml", tiny_config(
        tiny_data, tmp_path / "run", optim={"lr": 1e12, "warmup_epochs": 0.0, "weight_decay": 0.0},
        train={"save_every_steps": 1}))
    run = subprocess.run(train_cmd(cfg), env=ENV, capture_output=True, text=True, timeout=600)
    assert run.returncode == 3, run.stderr[-2000:]
    assert "loss is nan" in run.stderr or "loss is inf" in run.stderr
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["global_step"] >= 1
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_eval_and_predict_from_trained_model(tmp_path, tiny_data):
    cfg = write_config(tmp_path / "c.yaml", tiny_config(tiny_data, tmp_path / "run", train={"max_steps": 2}))
    subprocess.run(train_cmd(cfg), check=True, env=ENV, capture_output=True, timeout=600)
    run = tmp_path / "run"
    for name in ("model.safetensors", "eval.json", "eval_confusion.csv", "eval_confusion.png", "curves.png",
                 "metrics.jsonl", "summary.json"):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").iterdir())
    out = subprocess.run([sys.executable, "-m", "videomamba", "eval", "--config", str(cfg), "--checkpoint",
                          str(run / "model.safetensors"), "data.test_clips=2", "data.test_crops=3", "--output",
                          str(tmp_path / "ev"), "--no-progress"], env=ENV, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert result["videos"] == 15 and 0 <= result["top1"] <= result["top5"] <= 1
    assert len(result["confusion"]) == 10 and sum(map(sum, result["confusion"])) == 15

    from videomamba.engine.predict import predict

    video = tiny_data / "videos/val/00000.mp4"
    top = predict([video], run / "model.safetensors", topk=3)
    assert len(top[0]) == 3 and top[0][0][0] in [line.strip() for line in (tiny_data / "motion/classes.txt").open()]
    assert abs(sum(p for _, p in top[0])) <= 1.0 + 1e-6
    cli = subprocess.run([sys.executable, "-m", "videomamba", "predict", str(video), "--checkpoint",
                          str(run / "model.safetensors"), "--topk", "2"], env=ENV, capture_output=True, text=True)
    assert cli.returncode == 0 and cli.stdout.count("\n") == 3
    # a bad file among good ones: one line naming it, the others predicted, exit status 1, no traceback
    (tmp_path / "broken.mp4").write_bytes(video.read_bytes()[:500])
    (tmp_path / "text.mp4").write_text("not a video")
    cli = subprocess.run([sys.executable, "-m", "videomamba", "predict", str(tmp_path / "broken.mp4"), str(video),
                          str(tmp_path / "text.mp4"), str(tmp_path / "missing.mp4"), str(video), "--checkpoint",
                          str(run / "model.safetensors"), "--topk", "2"], env=ENV, capture_output=True, text=True)
    assert cli.returncode == 1 and "Traceback" not in cli.stderr, cli.stderr[-2000:]
    assert cli.stdout.count(str(video)) == 2 and cli.stdout.count("\n") == 6
    skipped = [line for line in cli.stderr.splitlines() if line.startswith("videomamba predict: skipped")]
    assert len(skipped) == 3 and "missing.mp4: file does not exist" in skipped[2], skipped
    assert "3 of 5 files could not be read" in cli.stderr

    shuffle = subprocess.run([sys.executable, "-m", "videomamba", "shuffle", "--checkpoint", str(run / "model.safetensors"),
                              "--config", str(cfg), "--unit", "1", "--output", str(tmp_path / "sh"), "--no-progress"],
                             env=ENV, capture_output=True, text=True, timeout=600)
    assert shuffle.returncode == 0, shuffle.stderr[-2000:]
    table = json.loads((tmp_path / "sh" / "shuffle.json").read_text())
    assert set(next(iter(table.values()))) == {"sequential", "blockwise", "pairwise", "interleaved"}
    assert (tmp_path / "sh" / "shuffle.png").is_file()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "shuffle.json").write_text(json.dumps({"digit": dict.fromkeys(table["run"], 0.9)}))
    merged = subprocess.run([sys.executable, "-m", "videomamba", "shuffle", "--merge", str(tmp_path / "sh"),
                             str(tmp_path / "other"), "--output", str(tmp_path / "both")], env=ENV,
                            capture_output=True, text=True)
    assert merged.returncode == 0, merged.stderr[-2000:]
    assert set(json.loads((tmp_path / "both" / "shuffle.json").read_text())) == {"run", "digit"}
    assert "| digit | 90.0 | 90.0 | 90.0 | 90.0 |" in merged.stdout

    maps = subprocess.run([sys.executable, "-m", "videomamba", "delta", str(video), "--checkpoint",
                           str(run / "model.safetensors"), "--mask-root", str(tiny_data), "--layers", "0", "1",
                           "--output", str(tmp_path / "dm")], env=ENV, capture_output=True, text=True, timeout=600)
    assert maps.returncode == 0, maps.stderr[-2000:]
    assert {p.name for p in (tmp_path / "dm").iterdir()} == {"00000_delta_grid.png", "00000_delta.gif",
                                                             "00000_delta_summary.md"}


def test_corrupt_video_never_kills_an_epoch_and_is_named_once(tmp_path, tiny_data):
    lines = (tiny_data / "motion/train.txt").read_text().splitlines()
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x01not a video" * 20)
    (tmp_path / "train.txt").write_text("\n".join(lines + [f"{tmp_path / 'broken.mp4'} 3"] * 3) + "\n")
    cfg = write_config(tmp_path / "c.yaml", tiny_config(tiny_data, tmp_path / "run"))
    run = subprocess.run(train_cmd(cfg, f"data.train={tmp_path / 'train.txt'}",
                                   "optim.epochs=2"), env=ENV, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stderr.count(f"{tmp_path / 'broken.mp4'}: ") == 1
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert len(summary["bad_files"]) == 1


def test_recomputed_activations_train_to_the_same_weights(tmp_path, tiny_data):
    """train.recompute_activations reaches the model and changes memory only: the same weights, bit for bit."""
    runs = {}
    for recompute in (False, True):
        run = tmp_path / f"recompute_{recompute}"
        cfg = write_config(tmp_path / f"{recompute}.yaml", tiny_config(
            tiny_data, run, train={"max_steps": 3, "recompute_activations": recompute}))
        done = subprocess.run(train_cmd(cfg), env=ENV, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        runs[recompute] = final_weights(run)
    from videomamba.engine.config import load_config
    from videomamba.engine.distributed import DistInfo
    from videomamba.engine.train import Trainer

    trainer = Trainer(load_config(tmp_path / "True.yaml"), DistInfo(), progress=False)
    assert trainer.model.recompute_activations is True
    for key, value in runs[False].items():
        assert torch.equal(value, runs[True][key]), key
