"""Points as people read them: `3`, `2.5`, `0.3`, never `3.0` or `0.30000000000000004`."""
from __future__ import annotations


def fmt_points(x: float) -> str:
    """Shortest decimal for a score, to six places: the CSV, the feedback and the terminal agree."""
    text = f"{round(float(x), 6):.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def fmt_percent(score: float, max_score: float) -> str:
    """`75%`; an empty string when there is nothing to take a percentage of."""
    if max_score <= 0:
        return ""
    return f"{fmt_points(round(100 * score / max_score, 1))}%"
