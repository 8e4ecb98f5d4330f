"""What a check author uses: the `@check` decorator and assertions with helpful messages.

    @check("masked_softmax", points=1, public=True)
    def test_masked_softmax_rows_sum_to_one(student, oracle, rng):
        \"\"\"each unmasked row sums to 1\"\"\"

Fixtures: `student` (the submission's functions: NumPy in, NumPy out), `oracle` (the chapter's
NumPy reference), `rng` (a seeded Generator; the seed is recorded), `framework` ("torch"/"tf").

Limits: every call a check makes may take the chapter's `call_seconds` and rise the submission's
memory by the chapter's `memory_mb` (autograder/chapters.py); a check may set its own:

    @check("flash_attention", points=1, seconds=10, memory_mb=256,
           memory_hint="build the result block by block, never the whole n×n matrix")

A call that runs longer fails the check ("still running after 10 s, the limit of this check"); a
call whose peak memory (measured on the student's side, checked here) is above `memory_mb` fails
it with the hint. The submission's other checks still run. MB here are 2**20 bytes.
Inputs fixed in a check's code (the worked examples the notebook prints) are the same in every
grade and are stored, with their expected values, by the release: a function that looks them up
passes. Such a check is declared `fixed=True` and carries FIXED_POINTS, so that they hold at most
10 % of a chapter's points (tests/test_hardening_inputs.py measures which checks' inputs never
change, and grades that lookup); every other check draws its inputs from `rng`, seeded in grading
from the course secret (secret.py). Public checks run before hidden ones (runner.py), so nothing a
hidden check's inputs left in the submission's process reaches a message students read in full.

Every call also checks, for every check, what the contract asks of every exercise: the result is
the framework's own tensor, and the inputs are left unchanged (a call that changes one in place
fails the check). `student.raises(ValueError, "name", *args)` requires that a call raise.

A failure's message is what the student reads, so it says what was expected, what came, and a hint.

Its first line is all a student sees of a failed *hidden* check (report/disclosure.py), and the
submission's function saw that check's hidden inputs: whatever it returns can encode them. So a
first line names only what the grader chose (expected shapes and dtypes, what kind of mistake)
and a fixed hint; what came back (values, positions, counts, shapes, type names) goes on the
following lines, which students read for public checks and instructors for all. `detail()` builds
such a message.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from autograder.sandbox.convert import ReturnedList


MB = 1 << 20
FIXED_POINTS = 0.25   # a check whose inputs are fixed in its code (a worked example)
MAX_FIXED_SHARE = 0.10   # of a chapter's points, at most, in such checks
MEMORY_HINT = ("keep less in memory at once: work block by block instead of building large "
               "intermediate arrays (such as a whole n×n score matrix)")


@dataclass(frozen=True)
class CheckMeta:
    exercise: str
    points: float
    public: bool
    seconds: float | None = None      # one call's time limit; None: the chapter's call_seconds
    memory_mb: float | None = None    # one call's peak memory rise; None: the chapter's memory_mb
    memory_hint: str = MEMORY_HINT    # what a student should do about a call over `memory_mb`
    fixed: bool = False               # inputs fixed in the check's code (a worked example)


def check(exercise: str, points: float | None = None, public: bool = False, *, seconds: float | None = None,
          memory_mb: float | None = None, memory_hint: str | None = None, fixed: bool = False):
    """Declare a grading check for `exercise`; `seconds` and `memory_mb` bound each of its calls.
    `fixed`: its inputs are written in its code, not drawn from `rng`; it then carries FIXED_POINTS."""
    if fixed and points is not None:
        raise ValueError(f"@check({exercise!r}): a fixed-input check carries FIXED_POINTS, not {points!r}")
    points = FIXED_POINTS if fixed else (1.0 if points is None else points)
    for name, value in (("seconds", seconds), ("memory_mb", memory_mb)):
        if value is not None and not value > 0:
            raise ValueError(f"@check({exercise!r}): {name} must be positive, not {value!r}")

    def decorate(func):
        func = pytest.mark.exercise(exercise)(func)
        func = pytest.mark.points(points)(func)
        if public:
            func = pytest.mark.public(func)
        if fixed:
            func = pytest.mark.fixed_inputs(func)
        if seconds is not None or memory_mb is not None or memory_hint is not None:
            func = pytest.mark.limits(seconds=seconds, memory_mb=memory_mb, memory_hint=memory_hint)(func)
        return func

    return decorate


def meta_of(item) -> CheckMeta | None:
    mark = item.get_closest_marker("exercise")
    if mark is None:
        return None
    points = item.get_closest_marker("points")
    limits = item.get_closest_marker("limits")
    given = limits.kwargs if limits else {}
    return CheckMeta(mark.args[0], float(points.args[0]) if points else 1.0,
                     item.get_closest_marker("public") is not None,
                     seconds=given.get("seconds"), memory_mb=given.get("memory_mb"),
                     memory_hint=given.get("memory_hint") or MEMORY_HINT,
                     fixed=item.get_closest_marker("fixed_inputs") is not None)


def size_text(nbytes: float) -> str:
    """1.2 GB, 256 MB, 900 kB (binary units, as `free -h` and the limits count them)."""
    for unit, size in (("GB", 1 << 30), ("MB", MB), ("kB", 1 << 10)):
        if nbytes >= size:
            return f"{nbytes / size:.3g} {unit}" if unit != "GB" else f"{nbytes / size:.2g} GB"
    return f"{int(nbytes)} bytes"


class CheckFailure(AssertionError):
    """A check failed; the message is for the student."""


class NotImplementedYet(CheckFailure):
    def __init__(self, name: str):
        super().__init__(f"{name}: not implemented yet")


def detail(summary: str, *lines: str) -> str:
    """A check's message: a first line fit for a hidden check, then what the submission returned."""
    return "\n".join([summary, *(line for line in lines if line)])


