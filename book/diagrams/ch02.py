"""Chapter 02's diagrams: the Q/K/V flow of one attention call, the gallery of masks, and the
split and merge of multi-head attention.

    python -m book.diagrams.ch02 [OUT_DIR]    (default: chapters/02_principles/figures)

Shapes follow ../shared/CONTRACT.md (batch-first, any leading dimensions `...`). The mask grids are
computed by the grader's NumPy oracle, so the pictures show exactly what the exercises grade (and
the book's code holds no second copy of the exercises' solutions).
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from book.diagrams.drawing import (
    COLORS, HEAD_COLORS, MASK_FALSE, MASK_TRUE, MONO, MUTED, arrow, bool_grid, box, canvas, hint, main,
)

FIGURES = Path(__file__).resolve().parents[2] / "chapters" / "02_principles" / "figures"


def chapter_oracle():
    """The grader's NumPy oracle of chapter 02, imported directly (not through the grader's runner),
    so drawing needs NumPy and nothing else."""
    return importlib.import_module("autograder.oracle.ch02_principles")


def qkv_flow():
    """One call of scaled dot-product attention, top to bottom, with the shape of every tensor."""
    fig, ax = canvas(6.3)
    tensor, op = (2.2, 0.62), (2.6, 0.44)
    q = box(ax, (1.35, 5.8), tensor, ["queries", "(..., n_q, d_k)"], COLORS["query"])
    k = box(ax, (3.95, 5.8), tensor, ["keys", "(..., n_k, d_k)"], COLORS["key"])
    v = box(ax, (6.5, 5.8), tensor, ["values", "(..., n_k, d_v)"], COLORS["value"])

    x = 2.65  # the main column
    matmul = box(ax, (x, 4.85), op, [r"$Q\,K^{\top} / \sqrt{d_k}$"], COLORS["op"])
    arrow(ax, q["bottom"], (x - 0.45, matmul["top"][1]))
    arrow(ax, k["bottom"], (x + 0.45, matmul["top"][1]))
    scores = box(ax, (x, 4.0), tensor, ["scores", "(..., n_q, n_k)"], COLORS["scores"])
    arrow(ax, matmul["bottom"], scores["top"])

    masking = box(ax, (x, 3.1), op, ["mask: False → −∞"], COLORS["op"])
    arrow(ax, scores["bottom"], masking["top"])
    mask = box(ax, (5.3, 3.1), (2.0, 0.62), ["mask (bool)", "(..., n_q, n_k)"], COLORS["mask"])
    arrow(ax, mask["left"], masking["right"])
    hint(ax, (5.3, 2.62), "True = may attend; any shape", fontsize=8.5)
    hint(ax, (5.3, 2.44), "that broadcasts to the scores", fontsize=8.5)

    # The guard is part of the recipe: -inf everywhere in a row, then a plain softmax, gives NaN
    # (masking.md shows it); the rows with no allowed key are set to zero after the softmax.
    softmax = box(ax, (x, 2.3), (2.6, 0.62), ["softmax over n_k", "then rows with no key → 0"],
                  COLORS["op"], fontsizes=(10.5, 8.5))
    arrow(ax, masking["bottom"], softmax["top"])
    weights = box(ax, (x, 1.45), tensor, ["weights", "(..., n_q, n_k)"], COLORS["scores"])
    arrow(ax, softmax["bottom"], weights["top"])
    hint(ax, (x, 0.95), "each row sums to 1, or is all 0", fontsize=8.5)
    hint(ax, (x, 0.72), "when every key is masked (not NaN)", fontsize=8.5)

    weighted = box(ax, (v["top"][0], 1.45), (1.7, 0.44), ["weights · V"], COLORS["op"])
    arrow(ax, v["bottom"], weighted["top"])
    arrow(ax, weights["right"], weighted["left"])
    output = box(ax, (v["top"][0], 0.55), tensor, ["output", "(..., n_q, d_v)"], COLORS["output"])
    arrow(ax, weighted["bottom"], output["top"])
    hint(ax, (x, 0.3), "returns (output, weights)", fontsize=9.5, family=MONO)
    return fig


def mask_panel(ax, origin, title, lines, mask, cell=0.21, row_names=None, col_names=None):
    """A titled grid: `origin` is the top-left corner of the panel (title above the grid).
    Returns the grid's bottom-left corner."""
    x0, y0 = origin
    ax.text(x0, y0, title, ha="left", va="top", fontsize=10.5, fontweight="bold", color=MUTED)
    for index, line in enumerate(lines):
        hint(ax, (x0, y0 - 0.22 - 0.17 * index), line, ha="left", va="top", fontsize=8.5)
    grid_top = y0 - 0.42 - 0.17 * len(lines) - 0.1
    bool_grid(ax, mask, (x0 + 0.2, grid_top), cell, row_names, col_names)
    return x0 + 0.2, grid_top - mask.shape[0] * cell


