"""Drawing helpers shared by the book's diagrams.

The figures are shown in sphinx-book-theme's light (white) and dark (grey, about #14181e) themes on
a transparent background, so every colour here must read on both:
- boxes are filled with saturated mid-dark colours and carry white text (contrast >= 4.5 with white,
  and the fill stands out from both page colours);
- lines, arrows and free-standing hints use one mid grey (`MUTED`), the only text not on a fill;
- mask cells are blue (True) or light grey (False), told apart by lightness as well as hue.

Coordinates are inches on a canvas whose axes cover the whole figure, so a layout reads as sizes.
Output is deterministic: no date, a fixed hash salt for ids, text as paths (no font is ever
fetched by the browser, and the figure looks the same on every machine).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("svg")

import matplotlib.pyplot as plt  # noqa: E402  (after the backend choice)
import numpy as np  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle  # noqa: E402

# The book's content column is about 750 px wide; an SVG of 7.8 in is 749 px at 96 px/in, so a
# 10 pt label is shown at 13 px, never scaled down.
CONTENT_WIDTH_IN = 7.8

COLORS = {
    "query": "#2563a8",
    "key": "#b45309",
    "value": "#15803d",
    "scores": "#6d28d9",
    "mask": "#b91c1c",
    "output": "#0f766e",
    "op": "#475569",
}
HEAD_COLORS = ["#2563a8", "#b45309", "#15803d", "#7c3aed"]
MASK_TRUE, MASK_FALSE = "#2f74c0", "#d3d9e1"
MUTED = "#808b99"
ON_FILL = "white"
MONO = "DejaVu Sans Mono"

RC = {
    "svg.fonttype": "path",
    "svg.hashsalt": "attention-course",
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "mathtext.fontset": "dejavusans",
}


def canvas(height_in: float, width_in: float = CONTENT_WIDTH_IN):
    """A figure whose single axes spans it, in inch units, with no frame."""
    fig = plt.figure(figsize=(width_in, height_in))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width_in)
    ax.set_ylim(0, height_in)
    ax.set_axis_off()
    return fig, ax


def box(ax, center, size, lines, color, fontsizes=(10.5, 9.5), fonts=("DejaVu Sans", MONO)):
    """A rounded box filled with `color`, its lines of white text stacked around its centre.

    The first line is bold (a name), the others use `fonts[1]` (shapes are monospace)."""
    (x, y), (w, h) = center, size
    ax.add_patch(FancyBboxPatch(
        (x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0,rounding_size=0.08",
        facecolor=color, edgecolor="none",
    ))
    step = 0.2
    top = y + step * (len(lines) - 1) / 2
    for index, line in enumerate(lines):
        first = index == 0
        ax.text(x, top - index * step, line, ha="center", va="center", color=ON_FILL,
                fontsize=fontsizes[0] if first else fontsizes[1],
                fontweight="bold" if first else "normal",
                family=fonts[0] if first else fonts[1])
    return {"left": (x - w / 2, y), "right": (x + w / 2, y),
            "top": (x, y + h / 2), "bottom": (x, y - h / 2)}


def arrow(ax, start, end, connection="arc3", color=MUTED):
    ax.add_patch(FancyArrowPatch(
        start, end, arrowstyle="-|>", mutation_scale=13, linewidth=1.6, color=color,
        connectionstyle=connection, shrinkA=2, shrinkB=3,
    ))


def hint(ax, xy, text, ha="center", va="center", fontsize=9.5, **kwargs):
    """Free-standing text, in the one grey that reads on both themes."""
    ax.text(*xy, text, ha=ha, va=va, color=MUTED, fontsize=fontsize, **kwargs)


def bool_grid(ax, mask: np.ndarray, origin, cell: float, row_names=None, col_names=None):
    """Draw a 2-D boolean mask, row 0 at the top; `origin` is the grid's top-left corner."""
    x0, y0 = origin
    rows, cols = mask.shape
    for i in range(rows):
        for j in range(cols):
            ax.add_patch(Rectangle(
                (x0 + j * cell, y0 - (i + 1) * cell), cell, cell,
                facecolor=MASK_TRUE if mask[i, j] else MASK_FALSE,
                edgecolor=MUTED, linewidth=0.6,
            ))
    small = 7.5
    for i, name in enumerate(row_names if row_names is not None else range(rows)):
        hint(ax, (x0 - 0.05, y0 - (i + 0.5) * cell), str(name), ha="right", fontsize=small)
    for j, name in enumerate(col_names if col_names is not None else range(cols)):
        hint(ax, (x0 + (j + 0.5) * cell, y0 + 0.04), str(name), va="bottom", fontsize=small)


def save(fig, path: Path) -> None:
    """Write `fig` as SVG with nothing that changes between runs (date, random ids)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="svg", transparent=True, metadata={"Date": None})
    plt.close(fig)


def write_all(diagrams: dict, out_dir: Path) -> list[Path]:
    """Draw every diagram of `diagrams` (file name -> function returning a figure) into `out_dir`."""
    written = []
    for name, draw in diagrams.items():
        with plt.rc_context(RC):
            save(draw(), out_dir / name)
        written.append(out_dir / name)
    return written


def main(diagrams: dict, default_dir: Path, argv: list[str]) -> None:
    """`python -m book.diagrams.chNN [OUT_DIR]`: write the chapter's diagrams, print their paths."""
    for path in write_all(diagrams, Path(argv[1]) if len(argv) > 1 else default_dir):
        print(path)
