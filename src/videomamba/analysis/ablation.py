"""The paper's ablations, rerun on the built-in motion benchmark: `videomamba ablate`.

Studies (each variant is a set of ``VideoMambaConfig`` / recipe overrides of one default):
    scan      backward scan order: spatial, temporal, spatio-temporal reversal, forward only
              (without a class token, as the paper's scan ablation; readout by mean pooling)
    pos       positional embedding: none, sinusoidal, learned random, spatial interpolation,
              embedding-dim interpolation, temporal expanding
    frames    8, 16, 32 frames taken evenly from the same 32-frame clips
    width     the default width and twice it (the paper: 192 and 384)
    init      image-model initialisation against none (not a paper table; the premise of the others)
    shuffle   the default model on the motion labels and on the digit (appearance) labels, tested
              with the four frame orders

The image initialisation is the paper's recipe at this scale: an image VideoMamba (one frame,
tubelet 1, same width and depth) is trained on single frames of the built-in training videos with
the digit as label (the frames' appearance), then inflated (``models.convert``: kernel repeated over
the tubelet's frames and averaged, image table turned into the video table by each scheme).

Everything runs from clips rendered in memory and kept on the device (``engine.tensor_train``), with
several runs at once in separate processes (small models leave a GPU mostly idle). Results are
appended to results.jsonl as each run ends, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data.synthetic import DIGIT_CLASSES, SyntheticConfig, flip_label_map, motion_classes, render_split
from ..engine.tensor_train import TensorClips, TensorTrainSettings, evaluate_clips, train_on_tensors
from ..models.convert import load_into, save_weights
from ..models.videomamba import VideoMamba, model_config
from .shuffle import SHUFFLE_ORDERS

# The paper's top-1 (%) per variant: (SSV2, HMDB51); None where it reports none.
PAPER = {
    "scan": {"spatial": (61.9, 43.3), "temporal": (63.3, 52.9), "spatiotemporal": (64.7, 55.2)},
    "pos": {"none": (63.2, 48.7), "sinusoidal": (63.3, 47.5), "random": (63.4, 47.9),
            "spatial_interp": (63.6, 49.4), "embed_dim_interp": (63.6, 51.5), "temporal_expand": (63.7, 58.9)},
    "frames": {"8": (61.0, 52.7), "16": (63.7, 58.9), "32": (64.2, 59.3)},
    "width": {"narrow": (54.6, 56.5), "wide": (63.7, 68.6)},
    "shuffle": {"sequential": (None, 58.9), "blockwise": (None, 56.5), "pairwise": (None, 53.5),
                "interleaved": (None, 51.3)},
}
STUDIES = ("scan", "pos", "frames", "width", "init", "shuffle")
PRESETS = ("gpu", "gpu-single", "cpu")
# The comparisons each study makes, (A, B): is A better than B? The paper's three scan-order claims,
# temporal expanding against every other table, each frame count against the next, width, init.
COMPARISONS = {
    "scan": [("spatiotemporal", "temporal"), ("spatiotemporal", "spatial"), ("temporal", "spatial")],
    "pos": [("temporal_expand", other) for other in ("embed_dim_interp", "spatial_interp", "random", "sinusoidal",
                                                    "none")],
    "width": [("wide", "narrow")],
    "init": [("image model", "scratch")],
}
# two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom (beyond: the normal's 1.96)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


@dataclass
class AblationSetup:
    """Sizes of the data, models and recipes. ``gpu`` is the full set for one GPU on the two-phase
    setting of the generator; ``gpu-single`` the same on the ten single actions (where every variant
    nears the ceiling); ``cpu`` the reduced set the tests run."""

    # the generator's settings beyond size and length (SyntheticConfig fields)
    synthetic: dict = field(default_factory=lambda: {"actions": "two_phase", "distractors": 3})
    train_clips: int = 2400
    val_clips: int = 800
    stored_frames: int = 32  # clips are rendered once at this length; variants take frames evenly
    img_size: int = 64
    default_frames: int = 16
    frames: tuple[int, ...] = (8, 16, 32)
    model: str = "videomamba_nano"
    model_overrides: dict = field(default_factory=dict)
    width_factor: int = 2  # the 'wide' variant's width, as a multiple of the model's
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4, 5)  # 6: the fewest for which a sign-flip test can reach p < 0.05
    # longer and with larger batches than gpu-single's recipe, under which the default model underfits
    # the two-phase set (docs/ablations.md)
    epochs: int = 24
    batch_size: int = 128
    lr: float = 2e-3
    # the image model's own data: single frames of further clips of the same generator (as ImageNet is
    # apart from the video sets), more of them than the video runs see, since a patch model trained
    # from scratch needs many images to recognise a glyph anywhere in the frame
    image_clips: int = 24000
    image_clip_frames: int = 8
    image_frames_per_clip: int = 2
    image_epochs: int = 10
    image_batch_size: int = 256
    image_lr: float = 2e-3
    workers: int = 4  # runs at once
    render_workers: int | None = None

    @classmethod
    def preset(cls, name: str) -> "AblationSetup":
        if name == "gpu":
            return cls()
        if name == "gpu-single":
            return cls(synthetic={"actions": "single", "distractors": 1}, seeds=(0, 1, 2), epochs=12, batch_size=64,
                       lr=1e-3)
        if name == "cpu":
            return cls(train_clips=48, val_clips=24, stored_frames=16, img_size=32, default_frames=8,
                       frames=(4, 8, 16), model_overrides={"embed_dim": 32, "depth": 2}, seeds=(0, 1),
                       epochs=1, batch_size=16, image_clips=48, image_clip_frames=4, image_frames_per_clip=1,
                       image_epochs=1, image_batch_size=16, workers=1,
                       render_workers=1)
        raise ValueError(f"unknown preset {name!r}; choose from {PRESETS}")

    @property
    def actions(self) -> str:
        """The generator's action set for the video studies ('single' or 'two_phase')."""
        return self.synthetic.get("actions", "single")


