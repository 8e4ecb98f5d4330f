"""Chapter 06's diagrams: the tiles of causal flash-style attention, and the KV cache growing.

    python -m book.diagrams.ch06 [OUT_DIR]    (default: chapters/06_efficiency/figures)

Tiling: 6 query blocks against 8 key blocks with bottom-right causal alignment (n_k > n_q): the
tiles above the diagonal are never computed, the ones it crosses are masked inside, the rest are
full; along one query block the running statistics (m, l, acc) are carried from tile to tile.
KV cache: three decoding steps; each appends one key and one value and reads all of them.
"""
from __future__ import annotations

import sys
from pathlib import Path

from matplotlib.patches import Rectangle

from book.diagrams.drawing import COLORS, MASK_FALSE, MONO, MUTED, arrow, box, canvas, hint, main

FIGURES = Path(__file__).resolve().parents[2] / "chapters" / "06_efficiency" / "figures"


def tile_kind(i: int, j: int, block: int, n_q: int, n_k: int) -> str:
    """'skip', 'diagonal' or 'full' for query block i and key block j (bottom-right causal)."""
    offset = n_k - n_q
    q_first, q_last = i * block, min((i + 1) * block, n_q) - 1
    k_first, k_last = j * block, min((j + 1) * block, n_k) - 1
    if k_first > q_last + offset:
        return "skip"
    if k_last > q_first + offset:
        return "diagonal"
    return "full"


def causal_tiles():
    """The (query block, key block) grid of causal tiled attention, coloured by what is computed."""
    fig, ax = canvas(3.9)
    block, q_blocks, k_blocks = 4, 6, 8
    n_q, n_k = block * q_blocks, block * k_blocks
    cell, x0, y0 = 0.42, 1.1, 3.35
    fill = {"full": COLORS["scores"], "diagonal": "#a78bfa", "skip": MASK_FALSE}
    for i in range(q_blocks):
        for j in range(k_blocks):
            kind = tile_kind(i, j, block, n_q, n_k)
            ax.add_patch(Rectangle((x0 + j * cell, y0 - (i + 1) * cell), cell, cell, facecolor=fill[kind],
                                   edgecolor=MUTED, linewidth=0.8))
            if kind == "diagonal":   # the causal boundary inside the tile
                ax.plot([x0 + j * cell, x0 + (j + 1) * cell], [y0 - i * cell, y0 - (i + 1) * cell],
                        color="white", linewidth=1.2)
    for i in range(q_blocks):
        hint(ax, (x0 - 0.08, y0 - (i + 0.5) * cell), f"Q{i}", ha="right", fontsize=8.5, family=MONO)
    for j in range(k_blocks):
        hint(ax, (x0 + (j + 0.5) * cell, y0 + 0.08), f"K{j}", va="bottom", fontsize=8.5, family=MONO)
    hint(ax, (x0 + k_blocks * cell / 2, y0 + 0.42), "key / value blocks", fontsize=10)
    hint(ax, (x0 - 0.62, y0 - q_blocks * cell / 2), "query blocks", fontsize=10, rotation=90)
    # the running statistics along query block 3
    row = 3
    y = y0 - (row + 0.5) * cell
    arrow(ax, (x0 + 0.1, y - 0.02), (x0 + 5 * cell + 0.3, y - 0.02), color="white")

    lx = 5.0
    for k, (kind, label) in enumerate((("full", "full tile: Q_i K_jᵀ, no mask"),
                                       ("diagonal", "diagonal tile: masked inside"),
                                       ("skip", "skipped: never computed"))):
        y = 3.05 - k * 0.5
        ax.add_patch(Rectangle((lx, y - 0.15), 0.3, 0.3, facecolor=fill[kind], edgecolor=MUTED, linewidth=0.8))
        hint(ax, (lx + 0.42, y), label, ha="left", fontsize=9)
    box(ax, (6.3, 1.05), (2.6, 1.05), ["per tile", "m' = max(m, rowmax S)", "l = l·e^(m−m') + Σ e^(S−m')",
                                       "acc = acc·e^(m−m') + P V"], COLORS["op"], fontsizes=(10, 8.5))
    hint(ax, (x0 + k_blocks * cell / 2, 0.5), "bottom-right: query i sees key j ≤ i + (n_k − n_q)",
         fontsize=9)
    hint(ax, (x0 + k_blocks * cell / 2, 0.2), "white arrow: m, l, acc carried along a query block",
         fontsize=9)
    return fig


def kv_cache():
    """Three decoding steps: the cache grows by one key and one value; each query reads all of them."""
    fig, ax = canvas(2.6)
    cell = 0.34
    for step in range(3):
        x0 = 0.35 + step * 2.55
        t = step + 2                                   # cached tokens before this step
        hint(ax, (x0 + 1.0, 2.4), f"step t = {t}", fontsize=10, fontweight="bold")
        for row, (name, color) in enumerate((("K", COLORS["key"]), ("V", COLORS["value"]))):
            y = 1.75 - row * 0.55
            hint(ax, (x0 - 0.05, y), name, ha="right", fontsize=9, family=MONO)
            for j in range(t + 1):
                new = j == t
                ax.add_patch(Rectangle((x0 + j * cell, y - cell / 2), cell * 0.92, cell,
                                       facecolor=color if not new else "white", edgecolor=color,
                                       linewidth=1.6 if new else 0.6, hatch="///" if new else None))
        q = box(ax, (x0 + (t + 0.5) * cell, 0.45), (0.55, 0.36), ["q_t"], COLORS["query"], fontsizes=(9.5, 9))
        arrow(ax, q["top"], (x0 + (t + 1) * cell / 2, 1.0))
        hint(ax, (x0 + (t + 1) * cell + 0.08, 1.47), f"{t + 1} keys,\n{t + 1} values", ha="left", fontsize=8)
    hint(ax, (3.9, 0.08), "hatched: appended at this step;  filled: read from the cache", fontsize=9)
    return fig


DIAGRAMS = {"causal_tiles.svg": causal_tiles, "kv_cache.svg": kv_cache}


if __name__ == "__main__":
    main(DIAGRAMS, FIGURES, sys.argv)