def tree_sketch(ax, parents, positions, radius=0.12):
    """The tree that `parents` describes, nodes at `positions` (numbered circles)."""
    for node, parent in enumerate(parents):
        if parent >= 0:
            ax.plot(*zip(positions[node], positions[parent]), color=MUTED, linewidth=1.4)
    for node, (x, y) in enumerate(positions):
        ax.add_patch(plt.Circle((x, y), radius, facecolor=COLORS["op"], edgecolor=MUTED,
                                linewidth=0.8))
        ax.text(x, y, str(node), ha="center", va="center", color="white", fontsize=8.5)


def legend_swatch(ax, corner, color, text, size=0.19):
    ax.add_patch(plt.Rectangle(corner, size, size, facecolor=color, edgecolor=MUTED,
                               linewidth=0.6))
    hint(ax, (corner[0] + size + 0.1, corner[1] + size / 2), text, ha="left")


def mask_gallery():
    """Seven masks as boolean grids: rows are queries, columns keys, blue = True = may attend.
    Each grid is computed by the oracle (NumPy), so it shows the contract's semantics."""
    oracle = chapter_oracle()
    fig, ax = canvas(5.65)
    col = [0.1, 1.95, 3.8, 5.75]
    row = [5.55, 2.75]

    padding = np.broadcast_to(oracle.padding_mask(np.array([3]), 5)[0], (5, 5))   # (n_q, n_k)
    mask_panel(ax, (col[0], row[0]), "padding", ["valid length 3 of 5:", "keys 3, 4 are padding"],
               padding)
    top_left = np.tril(np.ones((3, 5), dtype=bool))               # j <= i: rows aligned at the top
    mask_panel(ax, (col[1], row[0]), "causal, top-left", ["n_q = 3, n_k = 5:", "j ≤ i"], top_left)
    left, bottom = mask_panel(ax, (col[2], row[0]), "causal, bottom-right",
                              ["n_q = 3, n_k = 5:", "j ≤ i + (n_k − n_q)"],
                              oracle.causal_mask(3, 5))
    hint(ax, (left, bottom - 0.1), "the last query sees every key", ha="left", va="top",
         fontsize=8.5)
    hint(ax, (left, bottom - 0.27), "(decoding with a KV cache)", ha="left", va="top", fontsize=8.5)

    ids = np.array([0, 0, 0, 1, 1, 2, 2, -1])
    mask_panel(ax, (col[3], row[0]), "segment", ["packed sequences,", "id −1 is padding"],
               oracle.segment_mask(ids), row_names=ids, col_names=ids)

    parents = np.array([-1, 0, 0, 1, 1, 2])
    left, bottom = mask_panel(ax, (col[0], row[1]), "tree",
                              ["parents −1 0 0 1 1 2:", "a node sees itself and its ancestors"],
                              oracle.tree_mask(parents))
    tx, ty = left + 1.55, bottom + 0.15
    tree_sketch(ax, parents, [(tx + 0.45, ty + 1.05), (tx + 0.15, ty + 0.6), (tx + 0.75, ty + 0.6),
                              (tx, ty + 0.15), (tx + 0.3, ty + 0.15), (tx + 0.75, ty + 0.15)])

    self_mask, cross_mask = oracle.decoder_masks(np.array([4]), np.array([4]), 5, 6)
    mask_panel(ax, (col[2] - 0.55, row[1]), "decoder self-attention",
               ["causal, target valid", "length 4 of 5"], self_mask[0])
    mask_panel(ax, (col[3] - 0.35, row[1]), "decoder cross-attention",
               ["target queries, source keys:", "source valid length 4 of 6"], cross_mask[0])

    legend_swatch(ax, (col[0] + 0.2, 0.08), MASK_TRUE, "True: query (row) may attend to key (column)")
    legend_swatch(ax, (col[2] + 0.2, 0.08), MASK_FALSE, "False: masked, weight 0")
    return fig


