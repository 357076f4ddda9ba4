"""The frame-shuffle test: accuracy when the order of the frames is disturbed.

The paper's orders on 8 units (1-based): interleaved [1,8,2,7,3,6,4,5], pairwise
[1,2,7,8,5,6,3,4], block-wise [5,6,7,8,1,2,3,4]; sequential is the identity. For any even number
of units 2m they generalise as: interleaved takes alternately from the front and the back;
pairwise keeps the first pair and then takes the other pairs in reverse order; block-wise swaps the
two halves. The unit is one tubelet step (2 frames) by default, one frame on request.

The orders themselves are a data operation (``data.frame_order``, used by the evaluation loops);
this module reports the test.
"""

from __future__ import annotations

from ..data.frame_order import SHUFFLE_ORDERS, shuffle_frames, shuffle_order

__all__ = ["SHUFFLE_ORDERS", "shuffle_frames", "shuffle_order", "write_shuffle_report"]


def write_shuffle_report(results: dict[str, dict[str, float]], folder, title: str = "frame-shuffle test") -> None:
    """``results[name][order] = top-1`` as shuffle.json, shuffle.md (a table) and shuffle.png (bars)."""
    import json
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    (folder / "shuffle.json").write_text(json.dumps(results, indent=2))
    lines = ["| | " + " | ".join(SHUFFLE_ORDERS) + " |", "|---" * (len(SHUFFLE_ORDERS) + 1) + "|"]
    for name, accs in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * accs[o]:.1f}" for o in SHUFFLE_ORDERS) + " |")
    (folder / "shuffle.md").write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(1.6 + 1.6 * len(SHUFFLE_ORDERS), 3.6))
    width = 0.8 / max(len(results), 1)
    for k, (name, accs) in enumerate(results.items()):
        xs = [i + (k - (len(results) - 1) / 2) * width for i in range(len(SHUFFLE_ORDERS))]
        ax.bar(xs, [100 * accs[o] for o in SHUFFLE_ORDERS], width, label=name)
    ax.set_xticks(range(len(SHUFFLE_ORDERS)), SHUFFLE_ORDERS)
    ax.set_ylabel("top-1 (%)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(folder / "shuffle.png", dpi=110)
    plt.close(fig)
