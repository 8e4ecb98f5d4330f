"""The public checks of the course's exercises, to run in your own notebook.

The exercise notebook's setup cell binds `check` to its assignment:

    import course_checks
    check = course_checks.checker("02_principles", "torch")

then `check("masked_softmax")` runs that exercise's public checks on your function and prints ✓, or
what went wrong and a hint. The expected values were computed by the course's grader when the
exercises were released; this package holds them, not the grader's code. Your instructor's grader
runs more checks (hidden ones) on the notebook you hand in.
"""


def checker(chapter: str, framework: str):
    """`check(name)` for one assignment: chapter "02_principles" etc., framework "torch" or "tf"."""
    from course_checks.runtime import Checker

    return Checker(chapter, framework)