def _fmt_index(index) -> str:
    return "(" + ", ".join(str(int(i)) for i in index) + ")"


def _fmt_shape(shape: tuple) -> str:
    return _fmt_index(shape) if len(shape) <= 8 else f"({len(shape)} dimensions)"


def _shape_hint(got: tuple, want: tuple) -> str:
    if sorted(got) == sorted(want):
        return " The same sizes in another order: is something transposed, or the wrong axis used?"
    if len(got) < len(want):
        return " Fewer dimensions than expected: was an axis reduced or squeezed away?"
    if len(got) > len(want):
        return " More dimensions than expected: a stray unsqueeze/expand_dims, or broadcasting that went too far?"
    return ""


def assert_shape(got, shape, what: str = "output") -> None:
    got_shape = tuple(np.shape(got))
    if got_shape != tuple(shape):
        raise CheckFailure(detail(f"{what}: expected shape {_fmt_shape(tuple(shape))}, got another shape."
                                  + _shape_hint(got_shape, tuple(shape)), f"got shape {_fmt_shape(got_shape)}"))


def _close_one(got, want, atol: float, rtol: float, what: str) -> None:
    if isinstance(want, (bool, int, float)) and not isinstance(want, np.ndarray):
        if not isinstance(got, (bool, int, float)):
            raise CheckFailure(f"{what}: expected a number, got {type(got).__name__}.")
        if abs(got - want) > atol + rtol * abs(want):
            raise CheckFailure(detail(f"{what}: expected {want!r}, got another value.", f"got {got!r}"))
        return
    if not isinstance(got, np.ndarray):
        raise CheckFailure(f"{what}: expected an array of shape {_fmt_shape(want.shape)}, got {type(got).__name__}.")
    assert_shape(got, want.shape, what)
    if want.dtype == bool:
        if got.dtype != bool:
            raise CheckFailure(f"{what}: expected a boolean mask, got dtype {got.dtype}. "
                               "Masks are boolean: True means 'may attend'.")
        wrong = np.argwhere(got != want)
        if len(wrong):
            i = tuple(wrong[0])
            raise CheckFailure(detail(f"{what}: some entries differ from the expected mask.",
                                      f"{len(wrong)} of {want.size} entries differ; first at {_fmt_index(i)}: "
                                      f"expected {want[i]}, got {got[i]}."))
        return
    if got.dtype != want.dtype:
        raise CheckFailure(f"{what}: expected dtype {want.dtype}, got {got.dtype}. "
                           "Keep the computation in float32 (don't mix in float64 constants or arrays).")
    bad = np.argwhere(np.isnan(got) & ~np.isnan(want))
    if len(bad):
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise CheckFailure(detail(f"{what}: NaN where a number was expected. A fully masked row, or exp "
                                  "overflowing at large scores? Subtract the row maximum, and give fully "
                                  "masked rows zeros instead of 0/0.", f"NaN at index {_fmt_index(bad[0])}{more}."))
    bad = np.argwhere(np.isinf(got) & ~np.isinf(want))
    if len(bad):
        raise CheckFailure(detail(f"{what}: infinity where a finite number was expected: an overflow?",
                                  f"infinity at index {_fmt_index(bad[0])}."))
    close = np.isclose(got, want, atol=atol, rtol=rtol, equal_nan=True)
    if not close.all():
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
        diff[np.isnan(diff)] = np.inf
        i = np.unravel_index(np.argmax(np.where(close, -1, diff)), want.shape)
        raise CheckFailure(detail(f"{what}: some values differ from the expected ones.",
                                  f"{int((~close).sum())} of {want.size} values differ; the largest difference "
                                  f"is at {_fmt_index(i)}: expected {want[i]:.6g}, got {got[i]:.6g}."))


def returned(got) -> str:
    """What came back, as a message names it: "a list of 4" for a Python list (the sandbox keeps
    the difference, convert.ReturnedList), "a tuple of 2", or "a single value"."""
    if isinstance(got, ReturnedList):
        return f"a list of {len(got)}"
    return f"a tuple of {len(got)}" if isinstance(got, tuple) else "a single value"


def assert_close(got, want, *, atol: float = 1e-5, rtol: float = 1e-4, what="output") -> None:
    """Compare what the student returned with what the oracle says, structure first."""
    if isinstance(want, tuple):
        names = what if isinstance(what, tuple) else tuple(f"{what}[{i}]" for i in range(len(want)))
        if not isinstance(got, tuple) or len(got) != len(want):
            raise CheckFailure(f"expected a tuple ({', '.join(names)}), got {returned(got)}.")
        for g, w, name in zip(got, want, names):
            _close_one(g, w, atol, rtol, name)
        return
    if isinstance(got, ReturnedList):
        raise CheckFailure(f"{what}: expected one tensor, got {returned(got)}: return a tensor "
                           "(stack or convert the list), not a Python list.")
    if isinstance(got, tuple):
        raise CheckFailure(f"{what}: expected a single value, got {returned(got)}.")
    _close_one(got, want, atol, rtol, what if isinstance(what, str) else what[0])


def assert_close_or_hint(got, want, what, hint: str, **tolerances) -> None:
    """assert_close, with a hint about the likely mistake added to its message's first line."""
    try:
        assert_close(got, want, what=what, **tolerances)
    except CheckFailure as failure:
        first, _, rest = str(failure).partition("\n")      # what came back stays on the later lines
        raise CheckFailure(f"{first} Hint: {hint}" + (f"\n{rest}" if rest else "")) from None
