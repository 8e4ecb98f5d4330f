"""Grading checks: pytest tests, one module per chapter (`chNN_slug.py`), run by `runner.py`.

An instructor adds a check the way they write any pytest test, with the `@check` decorator from
`autograder.checks.api` to give it an exercise, points and visibility.
"""
