"""Write N random clips as JPEG frame folders plus a list file (for machines without PyAV).

Usage: python benchmarks/make_frame_clips.py OUT --clips 96 --frames 16 --size 224 --classes 10
Each clip is a random texture drifting in a class-dependent direction, so the labels are learnable.
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--clips", type=int, default=96)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--classes", type=int, default=10)
    args = parser.parse_args()
    out = Path(args.out)
    rng = np.random.default_rng(0)
    lines = []
    for i in range(args.clips):
        label = i % args.classes
        angle = 2 * np.pi * label / args.classes
        base = rng.integers(0, 255, (args.size // 8, args.size // 8, 3), dtype=np.uint8)
        texture = np.kron(base, np.ones((8, 8, 1), dtype=np.uint8))
        folder = out / f"clip_{i:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        for t in range(args.frames):
            shift = (int(round(4 * t * np.sin(angle))), int(round(4 * t * np.cos(angle))))
            Image.fromarray(np.roll(texture, shift, axis=(0, 1))).save(folder / f"img_{t + 1:05d}.jpg", quality=90)
        lines.append(f"clip_{i:04d} {label}")
    (out / "list.txt").write_text("\n".join(lines) + "\n")
    (out / "classes.txt").write_text("\n".join(f"direction_{k}" for k in range(args.classes)) + "\n")
    print(f"{args.clips} clips in {out}")


if __name__ == "__main__":
    main()
