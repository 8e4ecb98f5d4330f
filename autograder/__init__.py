"""The course's autograder: `python -m autograder grade | check | assign | gradescope | release`.

In an exercise notebook, the setup cell binds `check` to the notebook's assignment:

    import autograder
    check = autograder.checker("02_principles", "torch")

Importing the package is cheap and has no side effects; the checks are loaded on first use so
that a student's notebook pays for pytest only when it checks something.
"""


def checker(chapter: str, framework: str):
    """`check(name)` bound to one assignment: runs the public checks of that exercise against the
    calling notebook's functions, in `framework` ("torch" or "tf"), whatever the notebook imports."""
    from autograder.student import bind

    return bind(chapter, framework)


def check(exercise: str, framework: str | None = None, chapter: str | None = None) -> None:
    """The unbound `check` of older notebooks: guesses the assignment, and says how to bind it."""
    import inspect

    from autograder import student

    caller = inspect.currentframe().f_back
    return student.check_in(caller.f_globals, exercise, framework, chapter)
