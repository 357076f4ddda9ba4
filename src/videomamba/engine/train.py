"""The training loop: one process or many under torchrun, exact resumption, logs, final evaluation.

Resumption is exact on the CPU with fixed seeds: the sampler order is a pure function of (seed,
epoch), each item's randomness a pure function of (seed, epoch, index), the loader draws its worker
seeds from its own generator, and the checkpoint holds the model, optimizer, schedule, EMA, every
RNG state and the position inside the epoch. A resumed run skips the micro-batches already done.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..data import SoftTargets
from .builders import SkipFirst, build_dataset, build_loader, build_model, ensure_synthetic, run_dir
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import ConfigError, RunConfig, validate
from .distributed import DistInfo, all_reduce_mean, broadcast_flag, cleanup, gather_objects, init_distributed
from .evaluate import metrics, predict_scores, write_report
from .optim import ModelEma, WarmupCosine, param_groups
from .step import TrainingDiverged, TrainStep, autocast_dtype

__all__ = ["Trainer", "TrainingDiverged", "find_resume", "plot_curves", "run_training"]


class MetricsLog:
    """JSON lines and TensorBoard events, written by rank 0 only."""

    def __init__(self, folder: Path, enabled: bool):
        self.enabled = enabled
        self.path = folder / "metrics.jsonl"
        self.writer = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(folder / "tensorboard"))
            except ImportError:
                print("tensorboard is not installed: metrics go to metrics.jsonl only", file=sys.stderr)

    def write(self, kind: str, step: int, **values) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as handle:
            handle.write(json.dumps({"type": kind, "step": step, **values}) + "\n")
        if self.writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.add_scalar(f"{kind}/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def plot_curves(folder: Path) -> Path | None:
    """Loss (per step) and accuracy (per evaluation) curves from metrics.jsonl, as curves.png."""
    path = folder / "metrics.jsonl"
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    steps = [r for r in rows if r["type"] == "step"]
    evals = [r for r in rows if r["type"] == "eval"]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    left.plot([r["step"] for r in steps], [r["loss"] for r in steps], lw=1)
    left.set_xlabel("optimizer step")
    left.set_ylabel("training loss")
    left.grid(alpha=0.3)
    if evals:
        right.plot([r["step"] for r in evals], [100 * r["top1"] for r in evals], "o-", label="top-1")
        right.plot([r["step"] for r in evals], [100 * r["top5"] for r in evals], "s--", label="top-5")
        right.legend()
    right.set_xlabel("optimizer step")
    right.set_ylabel("validation accuracy (%)")
    right.grid(alpha=0.3)
    fig.tight_layout()
    out = folder / "curves.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


class Trainer:
    """Builds everything from a RunConfig and runs training, evaluation and the final reports."""

    def __init__(self, config: RunConfig, info: DistInfo, progress: bool = True):
        self.config, self.info, self.progress = config, info, progress
        train = config.train
        if train.threads:
            torch.set_num_threads(train.threads)
        torch.manual_seed(train.seed + info.rank)
        self.folder = run_dir(config)
        self.train_set = build_dataset(config, "train", train=True)
        self.val_set = build_dataset(config, "val", train=False)
        self.class_names = self.train_set.class_names
        self.model = build_model(config, len(self.class_names), self.class_names).to(info.device)
        self.model.grad_checkpointing = train.grad_checkpointing
        self.model.recompute_activations = train.recompute_activations
        world = info.world_size
        self.micro = train.micro_batch or train.batch_size // world
        if self.micro < 1 or train.batch_size % (self.micro * world):
            raise ConfigError(f"train.batch_size={train.batch_size} is not a multiple of micro_batch={self.micro} "
                              f"x {world} processes")
        self.accum = train.batch_size // (self.micro * world)
        self.loader, self.sampler = build_loader(self.train_set, self.micro, info, True, config.data.num_workers,
                                                 train.seed)
        self.steps_per_epoch = len(self.loader) // self.accum
        if self.steps_per_epoch == 0:
            raise ConfigError(f"{len(self.train_set)} training videos make no full batch of {train.batch_size}")
        optim = config.optim
        self.optimizer = torch.optim.AdamW(param_groups(self.model, optim.weight_decay, optim.layer_decay),
                                           lr=optim.lr, betas=tuple(optim.betas), eps=optim.eps)
        self.scheduler = WarmupCosine(self.optimizer, optim.lr, optim.min_lr, optim.warmup_lr,
                                      round(optim.warmup_epochs * self.steps_per_epoch),
                                      optim.epochs * self.steps_per_epoch)
        self.ema = ModelEma(self.model, train.ema_decay) if train.ema else None
        self.wrapped = DistributedDataParallel(self.model) if info.enabled else self.model
        if train.compile:
            self.wrapped = torch.compile(self.wrapped, mode=train.compile_mode)
        self.amp_dtype = autocast_dtype(train.precision, info.device)
        self.step = TrainStep(self.model, self.optimizer, self.scheduler, optim.clip_grad, self.ema, self.amp_dtype)
        self.soft_targets = SoftTargets(len(self.class_names), train.label_smoothing, train.mixup, train.cutmix,
                                        train.mix_prob)
        self.epoch, self.batches_done, self.global_step = 0, 0, 0
        self.bad_files: set[str] = set()  # "path: reason" of every bad video met, all ranks
        self.reported_bad: set[str] = set()
        self.log = MetricsLog(self.folder, info.is_main)

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": {},  # bf16 autocast needs no loss scaling; kept so the layout is stable
            "ema": self.ema.state_dict() if self.ema else None,
            "rng": rng_state(),
            "epoch": self.epoch,
            "batches_done": self.batches_done,
            "global_step": self.global_step,
            "bad_files": sorted(self.bad_files),
            "class_names": list(self.class_names),
            "config": {**self.config.to_dict(), "model": self.model.cfg.to_dict()},
        }

    def save(self, name: str = "last.pt") -> Path | None:
        if not self.info.is_main:
            return None
        path = self.folder / name
        save_checkpoint(path, self.state())
        return path

    def resume(self, path: str | Path) -> None:
        state = load_checkpoint(path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema and state.get("ema"):
            self.ema.load_state_dict(state["ema"])
        set_rng_state(state["rng"])
        if self.info.rank:  # every rank saved rank 0's torch state; keep ranks distinct
            torch.manual_seed(self.config.train.seed + self.info.rank + 7919 * state["global_step"])
        self.epoch, self.batches_done, self.global_step = state["epoch"], state["batches_done"], state["global_step"]
        self.bad_files = set(state.get("bad_files", []))
        self.reported_bad = set(self.bad_files)
        if self.info.is_main:
            print(f"resumed from {path}: epoch {self.epoch}, step {self.global_step}, "
                  f"{self.batches_done} micro-batches into the epoch", file=sys.stderr)

    # ------------------------------------------------------------------ training
    def _epoch_loader(self):
        self.sampler.set_epoch(self.epoch)
        self.train_set.set_epoch(self.epoch)
        if self.batches_done == 0:
            return self.loader
        skip = self.batches_done * self.micro
        loader, _ = build_loader(self.train_set, self.micro, self.info, True, self.config.data.num_workers,
                                 self.config.train.seed)
        loader.batch_sampler.sampler = SkipFirst(self.sampler, skip)
        return loader

    def _micro_step(self, batch, last_of_step: bool) -> tuple[torch.Tensor, int]:
        video = batch["video"].to(self.info.device, non_blocking=True)
        labels = batch["label"].to(self.info.device)
        keep = labels >= 0  # padded bad samples carry label -1
        if not keep.all():
            video, labels = video[keep], labels[keep]
        if len(labels) == 0:
            return torch.zeros((), device=self.info.device), 0
        video, targets = self.soft_targets(video, labels)
        sync = nullcontext() if (last_of_step or not self.info.enabled) else self.wrapped.no_sync()
        return self.step.forward_backward(self.wrapped, video, targets, self.accum, sync), len(labels)

    def train_epoch(self) -> dict:
        config, info = self.config, self.info
        loader = self._epoch_loader()
        total = self.steps_per_epoch - self.batches_done // self.accum
        bar = tqdm(total=total, desc=f"epoch {self.epoch + 1}/{config.optim.epochs}",
                   disable=not (self.progress and info.is_main), dynamic_ncols=True)
        losses, wait, start, clips = [], 0.0, time.perf_counter(), 0
        step_loss, step_count = torch.zeros((), device=info.device), 0
        self.wrapped.train()
        iterator = iter(loader)
        while self.batches_done < self.steps_per_epoch * self.accum:
            t0 = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                break
            wait += time.perf_counter() - t0
            self.bad_files.update(batch["skipped"])
            last_of_step = (self.batches_done + 1) % self.accum == 0
            loss, count = self._micro_step(batch, last_of_step)
            step_loss, step_count = step_loss + loss * count, step_count + count
            clips += len(batch["label"]) * info.world_size
            self.batches_done += 1
            if not last_of_step:
                continue
            mean_loss = all_reduce_mean(step_loss / max(step_count, 1), info)
            if broadcast_flag(not bool(torch.isfinite(mean_loss)), info):
                self.step.discard()
                raise TrainingDiverged(
                    f"loss is {mean_loss.item()} at step {self.global_step + 1} (epoch {self.epoch + 1}); training "
                    f"stopped. The last good checkpoint is {self.folder / 'last.pt'} (if one was saved). Lower "
                    f"optim.lr, set optim.clip_grad, or check the data.")
            self.step.update()
            self.global_step += 1
            losses.append(mean_loss.item())
            step_loss, step_count = torch.zeros((), device=info.device), 0
            elapsed = time.perf_counter() - start
            rate, wait_share = clips / max(elapsed, 1e-9), wait / max(elapsed, 1e-9)
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{self.scheduler.current():.2e}", clips_s=f"{rate:.1f}",
                            data_wait=f"{100 * wait_share:.0f}%")
            if self.global_step % config.train.log_every == 0:
                self.log.write("step", self.global_step, epoch=self.epoch, loss=losses[-1],
                               lr=self.scheduler.current(), clips_per_s=rate, data_wait=wait_share)
            if config.train.save_every_steps and self.global_step % config.train.save_every_steps == 0:
                self.save()
            if config.train.max_steps and self.global_step >= config.train.max_steps:
                break
        bar.close()
        elapsed = time.perf_counter() - start
        return {"loss": sum(losses) / max(len(losses), 1), "clips_per_s": clips / max(elapsed, 1e-9),
                "data_wait": wait / max(elapsed, 1e-9), "seconds": elapsed}

    def evaluation_model(self):
        """The model to evaluate: the EMA weights when EMA is on."""
        if not self.ema:
            return self.model
        import copy

        model = copy.deepcopy(self.model)
        model.load_state_dict({k: v.to(self.model.state_dict()[k].dtype) for k, v in self.ema.shadow.items()})
        return model

    def evaluate(self, frame_order: str | None = None, desc: str = "eval") -> dict:
        loader, _ = build_loader(self.val_set, max(1, self.micro // max(1, self.config.data.test_clips * self.config.data.test_crops)),
                                 self.info, False, self.config.data.num_workers, self.config.train.seed)
        _, labels, probs, skipped = predict_scores(self.evaluation_model(), loader, self.info, self.amp_dtype,
                                                   frame_order=frame_order, progress=self.progress, desc=desc)
        result = metrics(labels, probs, self.class_names)
        result["skipped_files"] = skipped
        return result

    def fit(self) -> dict:
        config, info = self.config, self.info
        history = []
        stopped = False
        while self.epoch < config.optim.epochs and not stopped:
            epoch_stats = self.train_epoch()
            stopped = bool(config.train.max_steps and self.global_step >= config.train.max_steps)
            epoch_done = self.batches_done >= self.steps_per_epoch * self.accum
            if epoch_done:
                self.epoch += 1
                self.batches_done = 0
            self.save()
            record = {"epoch": self.epoch, **epoch_stats}
            self.bad_files = set().union(*gather_objects(self.bad_files, info))
            new_bad = sorted(self.bad_files - self.reported_bad)
            self.reported_bad |= self.bad_files
            if info.is_main:
                self.log.write("epoch", self.global_step, **record, bad_files=len(self.bad_files))
                if new_bad:
                    print(f"epoch {self.epoch}: {len(new_bad)} bad videos skipped ({len(self.bad_files)} in all):\n  "
                          + "\n  ".join(new_bad), file=sys.stderr)
            every = config.train.eval_every_epochs
            last = self.epoch >= config.optim.epochs or stopped
            if epoch_done and every and self.epoch % every == 0 and not last:
                result = self.evaluate()
                record.update(top1=result["top1"], top5=result["top5"])
                self.log.write("eval", self.global_step, epoch=self.epoch, top1=result["top1"], top5=result["top5"])
            history.append(record)
        return {"history": history}

    def finish(self) -> dict:
        """Final evaluation, reports, release weights, the optional shuffle check's accuracies, plots."""
        from ..models.convert import save_weights

        result = self.evaluate()
        self.log.write("eval", self.global_step, epoch=self.epoch, top1=result["top1"], top5=result["top5"])
        summary = {"top1": result["top1"], "top5": result["top5"], "steps": self.global_step,
                   "bad_files": sorted(self.bad_files)}
        if self.config.train.shuffle_check:
            from ..data.frame_order import SHUFFLE_ORDERS

            summary["shuffle"] = {"sequential": result["top1"]}
            for order in SHUFFLE_ORDERS[1:]:
                summary["shuffle"][order] = self.evaluate(frame_order=order, desc=f"shuffle {order}")["top1"]
        if self.info.is_main:
            write_report(result, self.class_names, self.folder)
            save_weights(self.evaluation_model(), self.folder / "model.safetensors")
            summary["run_folder"] = str(self.folder)  # the main process's summary names its folder
            (self.folder / "summary.json").write_text(json.dumps(summary, indent=2))
            self.log.close()
            plot_curves(self.folder)
        return summary


def find_resume(config: RunConfig, resume: str | None) -> Path | None:
    """``resume``: a checkpoint path, 'auto' (the run folder's last.pt if present) or None."""
    if resume is None:
        return None
    if resume == "auto":
        candidate = Path(config.train.output) / "last.pt"
        return candidate if candidate.is_file() else None
    return Path(resume)


def run_training(config: RunConfig, resume: str | None = "auto", progress: bool = True) -> dict:
    """Train, evaluate and report as the config says (under torchrun: every rank calls this)."""
    validate(config)
    info = init_distributed()
    try:
        ensure_synthetic(config, info)
        trainer = Trainer(config, info, progress)
        checkpoint = find_resume(config, resume)
        if checkpoint is not None:
            trainer.resume(checkpoint)
        start = time.perf_counter()
        trainer.fit()
        summary = trainer.finish()
        summary["train_seconds"] = time.perf_counter() - start
        return summary
    finally:
        cleanup()
