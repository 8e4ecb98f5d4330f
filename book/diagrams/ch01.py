"""Chapter 01's diagram: an RNN encoder-decoder without attention (one context vector for every
output step) next to the same model with attention (a context of its own for every output step).

    python -m book.diagrams.ch01 [OUT_DIR]    (default: chapters/01_background/figures)
"""
from __future__ import annotations

import sys
from pathlib import Path

from book.diagrams.drawing import COLORS, arrow, box, canvas, hint, main

FIGURES = Path(__file__).resolve().parents[2] / "chapters" / "01_background" / "figures"

N_IN, N_OUT = 4, 3
STATE = (0.62, 0.44)


def _encoder(ax, y, x0=0.55, step=0.85):
    """Inputs x_1..x_4 feeding a chain of encoder states h_1..h_4; returns the state boxes."""
    states = []
    for j in range(N_IN):
        x = x0 + j * step
        token = box(ax, (x, y - 0.72), (0.5, 0.34), [f"$x_{j + 1}$"], COLORS["op"], fontsizes=(10, 9))
        state = box(ax, (x, y), STATE, [f"$h_{j + 1}$"], COLORS["key"])
        arrow(ax, token["top"], state["bottom"])
        if states:
            arrow(ax, states[-1]["right"], state["left"])
        states.append(state)
    hint(ax, (x0 + 1.5 * step, y - 1.08), "encoder: reads the input", fontsize=9)
    return states


def _decoder(ax, y, x0, step=0.95):
    """Decoder states s_1..s_3, each emitting y_t; returns the state boxes."""
    states = []
    for t in range(N_OUT):
        x = x0 + t * step
        state = box(ax, (x, y), STATE, [f"$s_{t + 1}$"], COLORS["query"])
        out = box(ax, (x, y + 0.72), (0.5, 0.34), [f"$y_{t + 1}$"], COLORS["output"], fontsizes=(10, 9))
        arrow(ax, state["top"], out["bottom"])
        if states:
            arrow(ax, states[-1]["right"], state["left"])
        states.append(state)
    return states


def encoder_decoder():
    fig, ax = canvas(5.6)
    # Top: without attention. The last encoder state is the only thing the decoder sees.
    ax.text(0.15, 5.45, "without attention: one context vector c for every output step",
            ha="left", va="top", fontsize=10.5, fontweight="bold", color="#808b99")
    enc = _encoder(ax, 4.1)
    c = box(ax, (4.15, 4.1), (0.55, 0.5), ["c"], COLORS["scores"])
    arrow(ax, enc[-1]["right"], c["left"])
    hint(ax, (4.15, 4.55), "= h₄, fixed size", fontsize=8.5)
    dec = _decoder(ax, 4.1, 5.3)
    arrow(ax, c["right"], dec[0]["left"])
    for t in (1, 2):
        arrow(ax, c["bottom"], (dec[t]["bottom"][0] - 0.1, dec[t]["bottom"][1]),
              connection="arc3,rad=0.3")
    hint(ax, (6.25, 3.2), "decoder: writes the output from c alone", fontsize=9)

    # Bottom: with attention. Each decoder step scores every encoder state and averages them.
    ax.text(0.15, 2.75, r"with attention: a context $c_t$ of its own for every output step",
            ha="left", va="top", fontsize=10.5, fontweight="bold", color="#808b99")
    enc = _encoder(ax, 1.3)
    dec = _decoder(ax, 1.3, 5.3)
    contexts = []
    for t, state in enumerate(dec):
        ct = box(ax, (state["bottom"][0], 0.45), (0.55, 0.4), [f"$c_{t + 1}$"], COLORS["scores"],
                 fontsizes=(10, 9))
        arrow(ax, ct["top"], state["bottom"])
        contexts.append(ct)
    for j, h in enumerate(enc):
        corner = h["right"] if j == N_IN - 1 else (h["bottom"][0] + 0.2, h["bottom"][1])
        arrow(ax, corner, contexts[0]["left"])
    hint(ax, (4.5, 1.02), r"weights $\alpha_{1j}$", fontsize=8.5)
    hint(ax, (0.15, 2.43), r"$c_t = \sum_j \alpha_{tj}\, h_j$, with $\alpha_t = \mathrm{softmax}_j\ \mathrm{score}(s_{t-1}, h_j)$:"
         " every step looks at every input again (drawn for $c_1$)", ha="left", fontsize=9)
    return fig


DIAGRAMS = {"encoder_decoder.svg": encoder_decoder}


if __name__ == "__main__":
    main(DIAGRAMS, FIGURES, sys.argv)
