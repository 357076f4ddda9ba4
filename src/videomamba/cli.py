"""The ``videomamba`` command: one subcommand per job. It parses arguments and calls the library."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path


def _cmd_info(args: argparse.Namespace) -> int:
    from .analysis.efficiency import count_macs, count_parameters
    from .models import create_model

    model = create_model(args.model, num_frames=args.frames, img_size=args.img_size,
                         num_classes=args.num_classes, scan_order=args.scan_order, pos_embed=args.pos_embed)
    cfg = model.cfg
    n_t, n_h, n_w = cfg.grid
    macs = count_macs(cfg)
    rows = [
        ("model", args.model),
        ("input (C, T, H, W)", f"({cfg.in_chans}, {cfg.num_frames}, {cfg.img_size}, {cfg.img_size})"),
        ("tubelet", "x".join(map(str, cfg.tubelet))),
        ("tokens", f"{n_t * n_h * n_w} = {n_t}x{n_h}x{n_w}" + (" + 1 class token" if cfg.cls_token else "")),
        ("width / depth", f"{cfg.embed_dim} / {cfg.depth}"),
        ("parameters", f"{count_parameters(model) / 1e6:.2f} M"),
        ("GFLOPs, paper-comparable", f"{macs['paper_comparable'] / 1e9:.2f} (in_proj + out_proj + tokenizer)"),
        ("GFLOPs, full", f"{macs['full'] / 1e9:.2f} (everything; scan at 9*L*D*N per direction: "
                         f"{macs['scan'] / 1e9:.2f})"),
        ("scan order", cfg.scan_order),
        ("positional embedding", cfg.pos_embed),
        ("readout", cfg.pool),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def _cmd_data_check(args: argparse.Namespace) -> int:
    from .data.check import check_dataset, write_skip_list
    from .data.datasets import load_annotations

    annotations = load_annotations(args.format, args.annotations, args.root, split=args.split,
                                   train=not args.test_split)
    report = check_dataset(annotations, min_frames=args.min_frames, decode=not args.no_decode)
    print(report.summary())
    for path, why in annotations.left_out:
        print(f"LEFT OUT {path}: {why}")
    if args.skip_list:
        write_skip_list(report, args.skip_list)
        print(f"skip list ({len(report.bad)} files) written to {args.skip_list}")
    return 1 if report.bad else 0


def _cmd_data_generate(args: argparse.Namespace) -> int:
    from .data.synthetic import SyntheticConfig, generate

    cfg = SyntheticConfig(train_size=args.train_size, val_size=args.val_size, frames=args.frames,
                          size=args.size, seed=args.seed, actions=args.actions, distractors=args.distractors)
    root = generate(args.root, cfg, workers=args.workers)
    print(f"built-in dataset at {root}: motion/{{train,val}}.txt and digit/{{train,val}}.txt")
    return 0


def _add_data_parsers(sub) -> None:
    data = sub.add_parser("data", help="dataset tools").add_subparsers(dest="data_command", required=True)
    check = data.add_parser("check", help="validate a dataset before training")
    check.add_argument("annotations", help="list file, Kinetics CSV, SSV2 split JSON, HMDB51 split folder or class folder")
    check.add_argument("--format", default="list", choices=["list", "kinetics", "ssv2", "hmdb51", "folder"])
    check.add_argument("--root", default="", help="prefix of the video paths")
    check.add_argument("--split", type=int, default=1, help="HMDB51 split number")
    check.add_argument("--test-split", action="store_true", help="HMDB51: check the test videos (tag 2)")
    check.add_argument("--min-frames", type=int, default=1)
    check.add_argument("--no-decode", action="store_true", help="only demux (faster), do not decode frames")
    check.add_argument("--skip-list", default=None, help="write bad files here (path<TAB>reason)")
    check.set_defaults(func=_cmd_data_check)
    gen = data.add_parser("generate", help="write the built-in moving-digits dataset")
    gen.add_argument("root")
    gen.add_argument("--train-size", type=int, default=1600)
    gen.add_argument("--val-size", type=int, default=400)
    gen.add_argument("--frames", type=int, default=16)
    gen.add_argument("--size", type=int, default=64)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--actions", default="single", choices=["single", "two_phase"],
                     help="single: ten actions in time-reversed pairs; two_phase: 48 ordered pairs of them")
    gen.add_argument("--distractors", type=int, default=1, help="drifting squares and discs per clip")
    gen.add_argument("--workers", type=int, default=None)
    gen.set_defaults(func=_cmd_data_generate)


def _cmd_train(args: argparse.Namespace) -> int:
    from .engine.config import load_config
    from .engine.train import TrainingDiverged, run_training

    config = load_config(args.config, args.overrides)
    resume = None if args.resume == "none" else args.resume
    try:
        summary = run_training(config, resume=resume, progress=not args.no_progress)
    except TrainingDiverged as err:
        print(f"videomamba train: {err}", file=sys.stderr)
        return 3
    if summary is not None:
        line = f"top-1 {100 * summary['top1']:.1f}%  top-5 {100 * summary['top5']:.1f}%  ({summary['steps']} steps, " \
               f"{summary['train_seconds']:.0f} s)"
        if "shuffle" in summary:
            line += "\nframe shuffle, top-1: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in summary["shuffle"].items())
            if "run_folder" in summary:
                from .analysis.shuffle import write_shuffle_report

                write_shuffle_report({"model": summary["shuffle"]}, summary["run_folder"])
        print(line)
        print(f"run folder: {config.train.output}  (model.safetensors, last.pt, eval.json, curves.png)")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    import json

    from .engine.config import load_config
    from .engine.evaluate import run_evaluation

    config = load_config(args.config, args.overrides)
    output = args.output or config.train.output
    results = run_evaluation(config, args.checkpoint, output, progress=not args.no_progress)
    result = results["sequential"]
    print(json.dumps({"top1": result["top1"], "top5": result["top5"], "videos": result["videos"],
                      "skipped_files": len(result["skipped_files"])}))
    print(f"reports in {output}: eval.json, eval_confusion.csv, eval_confusion.png")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from .engine.predict import predict_files

    failed = 0
    for prediction in predict_files(args.videos, args.checkpoint, topk=args.topk, clips=args.clips, crops=args.crops):
        if prediction.error is not None:
            failed += 1
            print(f"videomamba predict: skipped {prediction.error}", file=sys.stderr)
            continue
        print(prediction.path)
        for name, prob in prediction.top:
            print(f"  {prob:7.4f}  {name}")
    if failed:
        print(f"videomamba predict: {failed} of {len(args.videos)} files could not be read", file=sys.stderr)
    return 1 if failed else 0


def _cmd_shuffle(args: argparse.Namespace) -> int:
    import json

    from .analysis.shuffle import SHUFFLE_ORDERS, write_shuffle_report
    from .engine.config import load_config
    from .engine.evaluate import run_evaluation

    if args.merge:  # one table and plot from earlier runs (e.g. a motion and an appearance model)
        merged: dict = {}
        for folder in args.merge:
            path = Path(folder) / "shuffle.json"
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no shuffle.json (run `videomamba shuffle --output {folder}` first)")
            merged.update(json.loads(path.read_text()))
        output = args.output or "shuffle"
        Path(output).mkdir(parents=True, exist_ok=True)
        write_shuffle_report(merged, output)
        print((Path(output) / "shuffle.md").read_text())
        return 0
    if not (args.checkpoint and args.config):
        raise ValueError("give --checkpoint and --config (or --merge FOLDER... to combine earlier runs)")
    overrides = list(args.overrides) + ([f"data.val={args.data}"] if args.data else [])
    config = load_config(args.config, overrides)
    results = run_evaluation(config, args.checkpoint, None, frame_orders=(None,) + SHUFFLE_ORDERS[1:],
                             unit=args.unit, progress=not args.no_progress)
    table = {order: results[order]["top1"] for order in SHUFFLE_ORDERS}
    output = args.output or config.train.output
    Path(output).mkdir(parents=True, exist_ok=True)
    write_shuffle_report({args.label or Path(args.checkpoint).parent.name or "model": table}, output)
    print("  ".join(f"{k} {100 * v:.1f}%" for k, v in table.items()))
    print(f"table and plot in {output}: shuffle.md, shuffle.png")
    return 0


def _cmd_delta(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from .analysis import delta
    from .engine.predict import load_model

    model = load_model(args.checkpoint)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    depth = model.cfg.depth
    layers = args.layers if args.layers else sorted({0, depth // 2, depth - 1})
    bad = [layer for layer in layers if not 0 <= layer < depth]
    if bad:
        raise ValueError(f"--layers {bad}: the model has layers 0..{depth - 1}")
    if args.dataset:
        result = delta.object_mass_by_layer(model, args.dataset, videos=args.videos)
        (output / "delta_object_mass.json").write_text(json.dumps(result, indent=2))
        delta.plot_object_mass(result, output / "delta_object_mass.png")
        print("layer  " + "  ".join(f"{d:>9s}" for d in delta.DIRECTIONS) + "   (object area "
              f"{result['object_area']:.3f})")
        for layer in range(depth):
            print(f"{layer:5d}  " + "  ".join(f"{result[d][layer]:9.3f}" for d in delta.DIRECTIONS))
        print(f"written to {output}: delta_object_mass.json, delta_object_mass.png")
        return 0
    if not args.video:
        raise ValueError("give a VIDEO, or --dataset ROOT for the object-mass table of the built-in dataset")
    shown, video, indices = delta.load_clip(args.video, model, args.stride)
    maps = delta.compute_delta_maps(model, video)
    mask = delta.mask_for_clip(args.mask_root, args.video, indices, shown.shape[-1]) if args.mask_root else None
    stem = Path(args.video).stem
    delta.save_grid(maps, shown, output / f"{stem}_delta_grid.png", direction=args.direction)
    delta.save_animation(maps, shown, output / f"{stem}_delta.gif", layers, direction=args.direction)
    rows = {d: delta.layer_summary(maps, d, mask) for d in delta.DIRECTIONS}
    delta.write_summary(rows, output / f"{stem}_delta_summary.md")
    print((output / f"{stem}_delta_summary.md").read_text())
    print(f"written to {output}: {stem}_delta_grid.png, {stem}_delta.gif, {stem}_delta_summary.md")
    return 0


def _cmd_efficiency(args: argparse.Namespace) -> int:
    import datetime
    import platform

    import torch

    from .analysis.efficiency import efficiency_table, write_efficiency_report

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    frames = args.frames or ([8, 16, 32, 64, 128] if device.type == "cuda" else [8, 16, 32])
    size = args.img_size or (224 if device.type == "cuda" else 112)
    rows = efficiency_table(frames, size, args.batch, device, args.model, timed=not args.no_timing)
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"
    note = (f"{datetime.date.today()}, {card}, torch {torch.__version__}; input {size}x{size}, batch {args.batch} for "
            f"memory and throughput (inference{', bf16 autocast' if device.type == 'cuda' else ', float32'}); "
            f"GFLOPs at batch 1 in multiply-accumulates; command: videomamba efficiency {' '.join(args.argv)}")
    write_efficiency_report(rows, args.output, note)
    print((__import__("pathlib").Path(args.output) / "efficiency.md").read_text())
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from .models.convert import load_into, read_checkpoint, save_weights
    from .models.factory import model_for_checkpoint

    overrides = {"num_classes": args.num_classes, "num_frames": args.num_frames, "img_size": args.img_size,
                 "pos_embed": args.pos_embed, "scan_order": args.scan_order, "embed_dim": args.embed_dim,
                 "depth": args.depth, "combine": args.combine}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    checkpoint = read_checkpoint(args.src, ema=True if args.ema else None)
    model = model_for_checkpoint(args.model, checkpoint, args.layout, not args.drop_head, **overrides)
    report = load_into(model, checkpoint, layout=args.layout, strict=not args.allow_missing,
                       keep_head=not args.drop_head)
    save_weights(model, args.dst)
    print(report)
    print(f"wrote {args.dst} ({model.cfg.embed_dim} wide, {model.cfg.depth} layers, tubelet {model.cfg.tubelet}, "
          f"{model.cfg.num_frames} frames, combine {model.cfg.combine}, {model.cfg.num_classes} classes)")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .engine.predict import load_model
    from .models.export import check_onnx, export_onnx

    model = load_model(args.checkpoint)
    path = export_onnx(model, args.onnx, batch=args.batch)
    print(f"wrote {path}")
    try:
        diff = check_onnx(model, path, batch=args.batch)
    except ImportError:
        print("onnxruntime is not installed: output not checked (pip install onnxruntime)")
        return 0
    print(f"onnxruntime vs PyTorch on 3 random clips: max |difference| {diff:.2e}")
    return 0 if diff < 1e-3 else 1


def _cmd_ablate(args: argparse.Namespace) -> int:
    from .analysis.ablation import STUDIES, AblationSetup, run_ablations

    studies = list(STUDIES) if args.study == ["all"] else args.study
    setup = AblationSetup.preset(args.preset)
    changes = {}
    if args.seeds is not None:
        changes["seeds"] = tuple(args.seeds)
    if args.workers is not None:
        changes["workers"] = args.workers
    if args.epochs is not None:
        changes["epochs"] = args.epochs
    setup = dataclasses.replace(setup, **changes)
    import torch

    if args.preset.startswith("gpu") and (args.device or ("cuda" if torch.cuda.is_available() else "cpu")) == "cpu":
        print("note: the gpu presets on a CPU take hours (GPU minutes on an H100); "
              "--preset cpu runs the reduced set", file=sys.stderr)
    summary = run_ablations(studies, setup, args.output, device=args.device, progress=not args.no_progress)
    print((Path(args.output) / "ablations.md").read_text())
    print(f"{summary['wall_seconds']:.0f} s in all; report in {args.output}/ablations.md and ablations.png")
    return 0


def _add_run_parsers(sub) -> None:
    train = sub.add_parser("train", help="train (and evaluate) a model from a YAML config")
    train.add_argument("--config", required=True, help="configs/NAME.yaml")
    train.add_argument("overrides", nargs="*", help="section.key=value, e.g. optim.lr=1e-3 train.batch_size=32")
    train.add_argument("--resume", default="auto", help="a checkpoint, 'auto' (the run folder's last.pt) or 'none'")
    train.add_argument("--no-progress", action="store_true")
    train.set_defaults(func=_cmd_train)

    evaluate = sub.add_parser("eval", help="multi-view evaluation of a checkpoint")
    evaluate.add_argument("--config", required=True)
    evaluate.add_argument("--checkpoint", required=True, help="model.safetensors or last.pt")
    evaluate.add_argument("overrides", nargs="*", help="e.g. data.test_clips=5 data.test_crops=3")
    evaluate.add_argument("--output", default=None, help="folder for the reports (default: train.output)")
    evaluate.add_argument("--no-progress", action="store_true")
    evaluate.set_defaults(func=_cmd_eval)

    pred = sub.add_parser("predict", help="top classes of each video")
    pred.add_argument("videos", nargs="+")
    pred.add_argument("--checkpoint", required=True)
    pred.add_argument("--topk", type=int, default=5)
    pred.add_argument("--clips", type=int, default=1)
    pred.add_argument("--crops", type=int, default=1, choices=[1, 3])
    pred.set_defaults(func=_cmd_predict)

    shuffle = sub.add_parser("shuffle", help="accuracy under the paper's frame-shuffle orders")
    shuffle.add_argument("--checkpoint", help="the model to test")
    shuffle.add_argument("--config", help="the config the model was trained with (its data and labels)")
    shuffle.add_argument("--label", default=None, help="row name in the table (default: the checkpoint's folder)")
    shuffle.add_argument("--merge", nargs="+", default=None, metavar="FOLDER",
                         help="combine the shuffle.json of earlier runs into one table and plot")
    shuffle.add_argument("--data", default=None, help="annotations to test on (default: the config's data.val)")
    shuffle.add_argument("--unit", type=int, default=2, help="frames per shuffled unit (2: a tubelet step)")
    shuffle.add_argument("overrides", nargs="*")
    shuffle.add_argument("--output", default=None)
    shuffle.add_argument("--no-progress", action="store_true")
    shuffle.set_defaults(func=_cmd_shuffle)

    dmap = sub.add_parser("delta", help="Δ maps of a video (PNG grid, GIF, per-layer table)")
    dmap.add_argument("video", nargs="?", help="a video file or frame folder")
    dmap.add_argument("--checkpoint", required=True)
    dmap.add_argument("--layers", type=int, nargs="*", help="layers for the animation (default: first, middle, last)")
    dmap.add_argument("--direction", default="mean", choices=["forward", "backward", "mean"])
    dmap.add_argument("--stride", type=int, default=1, help="frame stride of the clip")
    dmap.add_argument("--mask-root", default=None, help="built-in dataset root: add the Δ mass inside the object")
    dmap.add_argument("--dataset", default=None, help="built-in dataset root: Δ mass in the object per layer over videos")
    dmap.add_argument("--videos", type=int, default=50)
    dmap.add_argument("--output", default="delta_maps")
    dmap.set_defaults(func=_cmd_delta)

    eff = sub.add_parser("efficiency", help="params, GFLOPs, memory and throughput vs frames, against a ViT-S")
    eff.add_argument("--model", default="videomamba_small")
    eff.add_argument("--frames", type=int, nargs="*", help="default: 8..128 on a GPU, 8 16 32 on CPU")
    eff.add_argument("--img-size", type=int, default=None, help="default: 224 on a GPU, 112 on CPU")
    eff.add_argument("--batch", type=int, default=8)
    eff.add_argument("--device", default=None)
    eff.add_argument("--no-timing", action="store_true", help="counts only")
    eff.add_argument("--output", default="efficiency")
    eff.set_defaults(func=_cmd_efficiency)

    conv = sub.add_parser("convert", help="Vim / OpenGVLab VideoMamba / our checkpoints -> our safetensors")
    conv.add_argument("src")
    conv.add_argument("dst", help="output .safetensors (weights + config in the metadata)")
    conv.add_argument("--model", default="videomamba_small", help="registered size matching the source's width and depth")
    conv.add_argument("--layout", default="auto", choices=["auto", "videomamba", "vim", "opengvlab"])
    conv.add_argument("--num-classes", type=int, default=None)
    conv.add_argument("--num-frames", type=int, default=None)
    conv.add_argument("--img-size", type=int, default=None)
    conv.add_argument("--pos-embed", default=None, help="positional scheme built from an image table (Vim)")
    conv.add_argument("--scan-order", default=None)
    conv.add_argument("--embed-dim", type=int, default=None, help="width, for sizes not in the registry")
    conv.add_argument("--depth", type=int, default=None, help="layers, for sizes not in the registry")
    conv.add_argument("--allow-missing", action="store_true", help="keep going when backbone tensors are missing")
    conv.add_argument("--combine", default=None, choices=["mean", "sum"],
                      help="how the model combines the directions (default: as the source; out_proj is rescaled exactly)")
    conv.add_argument("--ema", action="store_true", help="take the file's EMA weights ('model_ema')")
    conv.add_argument("--drop-head", action="store_true", help="drop the file's classifier even where it fits")
    conv.set_defaults(func=_cmd_convert)

    ablate = sub.add_parser("ablate", help="the paper's ablations on the built-in motion benchmark")
    ablate.add_argument("--study", nargs="+", default=["all"],
                        help="scan, pos, frames, width, init, shuffle or all (default)")
    ablate.add_argument("--preset", default="gpu", choices=["gpu", "gpu-single", "cpu"],
                        help="gpu: the full set on the two-phase actions, 6 seeds (under 20 GPU minutes on an "
                             "H100); gpu-single: on the ten single actions, 3 seeds; cpu: a reduced run")
    ablate.add_argument("--seeds", type=int, nargs="+", default=None)
    ablate.add_argument("--epochs", type=int, default=None, help="epochs per video run (default: the preset's)")
    ablate.add_argument("--workers", type=int, default=None, help="runs at once (processes sharing the device)")
    ablate.add_argument("--device", default=None)
    ablate.add_argument("--output", default="ablations")
    ablate.add_argument("--no-progress", action="store_true")
    ablate.set_defaults(func=_cmd_ablate)

    export = sub.add_parser("export", help="export a model to ONNX (checked with onnxruntime)")
    export.add_argument("checkpoint")
    export.add_argument("--onnx", required=True, help="output .onnx path")
    export.add_argument("--batch", type=int, default=1)
    export.set_defaults(func=_cmd_export)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="videomamba", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="parameters, tokens and GFLOPs of a model")
    info.add_argument("model", help="a registered size, e.g. videomamba_small (see `videomamba info --list`)")
    info.add_argument("--frames", type=int, default=None, help="number of input frames")
    info.add_argument("--img-size", type=int, default=None, help="input height and width")
    info.add_argument("--num-classes", type=int, default=None)
    info.add_argument("--scan-order", default=None, choices=["spatiotemporal", "spatial", "temporal", "none"])
    info.add_argument("--pos-embed", default=None)
    info.set_defaults(func=_cmd_info)
    _add_data_parsers(sub)
    _add_run_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``videomamba`` console script."""
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[2:] if argv is None else argv[1:])
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except (ValueError, FileNotFoundError) as err:  # AnnotationError is a ValueError
        print(f"videomamba {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