@dataclass(frozen=True)
class Job:
    """One training run: a study's variant (the run key dedupes variants shared between studies)."""

    key: str
    task: str  # motion | digit
    overrides: tuple  # sorted (field, value) pairs for model_config
    num_frames: int
    seed: int
    init: str | None  # the image model's width key, or None for training from scratch


def _variants(setup: AblationSetup, study: str) -> dict[str, dict]:
    """variant name -> {'model': overrides, 'frames': n, 'task': ..., 'init': bool}."""
    base_width = model_config(setup.model, **setup.model_overrides).embed_dim
    default = {"model": {}, "frames": setup.default_frames, "task": "motion", "init": True}

    def variant(**changes) -> dict:
        out = {**default, **changes}
        out["model"] = {**default["model"], **changes.get("model", {})}
        return out

    if study == "scan":
        return {order: variant(model={"scan_order": order, "cls_token": False})
                for order in ("spatial", "temporal", "spatiotemporal", "none")}
    if study == "pos":
        return {scheme: variant(model={"pos_embed": scheme})
                for scheme in ("none", "sinusoidal", "random", "spatial_interp", "embed_dim_interp", "temporal_expand")}
    if study == "frames":
        return {str(n): variant(frames=n) for n in setup.frames}
    if study == "width":
        return {"narrow": variant(), "wide": variant(model={"embed_dim": base_width * setup.width_factor})}
    if study == "init":
        return {"image model": variant(), "scratch": variant(init=False)}
    if study == "shuffle":
        return {"motion": variant(), "digit": variant(task="digit")}
    raise ValueError(f"unknown study {study!r}; choose from {STUDIES} or all")


def _job(setup: AblationSetup, spec: dict, seed: int) -> Job:
    base = model_config(setup.model, **setup.model_overrides)
    changed = {k: v for k, v in spec["model"].items() if getattr(base, k) != v}  # a default restated is no change
    overrides = tuple(sorted({**setup.model_overrides, **changed}.items()))
    width = dict(overrides).get("embed_dim", model_config(setup.model).embed_dim)
    init = str(width) if spec["init"] else None
    key = json.dumps({"task": spec["task"], "model": dict(overrides), "frames": spec["frames"], "init": init,
                      "seed": seed}, sort_keys=True)
    return Job(key, spec["task"], overrides, spec["frames"], seed, init)


