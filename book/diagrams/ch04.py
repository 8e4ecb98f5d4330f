"""Chapter 04's diagrams: multi-head attention's split and merge with every shape, and the wiring
of a Transformer block in post-norm and pre-norm form.

    python -m book.diagrams.ch04 [OUT_DIR]    (default: chapters/04_code/figures)
"""
from __future__ import annotations

import sys
from pathlib import Path

from matplotlib.patches import Rectangle

from book.diagrams.drawing import CONTENT_WIDTH_IN, COLORS, HEAD_COLORS, MONO, MUTED, arrow, box, canvas, hint, main

FIGURES = Path(__file__).resolve().parents[2] / "chapters" / "04_code" / "figures"


def _features(ax, x, y, width, heads, height=0.22, label=None):
    """A row of D features cut into `heads` coloured blocks (head h owns block h)."""
    step = width / heads
    for h in range(heads):
        ax.add_patch(Rectangle((x + h * step, y), step, height, facecolor=HEAD_COLORS[h % len(HEAD_COLORS)],
                               edgecolor="white", linewidth=1.0))
        ax.text(x + (h + 0.5) * step, y + height / 2, f"h{h}", ha="center", va="center", color="white",
                fontsize=8, family=MONO)
    if label:
        hint(ax, (x + width + 0.1, y + height / 2), label, ha="left", fontsize=8.5, family=MONO)


def heads_split_merge():
    """Left column: split; middle: one attention per head; right column: merge; shapes throughout."""
    fig, ax = canvas(5.3)
    size = (2.35, 0.58)
    lx, mx, rx = 1.35, 3.9, 6.45
    hint(ax, (lx, 5.1), "split_heads", fontsize=11, fontweight="bold")
    hint(ax, (mx, 5.1), "every head at once", fontsize=11, fontweight="bold")
    hint(ax, (rx, 5.1), "merge_heads", fontsize=11, fontweight="bold")

    x_in = box(ax, (lx, 4.5), size, ["x W_q + b_q", "(B, T, D = H·d)"], COLORS["query"])
    _features(ax, lx - 1.0, 3.83, 2.0, 4)
    r = box(ax, (lx, 3.2), size, ["reshape", "(B, T, H, d)"], COLORS["op"])
    t = box(ax, (lx, 2.05), size, ["transpose(1, 2)", "(B, H, T, d)"], COLORS["query"])
    arrow(ax, x_in["bottom"], (lx, 4.08))
    arrow(ax, (lx, 3.82), r["top"])
    arrow(ax, r["bottom"], t["top"])
    hint(ax, (lx, 1.45), "head h: features h·d … (h+1)·d − 1", fontsize=8.5)
    hint(ax, (lx, 1.15), "never reshape straight to (B, H, T, d):", fontsize=8.5)
    hint(ax, (lx, 0.9), "it cuts across time steps", fontsize=8.5)

    s = box(ax, (mx, 4.5), (2.3, 0.58), ["Q Kᵀ / √d", "(B, H, T_q, T_k)"], COLORS["scores"])
    a = box(ax, (mx, 3.35), (2.3, 0.58), ["softmax, masked", "(B, H, T_q, T_k)"], COLORS["scores"])
    o = box(ax, (mx, 2.2), (2.3, 0.58), ["weights @ V", "(B, H, T_q, d)"], COLORS["output"])
    arrow(ax, t["right"], s["left"], connection="arc3,rad=-0.25")
    arrow(ax, s["bottom"], a["top"])
    arrow(ax, a["bottom"], o["top"])
    hint(ax, (mx, 1.55), "d = D / H: the scale uses one head's size", fontsize=8.5)
    hint(ax, (mx, 1.25), "mask (B, T_q, T_k) → (B, 1, T_q, T_k)", fontsize=8.5, family=MONO)

    m1 = box(ax, (rx, 4.5), size, ["transpose(1, 2)", "(B, T_q, H, d)"], COLORS["output"])
    m2 = box(ax, (rx, 3.2), size, ["reshape", "(B, T_q, D)"], COLORS["op"])
    _features(ax, rx - 1.0, 2.42, 2.0, 4)
    w = box(ax, (rx, 1.75), size, ["· W_o + b_o", "(B, T_q, D)"], COLORS["output"])
    arrow(ax, o["right"], m1["left"], connection="arc3,rad=0.35")
    arrow(ax, m1["bottom"], m2["top"])
    arrow(ax, m2["bottom"], (rx, 2.66))
    arrow(ax, (rx, 2.41), w["top"])
    hint(ax, (rx, 1.15), "the exact inverse of the split:", fontsize=8.5)
    hint(ax, (rx, 0.9), "merge(split(x)) == x", fontsize=8.5, family=MONO)
    fig.set_size_inches(CONTENT_WIDTH_IN, 4.6)   # nothing is drawn below y = 0.7: crop it, inches kept
    ax.set_ylim(0.7, 5.3)
    return fig


