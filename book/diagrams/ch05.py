"""Chapter 05's diagrams: the Vision Transformer's pipeline, and DIN's target attention.

    python -m book.diagrams.ch05 [OUT_DIR]    (default: chapters/05_applications/figures)
"""
from __future__ import annotations

import sys
from pathlib import Path

from matplotlib.patches import Rectangle

from book.diagrams.drawing import COLORS, HEAD_COLORS, MASK_FALSE, MUTED, arrow, box, canvas, hint, main

FIGURES = Path(__file__).resolve().parents[2] / "chapters" / "05_applications" / "figures"


def vit_pipeline():
    """An 8x8 image cut into 16 patches of 2x2, then the boxes of the model, left to right."""
    fig, ax = canvas(2.6)
    # the image: 8x8 pixels, patch borders drawn thicker, patch 0 and 1 coloured
    x0, y0, cell = 0.2, 2.1, 0.19
    for i in range(8):
        for j in range(8):
            patch = (i // 2) * 4 + j // 2
            color = HEAD_COLORS[patch % 4] if patch < 4 else MASK_FALSE
            ax.add_patch(Rectangle((x0 + j * cell, y0 - (i + 1) * cell), cell, cell, facecolor=color,
                                   edgecolor="white", linewidth=0.4))
    for k in range(5):
        ax.plot([x0 + 2 * k * cell] * 2, [y0, y0 - 8 * cell], color=MUTED, linewidth=1.4)
        ax.plot([x0, x0 + 8 * cell], [y0 - 2 * k * cell] * 2, color=MUTED, linewidth=1.4)
    hint(ax, (x0 + 4 * cell, 0.35), "8×8 image,\n16 patches of 2×2", fontsize=8.5)
    size = (1.05, 0.95)
    patches = box(ax, (2.55, 1.35), size, ["patches", "(16, 4)", "row-major"], COLORS["key"], fontsizes=(9.5, 8.5))
    embed = box(ax, (3.75, 1.35), size, ["embed", "(16, 64)", "linear"], COLORS["value"], fontsizes=(9.5, 8.5))
    tokens = box(ax, (4.95, 1.35), size, ["[CLS] +", "positions", "(17, 64)"], COLORS["query"], fontsizes=(9.5, 8.5))
    encoder = box(ax, (6.15, 1.35), size, ["encoder", "blocks ×2", "(17, 64)"], COLORS["scores"], fontsizes=(9.5, 8.5))
    head = box(ax, (7.2, 1.35), (0.75, 0.95), ["head", "[CLS]", "→ 10"], COLORS["output"], fontsizes=(9.5, 8.5))
    arrow(ax, (x0 + 8 * cell + 0.05, 1.35), patches["left"])
    for a, b in ((patches, embed), (embed, tokens), (tokens, encoder), (encoder, head)):
        arrow(ax, a["right"], b["left"])
    hint(ax, (4.95, 2.2), "a learned [CLS] token in front,\na learned position vector added to each", fontsize=8.5)
    hint(ax, (6.15, 0.5), "self-attention + MLP,\npre-norm, residuals", fontsize=8.5)
    return fig


def target_attention():
    """A candidate item attends over a history of items of three kinds; the weighted sum is the
    user's interest for that candidate. The weights are illustrative, much sharper than those the
    page's trained model learns (about half on the candidate's kind; the page says so)."""
    fig, ax = canvas(3.0)
    kinds = [0, 1, 0, 2, 1, 0, 2, 0]
    weights = [0.22, 0.02, 0.25, 0.01, 0.02, 0.24, 0.01, 0.23]
    colors = [HEAD_COLORS[k] for k in kinds]
    xs = [0.6 + 0.62 * i for i in range(len(kinds))]
    for x, c, w in zip(xs, colors, weights):
        box(ax, (x, 0.55), (0.5, 0.45), ["item"], c, fontsizes=(8.5, 8))
        hint(ax, (x, 1.0), f"{w:.2f}", fontsize=8.5)
    hint(ax, (xs[0] - 0.05, 0.1), "the user's history (colour = kind of item); weights illustrative",
         ha="left", fontsize=8.5)
    candidate = box(ax, (2.75, 2.45), (1.6, 0.55), ["candidate", "a blue item"], HEAD_COLORS[0], fontsizes=(9.5, 8.5))
    for x in xs:
        arrow(ax, (candidate["bottom"][0], candidate["bottom"][1]), (x, 1.12), color=MUTED)
    hint(ax, (0.1, 2.45), "weights: softmax over\nthe history of\nitem · candidate / √d", ha="left", fontsize=8.5)
    interest = box(ax, (6.2, 1.6), (1.7, 0.6), ["interest", "Σ weight · item"], COLORS["output"], fontsizes=(9.5, 8.5))
    click = box(ax, (6.2, 2.55), (1.7, 0.5), ["MLP → p(click)"], COLORS["scores"], fontsizes=(9.5, 8.5))
    arrow(ax, (xs[-1] + 0.3, 0.6), interest["bottom"], connection="arc3,rad=0.3")
    arrow(ax, interest["top"], click["bottom"])
    arrow(ax, candidate["right"], click["left"])
    return fig


DIAGRAMS = {"vit_pipeline.svg": vit_pipeline, "target_attention.svg": target_attention}


if __name__ == "__main__":
    main(DIAGRAMS, FIGURES, sys.argv)