def plan(setup: AblationSetup, studies: list[str]) -> tuple[dict[str, dict[str, list[Job]]], list[Job]]:
    """Per study and variant its jobs (one per seed), and the unique jobs to run."""
    table: dict[str, dict[str, list[Job]]] = {}
    unique: dict[str, Job] = {}
    for study in studies:
        table[study] = {}
        for name, spec in _variants(setup, study).items():
            jobs = [_job(setup, spec, seed) for seed in setup.seeds]
            table[study][name] = jobs
            for job in jobs:
                unique.setdefault(job.key, job)
    # seed by seed: a set cut short holds every variant of its first seeds, so the paired tests still run
    return table, sorted(unique.values(), key=lambda job: job.seed)


# ------------------------------------------------------------------------------------------ data
def render_data(setup: AblationSetup, folder: Path, progress: bool = True) -> Path:
    """Render the clips once into ``folder``/data.pt (uint8 frames, both label sets, opacity)."""
    path = folder / "data.pt"
    synth = SyntheticConfig(train_size=setup.train_clips, val_size=setup.val_clips, frames=setup.stored_frames,
                            size=setup.img_size, seed=1000, **setup.synthetic)
    # the image set is the generator's standard setting whatever the video studies use, as ImageNet is
    # the same for every video benchmark (on two-phase frames the wide image model failed to learn,
    # docs/ablations.md)
    images = SyntheticConfig(train_size=setup.image_clips, val_size=0, frames=setup.image_clip_frames,
                             size=setup.img_size, seed=2000)
    meta = json.dumps([dataclasses.asdict(synth), dataclasses.asdict(images), setup.image_frames_per_clip],
                      sort_keys=True)
    if path.is_file():
        stored = torch.load(path, weights_only=True, mmap=True)
        if stored.get("meta") == meta:
            return path
    data = {"meta": meta}
    for split in ("train", "val"):
        rendered = render_split(synth, split, workers=setup.render_workers, progress=progress)
        for name, value in rendered.items():
            if name != "masks":
                data[f"{split}_{name}"] = torch.from_numpy(value)
    rendered = {k: torch.from_numpy(v) for k, v in render_split(images, "train", workers=setup.render_workers,
                                                                 progress=progress).items() if k != "masks"}
    picked = image_frames(rendered, "", setup.image_frames_per_clip, seed=0)
    data["image_frames"], data["image_digit"] = picked.frames, picked.labels
    tmp = path.with_name(path.name + ".tmp")
    torch.save(data, tmp)
    tmp.replace(path)
    return path


def image_frames(data: dict, split: str, per_clip: int, seed: int) -> TensorClips:
    """Single frames of ``split`` with the digit as label, ``per_clip`` from each clip, where the digit
    is at least 60 % opaque (fades start or end invisible)."""
    generator = np.random.default_rng(seed)
    prefix = f"{split}_" if split else ""
    frames, opacity, digits = data[f"{prefix}frames"], data[f"{prefix}opacity"].numpy(), data[f"{prefix}digit"]
    picks, labels = [], []
    for clip in range(len(frames)):
        visible = np.nonzero(opacity[clip] >= 0.6)[0]
        for frame in generator.choice(visible, size=min(per_clip, len(visible)), replace=False):
            picks.append(frames[clip, frame])
            labels.append(digits[clip])
    return TensorClips(torch.stack(picks)[:, None], torch.stack(labels))


# ------------------------------------------------------------------------------------- one run
_WORKER: dict = {}


def _worker_init(data_path: str, device: str) -> None:
    torch.set_num_threads(1)
    data = torch.load(data_path, weights_only=True)
    dev = torch.device(device)
    frames = {split: data[f"{split}_frames"].to(dev) for split in ("train", "val")}  # one copy for both tasks
    _WORKER.update(device=dev, data=data, clips={
        (task, split): TensorClips(frames[split], data[f"{split}_{task}"].to(dev))
        for task in ("motion", "digit") for split in ("train", "val")})


