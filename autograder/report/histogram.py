"""histogram.png: how the class did, as total score in percent of the maximum.

Submissions that could not be graded are not drawn as zeros (that would read as "scored 0%"); they
are counted in the title and in a legend line that draws no patch (no bar stands for them). The
legend sits outside the axes, to the right, so that it covers no bar. A batch that mixes
assignments gets one histogram per assignment (report/__init__.py).
"""
from __future__ import annotations

import io
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")   # no display on a grading server; must precede any pyplot import anywhere

from matplotlib.figure import Figure  # noqa: E402  (after the backend choice, on purpose)
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from autograder.report.atomic import write_atomic  # noqa: E402
from autograder.report.numbers import fmt_points  # noqa: E402
from autograder.results import SubmissionResult  # noqa: E402

BIN_EDGES = list(range(0, 101, 10))   # ten bins; numpy puts 100% in the last one, not a new bin


def percentages(results: list[SubmissionResult]) -> list[float]:
    """Totals of graded submissions in percent, capped at 100 so extra credit stays in range."""
    return [min(100.0, 100 * r.score / r.max_score)
            for r in results if not r.error and r.max_score > 0]


def _title(results: list[SubmissionResult], pcts: list[float]) -> str:
    chapters = sorted({r.chapter for r in results if r.chapter})
    what = chapters[0] if len(chapters) == 1 else "Total scores"
    if not pcts:
        return f"{what}: none of {len(results)} graded"
    head = f"{what}: {len(pcts)} graded" + (f" of {len(results)}" if len(pcts) != len(results) else "")
    mean, median = statistics.fmean(pcts), statistics.median(pcts)
    return f"{head}, mean {fmt_points(round(mean, 1))}%, median {fmt_points(round(median, 1))}%"


def render_histogram(results: list[SubmissionResult]) -> bytes:
    pcts = percentages(results)
    errored = sum(1 for r in results if r.error)
    fig = Figure(figsize=(8, 4.2), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    handles = []
    if pcts:
        ax.hist(pcts, bins=BIN_EDGES, color="#4c72b0", edgecolor="white")
        handles.append(Patch(color="#4c72b0", label=f"graded: {len(pcts)}"))
        handles.append(ax.axvline(statistics.fmean(pcts), color="#c44e52", linestyle="--",
                                  label="mean"))
        handles.append(ax.axvline(statistics.median(pcts), color="#55a868", linestyle=":",
                                  linewidth=2, label="median"))
    else:
        ax.text(50, 0.5, "no graded submissions", ha="center", va="center", color="#57606a")
        ax.set_ylim(0, 1)
    if errored:   # a line of text in the legend: no bar is drawn for them, so no patch either
        handles.append(Line2D([], [], linestyle="none", marker="none",
                              label=f"not graded: {errored} (not drawn)"))
    ax.set_xlim(0, 100)
    ax.set_xticks(BIN_EDGES)
    ax.set_xlabel("total score (% of maximum)")
    ax.set_ylabel("submissions")
    ax.yaxis.get_major_locator().set_params(integer=True)   # counts of students are whole
    ax.set_title(_title(results, pcts))
    if handles:   # outside the axes: it never covers a bar
        fig.legend(handles=handles, loc="outside right upper", frameon=False)
    buffer = io.BytesIO()
    # without matplotlib's version stamp, the PNG depends on the results alone
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def write_histogram(results: list[SubmissionResult], path: Path) -> Path:
    return write_atomic(Path(path), render_histogram(results))