def _block_column(ax, x, title, norm_first):
    """One encoder block, input at the bottom, output at the top."""
    hint(ax, (x, 5.55), title, fontsize=11, fontweight="bold")
    size = (2.2, 0.5)
    small = (1.5, 0.42)
    ys = {"in": 0.35, "n1": 1.05, "attn": 1.75, "add1": 2.45, "n2": 3.15, "ffn": 3.85, "add2": 4.55}
    box(ax, (x, ys["in"]), small, ["x", "(B, T, D)"], COLORS["query"], fontsizes=(9.5, 8.5))
    attn = ["attention(·,·,·, mask)", ""]
    ffn = ["ffn_out(relu(ffn_in(·)))", ""]
    if norm_first:
        order = [("n1", ["norm1"], COLORS["mask"]), ("attn", attn, COLORS["scores"]), ("add1", ["+"], COLORS["op"]),
                 ("n2", ["norm2"], COLORS["mask"]), ("ffn", ffn, COLORS["output"]), ("add2", ["+"], COLORS["op"])]
    else:
        order = [("attn", attn, COLORS["scores"]), ("add1", ["+"], COLORS["op"]), ("n1", ["norm1"], COLORS["mask"]),
                 ("ffn", ffn, COLORS["output"]), ("add2", ["+"], COLORS["op"]), ("n2", ["norm2"], COLORS["mask"])]
    slots = ["n1", "attn", "add1", "n2", "ffn", "add2"]
    previous = (x, ys["in"] + small[1] / 2)
    for slot, (name, lines, color) in zip(slots, order):
        y = ys[slot]
        b = box(ax, (x, y), size, [line for line in lines if line], color, fontsizes=(9, 8.5))
        arrow(ax, previous, b["bottom"])
        previous = b["top"]
    arrow(ax, previous, (x, 5.1))
    hint(ax, (x, 5.22), "y (B, T, D)", fontsize=8.5, family=MONO)
    # residual paths: from the sub-layer's input around to its "+"
    # (first box of the sub-layer, its "+"), as positions in `order`
    spans = ((0, 2), (3, 5)) if norm_first else ((0, 1), (3, 4))
    for first, add in spans:
        y0, y1 = ys[slots[first]] - 0.35, ys[slots[add]]
        ax.plot([x - 1.1, x - 1.45, x - 1.45, x - 1.1], [y0, y0, y1, y1], color=MUTED, linewidth=1.3)
        arrow(ax, (x - 1.2, y1), (x - 1.1, y1))
        hint(ax, (x - 1.52, (y0 + y1) / 2), "residual", ha="right", fontsize=8, rotation=90)


def norm_orders():
    """Post-norm (Vaswani et al. 2017) and pre-norm (Xiong et al. 2020) encoder blocks side by side."""
    fig, ax = canvas(5.8)
    _block_column(ax, 2.0, "post-norm (norm_first=False)", norm_first=False)
    _block_column(ax, 5.8, "pre-norm (norm_first=True)", norm_first=True)
    return fig


DIAGRAMS = {"heads.svg": heads_split_merge, "norm_order.svg": norm_orders}


if __name__ == "__main__":
    main(DIAGRAMS, FIGURES, sys.argv)