def _settings(setup: AblationSetup, num_frames: int, task: str, seed: int) -> TensorTrainSettings:
    return TensorTrainSettings(num_frames=num_frames, epochs=setup.epochs, batch_size=setup.batch_size, lr=setup.lr,
                               flip_label_map=flip_label_map(setup.actions) if task == "motion" else None, seed=seed)


def _train_image_model(args: tuple[AblationSetup, int, str]) -> dict:
    setup, width, out_path = args
    device = _WORKER["device"]
    torch.manual_seed(0)
    cfg = model_config(setup.model, **{**setup.model_overrides, "embed_dim": width, "num_frames": 1, "tubelet": 1,
                                       "img_size": setup.img_size, "num_classes": len(DIGIT_CLASSES),
                                       "class_names": DIGIT_CLASSES})
    model = VideoMamba(cfg).to(device)
    data = _WORKER["data"]
    train = TensorClips(data["image_frames"], data["image_digit"]).to(device)
    val = image_frames(data, "val", 1, seed=1).to(device)  # frames of the video runs' val clips
    settings = TensorTrainSettings(num_frames=1, epochs=setup.image_epochs, batch_size=setup.image_batch_size,
                                   lr=setup.image_lr, flip_label_map=None, seed=0)
    result = train_on_tensors(model, train, val, settings)
    save_weights(model, out_path)
    return {"kind": "image", "width": width, "top1": result.top1, "losses": result.losses,
            "seconds": result.seconds, "steps": result.steps, "frames": len(train)}


def _train_video_model(args: tuple[AblationSetup, Job, str | None, str | None]) -> dict:
    setup, job, init_path, save_path = args
    device = _WORKER["device"]
    torch.manual_seed(job.seed)
    classes = motion_classes(setup.actions) if job.task == "motion" else DIGIT_CLASSES
    cfg = model_config(setup.model, **dict(job.overrides), num_frames=job.num_frames, img_size=setup.img_size,
                       num_classes=len(classes), class_names=list(classes))
    model = VideoMamba(cfg)
    if init_path is not None:
        load_into(model, init_path, strict=False)
        model.reset_classifier(len(classes), list(classes))  # the image head is discarded, as ImageNet's
    model.to(device)
    train, val = _WORKER["clips"][(job.task, "train")], _WORKER["clips"][(job.task, "val")]
    result = train_on_tensors(model, train, val, _settings(setup, job.num_frames, job.task, job.seed))
    if save_path is not None:
        save_weights(model, save_path)
    units = job.num_frames // 2  # the shuffle unit is one tubelet step
    shuffled = {order: evaluate_clips(model, val, job.num_frames, frame_order=order)
                for order in SHUFFLE_ORDERS if order != "sequential" and units % 4 == 0}
    return {"kind": "video", "key": job.key, "top1": result.top1, "shuffle": {"sequential": result.top1, **shuffled},
            "losses": result.losses, "seconds": result.seconds, "steps": result.steps,
            "params": sum(p.numel() for p in model.parameters())}


