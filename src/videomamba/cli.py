"""The ``videomamba`` command: one subcommand per job. It parses arguments and calls the library."""

from __future__ import annotations

import argparse
import sys


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
    if args.skip_list:
        write_skip_list(report, args.skip_list)
        print(f"skip list ({len(report.bad)} files) written to {args.skip_list}")
    return 1 if report.bad else 0


def _cmd_data_generate(args: argparse.Namespace) -> int:
    from .data.synthetic import SyntheticConfig, generate

    cfg = SyntheticConfig(train_size=args.train_size, val_size=args.val_size, frames=args.frames,
                          size=args.size, seed=args.seed)
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
    gen.add_argument("--workers", type=int, default=None)
    gen.set_defaults(func=_cmd_data_generate)


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
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``videomamba`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:  # AnnotationError is a ValueError
        print(f"videomamba {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
