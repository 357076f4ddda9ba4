"""Multi-view evaluation: softmax averaged over the views of each video, gathered from every rank,
the copies DistributedSampler pads in removed; top-1, top-5, per-class accuracy, confusion matrix."""

from __future__ import annotations

import csv
import json
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..data.frame_order import shuffle_frames
from .distributed import DistInfo, gather_objects


@torch.no_grad()
def predict_scores(model, loader, info: DistInfo, autocast_dtype=None, frame_order: str | None = None,
                   unit: int = 2, progress: bool = True, desc: str = "eval") -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    """(dataset indices, labels, view-averaged probabilities (N, K), skipped-file reports), each
    video once, in dataset order, on every rank."""
    model.eval()
    indices, labels, probs, skipped = [], [], [], []
    amp = torch.autocast(info.device.type, dtype=autocast_dtype) if autocast_dtype else nullcontext()
    for batch in tqdm(loader, desc=desc, disable=not (progress and info.is_main), leave=False):
        video = batch["video"].to(info.device, non_blocking=True)  # (B, V, C, T, H, W)
        if frame_order is not None:
            video = shuffle_frames(video, frame_order, unit)
        b, v = video.shape[:2]
        with amp:
            logits = model(video.flatten(0, 1))
        p = logits.float().softmax(-1).view(b, v, -1).mean(1)
        indices.append(batch["index"].numpy())
        labels.append(batch["label"].numpy())
        probs.append(p.cpu().numpy())
        skipped += batch["skipped"]
    local = (np.concatenate(indices), np.concatenate(labels), np.concatenate(probs), skipped)
    parts = gather_objects(local, info)
    all_index = np.concatenate([p[0] for p in parts])
    all_label = np.concatenate([p[1] for p in parts])
    all_prob = np.concatenate([p[2] for p in parts])
    _, first = np.unique(all_index, return_index=True)  # drop the sampler's padded duplicates
    order = first[np.argsort(all_index[first])]
    return all_index[order], all_label[order], all_prob[order], sorted({s for p in parts for s in p[3]})


def metrics(labels: np.ndarray, probs: np.ndarray, class_names: list[str]) -> dict:
    """Top-1, top-5, per-class accuracy and the confusion matrix; padded bad samples (label -1) excluded."""
    keep = labels >= 0
    labels, probs = labels[keep], probs[keep]
    k = probs.shape[1]
    ranked = np.argsort(-probs, axis=1)
    top1 = ranked[:, 0] == labels
    top5 = (ranked[:, : min(5, k)] == labels[:, None]).any(1)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, ranked[:, 0]), 1)
    per_class = {name: (float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum() else None)
                 for i, name in enumerate(class_names)}
    return {"top1": float(top1.mean()) if len(labels) else 0.0, "top5": float(top5.mean()) if len(labels) else 0.0,
            "videos": int(len(labels)), "per_class": per_class, "confusion": confusion.tolist()}


def write_report(result: dict, class_names: list[str], folder: str | Path, prefix: str = "eval") -> None:
    """JSON of everything, the confusion matrix as CSV and PNG."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{prefix}.json").write_text(json.dumps(result, indent=2))
    confusion = np.array(result["confusion"])
    with open(folder / f"{prefix}_confusion.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["true \\ predicted"] + class_names)
        for name, row in zip(class_names, confusion):
            writer.writerow([name] + row.tolist())
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(class_names)
    fig, ax = plt.subplots(figsize=(min(4 + 0.4 * k, 20), min(3.5 + 0.4 * k, 20)))
    normalised = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    if k <= 40:
        ax.set_xticks(range(k), class_names, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(k), class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"top-1 {100 * result['top1']:.1f}%  ({result['videos']} videos)")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(folder / f"{prefix}_confusion.png", dpi=120)
    plt.close(fig)


def run_evaluation(config, checkpoint: str | Path, output: str | Path | None = None,
                   frame_orders: tuple[str | None, ...] = (None,), unit: int = 2, progress: bool = True) -> dict:
    """``videomamba eval``: multi-view test of a checkpoint on config.data.val; reports to ``output``.

    With several ``frame_orders`` (the frame-shuffle test) the top-1 of each order is returned too.
    """
    from .builders import build_dataset, build_loader
    from .config import validate
    from .distributed import cleanup, init_distributed
    from .predict import load_model
    from .step import autocast_dtype

    validate(config, need_train=False)
    info = init_distributed()
    try:
        model = load_model(checkpoint, info.device)
        dataset = build_dataset(config, "val", train=False)
        if model.cfg.class_names and list(model.cfg.class_names) != list(dataset.class_names):
            raise ValueError(f"{checkpoint}: its class names differ from those of {config.data.val}")
        batch = max(1, (config.train.micro_batch or 8))
        loader, _ = build_loader(dataset, batch, info, False, config.data.num_workers, config.train.seed)
        results = {}
        for order in frame_orders:
            amp_dtype = autocast_dtype(config.train.precision, info.device)
            _, labels, probs, skipped = predict_scores(model, loader, info, amp_dtype,
                                                       frame_order=order, unit=unit, progress=progress,
                                                       desc=f"eval {order or ''}".strip())
            result = metrics(labels, probs, dataset.class_names)
            result["skipped_files"] = skipped
            results[order or "sequential"] = result
        if info.is_main and output is not None:
            write_report(results.get("sequential", next(iter(results.values()))), dataset.class_names, output)
        return results
    finally:
        cleanup()
