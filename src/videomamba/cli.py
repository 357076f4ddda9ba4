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
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``videomamba`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"videomamba {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