# ------------------------------------------------------------------------------------- the study
def run_ablations(studies: list[str], setup: AblationSetup, output: str | Path, device: str | None = None,
                  progress: bool = True) -> dict:
    """Run the studies (resuming from ``output``/results.jsonl) and write the report; returns the summary."""
    from tqdm import tqdm

    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    table, jobs = plan(setup, studies)
    start = time.perf_counter()
    data_path = render_data(setup, folder, progress)
    render_seconds = time.perf_counter() - start
    results_path = folder / "results.jsonl"
    done = {}
    if results_path.is_file():
        for line in results_path.read_text().splitlines():
            record = json.loads(line)
            done[record.get("key") or f"image:{record['width']}"] = record
    widths = sorted({job.init for job in jobs if job.init is not None}, key=int)
    image_jobs = [(setup, int(w), str(folder / f"image_model_d{w}.safetensors")) for w in widths
                  if f"image:{w}" not in done or not (folder / f"image_model_d{w}.safetensors").is_file()]
    # the shuffle study's models of the first seed are kept, for `videomamba shuffle` / `delta` on them
    saves = {jobs_[0].key: str(folder / f"model_{name}.safetensors")
             for name, jobs_ in table.get("shuffle", {}).items()}
    video_jobs = [(setup, job, str(folder / f"image_model_d{job.init}.safetensors") if job.init else None,
                   saves.get(job.key)) for job in jobs if job.key not in done]

    def record(result: dict) -> None:
        done[result.get("key") or f"image:{result['width']}"] = result
        with results_path.open("a") as handle:
            handle.write(json.dumps(result) + "\n")

    workers = max(1, setup.workers)
    bar = tqdm(total=len(image_jobs) + len(video_jobs), desc="ablation runs", disable=not progress)
    if workers == 1:
        _worker_init(str(data_path), device)
        for args in image_jobs:
            record(_train_image_model(args))
            bar.update()
        for args in video_jobs:
            record(_train_video_model(args))
            bar.update()
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init,
                                 initargs=(str(data_path), device)) as pool:
            for stage, fn in ((image_jobs, _train_image_model), (video_jobs, _train_video_model)):
                for future in as_completed([pool.submit(fn, args) for args in stage]):
                    record(future.result())
                    bar.update()
    bar.close()
    summary = summarise(table, done, setup)
    summary["wall_seconds"] = time.perf_counter() - start
    summary["render_seconds"] = render_seconds
    summary["device"] = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    write_report(summary, folder)
    return summary


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, spread


def paired_difference(first: dict[int, float], second: dict[int, float]) -> dict:
    """top-1 of ``first`` minus ``second`` over the seeds both ran (seed -> top-1; a seed fixes init,
    data order and augmentation alike, so the runs pair): the mean difference, its 95 % t-interval,
    the exact two-sided sign-flip p-value over all 2^n sign patterns, and the smallest p that n seeds
    can give (2 / 2^n: with 3 seeds, 0.25, so no difference can reach p < 0.05)."""
    seeds = sorted(set(first) & set(second))
    diffs = [first[s] - second[s] for s in seeds]
    n = len(diffs)
    if n == 0:
        return {"n": 0}
    mean = sum(diffs) / n
    if n > 1:
        spread = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
        half = _t975(n - 1) * spread / math.sqrt(n)
    else:
        half = math.inf
    observed = abs(mean)
    extreme = sum(abs(sum(d if (pattern >> i) & 1 else -d for i, d in enumerate(diffs))) / n >= observed - 1e-12
                  for pattern in range(2 ** n))
    return {"n": n, "mean": mean, "low": mean - half, "high": mean + half, "p": extreme / 2 ** n,
            "min_p": 2 / 2 ** n, "separated": mean - half > 0 or mean + half < 0,
            "seeds_to_separate": seeds_to_separate(mean, spread) if n > 1 else None}


def _t975(degrees: int) -> float:
    return _T975[degrees - 1] if degrees <= len(_T975) else 1.96


def seeds_to_separate(mean: float, spread: float, most: int = 1000) -> int | None:
    """The fewest paired seeds at which a difference of ``mean`` with a per-seed spread of ``spread``
    (sample std of the differences) would have a 95 % t-interval that excludes 0, and at least the
    seeds a sign-flip test needs to reach p < 0.05. A power statement from the observed effect, not a
    promise: None if more than ``most`` (no practical number of seeds separates it)."""
    if mean == 0:
        return None
    if spread == 0:
        return seeds_needed()
    for n in range(seeds_needed(), most + 1):
        if _t975(n - 1) * spread / math.sqrt(n) < abs(mean):
            return n
    return None


def seeds_needed(min_p: float = 0.05) -> int:
    """The fewest paired seeds whose sign-flip test can reach p < ``min_p``."""
    n = 1
    while 2 / 2 ** n >= min_p:
        n += 1
    return n