def segmented_bar(ax, center, width, height, colors, labels):
    """A tensor's last axis cut into equal, coloured segments (one per head)."""
    x, y = center
    part = width / len(colors)
    for index, (color, label) in enumerate(zip(colors, labels)):
        left = x - width / 2 + index * part
        ax.add_patch(plt.Rectangle((left, y - height / 2), part, height, facecolor=color,
                                   edgecolor="white", linewidth=1.2))
        ax.text(left + part / 2, y, label, ha="center", va="center", color="white", fontsize=9)


def multihead_split_merge():
    """Multi-head attention with H = 4: project, split the last axis into heads, attend per head
    (scaled by sqrt(d_head)), merge, project."""
    fig, ax = canvas(6.95)
    heads = [f"h{index + 1}" for index in range(len(HEAD_COLORS))]
    cx = 3.9
    x = box(ax, (cx, 6.6), (2.6, 0.6), ["x", "(B, T, D),  D = H·d_head"], COLORS["op"])
    projections = box(ax, (cx, 5.85), (4.2, 0.44), [r"$Q = xW_q,\ K = xW_k,\ V = xW_v$"],
                      COLORS["op"])
    arrow(ax, x["bottom"], projections["top"])
    bar_y, bar_w = 4.85, 2.1
    for offset, name in zip((-2.45, 0.0, 2.45), "QKV"):
        segmented_bar(ax, (cx + offset, bar_y), bar_w, 0.36, HEAD_COLORS, heads)
        hint(ax, (cx + offset, bar_y + 0.34), f"{name}  (B, T, H·d_head)", fontsize=9,
             family="DejaVu Sans Mono")
        arrow(ax, (cx + offset * 0.45, projections["bottom"][1]), (cx + offset, bar_y + 0.48))

    hint(ax, (cx, 4.3), "split: reshape (B, T, H, d_head), transpose → (B, H, T, d_head)",
         fontsize=9.5)
    tile_y, tile_w = 3.35, 1.7
    tiles = []
    for index, color in enumerate(HEAD_COLORS):
        tx = cx + (index - 1.5) * (tile_w + 0.2)
        tiles.append(box(ax, (tx, tile_y), (tile_w, 0.8),
                         [f"head {index + 1}", r"$Q_h, K_h, V_h$", "(B, T, d_head)"], color,
                         fontsizes=(10, 9)))
        arrow(ax, (tx, 4.15), (tx, tile_y + 0.42))
    attend = box(ax, (cx, 2.45), (7.4, 0.62), [
        r"every head at once: $\mathrm{softmax}(Q_h K_h^{\top} / \sqrt{d_{head}})\, V_h$",
        r"(B, H, T, d_head), scaled by √d_head, not √D",
    ], COLORS["op"], fontsizes=(10.5, 9.5))
    for tile in tiles:
        arrow(ax, tile["bottom"], (tile["bottom"][0], attend["top"][1]))
    merged_y = 1.6
    arrow(ax, attend["bottom"], (cx, merged_y + 0.2))
    segmented_bar(ax, (cx, merged_y), 2.4, 0.36, HEAD_COLORS, heads)
    hint(ax, (cx + 1.35, merged_y), "merge: transpose (B, T, H, d_head),", ha="left", fontsize=9)
    hint(ax, (cx + 1.35, merged_y - 0.2), "reshape → (B, T, H·d_head)", ha="left", fontsize=9)
    projection = box(ax, (cx, 0.92), (3.4, 0.44), [r"output projection $\cdot\, W_o$  (H·d_head, D)"],
                     COLORS["op"], fontsizes=(10, 9))
    arrow(ax, (cx, merged_y - 0.2), projection["top"])
    output = box(ax, (cx, 0.3), (2.2, 0.5), ["output", "(B, T, D)"], COLORS["output"])
    arrow(ax, projection["bottom"], output["top"])
    return fig


DIAGRAMS = {
    "qkv_flow.svg": qkv_flow,
    "mask_gallery.svg": mask_gallery,
    "multihead_split_merge.svg": multihead_split_merge,
}


if __name__ == "__main__":
    main(DIAGRAMS, FIGURES, sys.argv)
