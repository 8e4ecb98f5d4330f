"""Chapter 03's diagram: the backward pass of scaled dot-product attention, with every shape.

    python -m book.diagrams.ch03 [OUT_DIR]    (default: chapters/03_math/figures)

The forward pass runs down the left column; the gradients run back up the right column, each
produced from the upstream gradient and the forward tensors it needs (dashed grey arrows).
"""
from __future__ import annotations

import sys
from pathlib import Path


from book.diagrams.drawing import COLORS, MONO, arrow, box, canvas, hint, main

FIGURES = Path(__file__).resolve().parents[2] / "chapters" / "03_math" / "figures"


def attention_backward_flow():
    """Forward (left, top to bottom) and backward (right, bottom to top) of
    O = softmax(Q Kᵀ / √d_k) V, one box per tensor, shapes in monospace."""
    fig, ax = canvas(5.6)
    size = (2.3, 0.62)
    fx, bx = 1.75, 5.75                                   # forward and backward columns
    hint(ax, (fx, 5.35), "forward", fontsize=11, fontweight="bold")
    hint(ax, (bx, 5.35), "backward", fontsize=11, fontweight="bold")

    qk = box(ax, (fx, 4.75), size, ["Q, K", "(n_q, d_k), (n_k, d_k)"], COLORS["query"])
    s = box(ax, (fx, 3.65), size, [r"S = Q Kᵀ / √d_k", "(n_q, n_k)"], COLORS["scores"])
    a = box(ax, (fx, 2.55), size, ["A = softmax(S)", "(n_q, n_k), rows"], COLORS["scores"])
    o = box(ax, (fx, 1.45), size, ["O = A V", "(n_q, d_v)"], COLORS["output"])
    v = box(ax, (fx - 0.6, 0.45), (1.4, 0.55), ["V", "(n_k, d_v)"], COLORS["value"])
    for upper, lower in ((qk, s), (s, a), (a, o)):
        arrow(ax, upper["bottom"], lower["top"])
    arrow(ax, v["top"], (v["top"][0], o["bottom"][1]))

    g = box(ax, (bx, 0.45), (2.6, 0.55), ["G = ∂L/∂O", "(n_q, d_v), given"], COLORS["op"])
    dv = box(ax, (bx + 1.05, 1.45), (1.8, 0.62), ["dV = Aᵀ G", "(n_k, d_v)"], COLORS["value"])
    da = box(ax, (bx - 1.05, 1.45), (1.8, 0.62), ["dA = G Vᵀ", "(n_q, n_k)"], COLORS["op"])
    ds = box(ax, (bx, 2.75), (3.3, 0.8), ["dS = A ⊙ (dA − rowsum(A ⊙ dA))",
                                          "(n_q, n_k): each row times",
                                          "its Jacobian diag(a) − a aᵀ"], COLORS["scores"],
             fontsizes=(9.5, 8.5))
    dq = box(ax, (bx - 0.95, 4.35), (1.85, 0.62), ["dQ = dS K / √d_k", "(n_q, d_k)"],
             COLORS["query"], fontsizes=(9.5, 9))
    dk = box(ax, (bx + 1.0, 4.35), (1.85, 0.62), ["dK = dSᵀ Q / √d_k", "(n_k, d_k)"],
             COLORS["key"], fontsizes=(9.5, 9))
    arrow(ax, g["top"], dv["bottom"])
    arrow(ax, g["top"], da["bottom"])
    arrow(ax, da["top"], (ds["bottom"][0] - 0.6, ds["bottom"][1]))
    arrow(ax, (ds["top"][0] - 0.6, ds["top"][1]), dq["bottom"])
    arrow(ax, (ds["top"][0] + 0.6, ds["top"][1]), dk["bottom"])

    # what each gradient reuses from the forward pass
    reuse = dict(connection="arc3,rad=0.0", color=COLORS["op"])
    arrow(ax, a["right"], (ds["left"][0], ds["left"][1]), **reuse)
    hint(ax, (3.45, 2.8), "A", fontsize=9, family=MONO)
    arrow(ax, v["right"], (da["left"][0], da["left"][1] - 0.15), **reuse)
    hint(ax, (3.35, 0.95), "V", fontsize=9, family=MONO)
    arrow(ax, qk["right"], (dq["left"][0], dq["left"][1] + 0.1), **reuse)
    hint(ax, (3.75, 4.75), "K", fontsize=9, family=MONO)
    # dV = Aᵀ G needs the weights too (the reason A is kept, next section); dQ needs K, dK needs Q
    arrow(ax, (a["right"][0], a["right"][1] - 0.12), (dv["top"][0] - 0.5, dv["top"][1]), **reuse)
    hint(ax, (3.45, 2.2), "A", fontsize=9, family=MONO)
    arrow(ax, (qk["top"][0] + 0.6, qk["top"][1]), dk["top"],
          connection="arc3,rad=-0.15", color=COLORS["op"])
    hint(ax, (4.3, 5.08), "Q", fontsize=9, family=MONO)
    return fig


DIAGRAMS = {"attention_backward.svg": attention_backward_flow}


if __name__ == "__main__":
    main(DIAGRAMS, FIGURES, sys.argv)