def summarise(table: dict, done: dict, setup: AblationSetup) -> dict:
    """Mean and sample standard deviation over seeds per variant (and per shuffle order), and the
    paired comparisons of ``COMPARISONS`` with their intervals and tests."""
    summary: dict = {"setup": dataclasses.asdict(setup), "studies": {}, "image_models": {}}
    for record in done.values():
        if record.get("kind") == "image":
            summary["image_models"][str(record["width"])] = {"top1": record["top1"], "seconds": record["seconds"]}
    for study, variants in table.items():
        rows = {}
        for name, jobs in variants.items():
            records = [done[job.key] for job in jobs if job.key in done]
            if not records:
                continue
            row = {"seeds": [r["top1"] for r in records], "params": records[0]["params"],
                   "seconds": sum(r["seconds"] for r in records),
                   "by_seed": {job.seed: done[job.key]["top1"] for job in jobs if job.key in done}}
            row["mean"], row["std"] = _mean_std(row["seeds"])
            if study == "shuffle":
                row["orders"] = {order: _mean_std([r["shuffle"].get(order, math.nan) for r in records])
                                 for order in SHUFFLE_ORDERS}
            rows[name] = row
        summary["studies"][study] = rows
        comparisons = []
        for a, b in COMPARISONS.get(study, []):
            if a in rows and b in rows:
                test = paired_difference(rows[a]["by_seed"], rows[b]["by_seed"])
                paper = [PAPER.get(study, {}).get(v, (None, None)) for v in (a, b)]
                test["paper"] = [None if x is None or y is None else round(x - y, 1) for x, y in zip(*paper)]
                comparisons.append({"better": a, "than": b, **test})
        if study == "frames":
            names = list(rows)
            for a, b in zip(names[1:], names[:-1]):
                comparisons.append({"better": a, "than": b, **paired_difference(rows[a]["by_seed"], rows[b]["by_seed"])})
        summary.setdefault("comparisons", {})[study] = comparisons
    return summary


def comparison_lines(summary: dict) -> list[str]:
    """A markdown table of every paired comparison: difference, interval, p, verdict, the paper's."""
    lines = ["| study | A better than B? | A − B (points) | 95 % interval | sign-flip p (min possible) | "
             "separated | seeds to separate | paper SSV2 / HMDB51 A − B |", "|---|---|---|---|---|---|---|---|"]
    for study, comparisons in summary.get("comparisons", {}).items():
        for c in comparisons:
            if not c.get("n"):
                continue
            paper = " / ".join("-" if v is None else f"{v:+.1f}" for v in c.get("paper", [None, None]))
            verdict = ("yes, A > B" if c["low"] > 0 else "yes, A < B") if c["separated"] else "no"
            needed = c.get("seeds_to_separate")
            needed = "-" if c["n"] < 2 else (f"{needed}" if needed else "> 1000")
            lines.append(f"| {study} | {c['better']} vs {c['than']} | {c['mean']:+.1f} | "
                         f"[{c['low']:+.1f}, {c['high']:+.1f}] | {c['p']:.2f} ({c['min_p']:.2f}) | {verdict} | "
                         f"{needed} | {paper} |")
    return lines


def write_report(summary: dict, folder: Path) -> None:
    """summary.json, ablations.md (one table per study, the paper's numbers beside) and ablations.png."""
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    lines = [f"Device: {summary.get('device')}; wall time {summary.get('wall_seconds', 0):.0f} s "
             f"(rendering {summary.get('render_seconds', 0):.0f} s)."]
    for width, image in summary["image_models"].items():
        lines.append(f"Image model d{width}: digit top-1 on single val frames {image['top1']:.1f} % "
                     f"({image['seconds']:.0f} s).")
    for study, rows in summary["studies"].items():
        lines += ["", f"### {study}", ""]
        if study == "shuffle":
            lines += ["| task | " + " | ".join(SHUFFLE_ORDERS) + " |", "|---" * (len(SHUFFLE_ORDERS) + 1) + "|"]
            for name, row in rows.items():
                cells = [f"{m:.1f} ± {s:.1f}" for m, s in (row["orders"][o] for o in SHUFFLE_ORDERS)]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
            paper = PAPER["shuffle"]
            lines.append("| paper, HMDB51 | " + " | ".join(f"{paper[o][1]}" for o in SHUFFLE_ORDERS) + " |")
            continue
        lines += ["| variant | top-1 mean ± std | seeds | params | paper SSV2 | paper HMDB51 |",
                  "|---|---|---|---|---|---|"]
        for rank, (name, row) in enumerate(rows.items()):
            if study == "frames":  # by rank: the preset's fewest/middle/most frames against the paper's 8/16/32
                paper = list(PAPER["frames"].values())[rank] if rank < 3 else (None, None)
            else:
                paper = PAPER.get(study, {}).get(name, (None, None))
            cells = [name, f"{row['mean']:.1f} ± {row['std']:.1f}", ", ".join(f"{v:.1f}" for v in row["seeds"]),
                     f"{row['params'] / 1e6:.2f} M"] + ["" if p is None else f"{p}" for p in paper]
            lines.append("| " + " | ".join(cells) + " |")
    if summary.get("comparisons"):
        n = max((c.get("n", 0) for cs in summary["comparisons"].values() for c in cs), default=0)
        lines += ["", "### paired comparisons over seeds", "",
                  f"Seeds pair the runs (same init, data order, augmentation). Separated: the 95 % t-interval of the "
                  f"difference excludes 0. The exact sign-flip test over {n} seeds cannot go below p = "
                  f"{2 / 2 ** n if n else 1:.2f}; p < 0.05 needs at least {seeds_needed()} seeds. Seeds to separate: "
                  f"how many paired seeds the observed difference and spread would need for its interval to exclude "
                  f"0 (a power estimate).", ""]
        lines += comparison_lines(summary)
    (folder / "ablations.md").write_text("\n".join(lines) + "\n")
    _plot(summary, folder / "ablations.png")


def report_from_results(studies: list[str], setup: AblationSetup, results: str | Path, output: str | Path) -> dict:
    """Summarise and report finished runs (a results.jsonl written by ``run_ablations``) without
    rendering or training anything: what a changed report needs from runs already made."""
    table, _ = plan(setup, studies)
    done = {}
    for line in Path(results).read_text().splitlines():
        record = json.loads(line)
        done[record.get("key") or f"image:{record['width']}"] = record
    summary = summarise(table, done, setup)
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    write_report(summary, folder)
    return summary


def _plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    studies = [s for s, rows in summary["studies"].items() if rows]
    if not studies:
        return
    fig, axes = plt.subplots(1, len(studies), figsize=(3.6 * len(studies), 3.6), squeeze=False)
    for ax, study in zip(axes[0], studies):
        rows = summary["studies"][study]
        if study == "shuffle":
            width = 0.8 / len(rows)
            for i, (name, row) in enumerate(rows.items()):
                means = [row["orders"][o][0] for o in SHUFFLE_ORDERS]
                spreads = [row["orders"][o][1] for o in SHUFFLE_ORDERS]
                ax.bar(np.arange(len(SHUFFLE_ORDERS)) + i * width, means, width, yerr=spreads, capsize=3, label=name)
            ax.set_xticks(np.arange(len(SHUFFLE_ORDERS)) + width * (len(rows) - 1) / 2)
            ax.set_xticklabels(SHUFFLE_ORDERS, rotation=30, ha="right")
            ax.legend(fontsize=8)
        else:
            names = list(rows)
            ax.bar(range(len(names)), [rows[n]["mean"] for n in names], yerr=[rows[n]["std"] for n in names],
                   capsize=3, color="tab:blue")
            ax.set_xticks(range(len(names)))
            ax.set_xticklabels(names, rotation=30, ha="right")
            low = min(rows[n]["mean"] - rows[n]["std"] for n in names)
            ax.set_ylim(max(0.0, low - 10), 100)
        ax.set_title(study)
        ax.set_ylabel("top-1 (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
