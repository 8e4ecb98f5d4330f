"""What every chapter with exercises must meet, checked from its record: a new chapter gets these
tests by being registered in `autograder/chapters.py`, with nothing to copy.

- every exercise has public and hidden checks, each with a docstring (the student's feedback);
- the masters (reference solutions) earn full marks in both frameworks, on two seeds;
- the untouched student notebooks run and earn nothing.

The chapters' own test files add what is particular to them: mutants, correct alternatives, the
oracle against independent computations.
"""
import pytest

import check_functions as shared
from autograder.chapters import FRAMEWORKS, chapter, chapters_with_exercises
from autograder.notebooks import load_namespace, student_path

SLUGS = [c.slug for c in chapters_with_exercises()]


def trains(slug: str, exercise: str) -> bool:
    """An exercise graded by training: one of its checks sets a time limit above the chapter's call
    limit. Training costs tens of seconds a seed, so its other seeds are its chapter's own test."""
    limit = chapter(slug).limits.call_seconds
    return any((shared.meta(f).seconds or 0) > limit for f in shared.checks_of(slug, exercise))


@pytest.mark.parametrize("slug", SLUGS)
def test_every_exercise_has_public_and_hidden_checks(slug):
    for exercise in chapter(slug).exercises:
        checks = shared.checks_of(slug, exercise)
        assert 3 <= len(checks) <= 8, (exercise, len(checks))
        assert {shared.meta(f).public for f in checks} == {True, False}, exercise
        for func in checks:
            assert (func.__doc__ or "").strip(), f"{func.__name__} has no docstring"


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("slug", SLUGS)
def test_reference_gets_full_marks(slug, framework):
    scores = shared.exercise_scores(slug, shared.master_namespace(slug, framework), framework, seed=0)
    assert set(scores) == set(chapter(slug).exercises)
    for exercise, (got, most) in scores.items():
        assert got == most > 0, (exercise, got, most)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("slug", SLUGS)
def test_reference_passes_on_another_seed(slug, framework):
    namespace = shared.master_namespace(slug, framework)
    for exercise in chapter(slug).exercises:
        if not trains(slug, exercise):
            assert shared.failed_checks(slug, namespace, framework, exercise, seed=11) == [], exercise


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("slug", SLUGS)
def test_untouched_student_view_scores_zero(slug, framework):
    scores = shared.exercise_scores(slug, load_namespace(student_path(slug, framework)), framework)
    assert set(scores) == set(chapter(slug).exercises)
    assert all(got == 0 for got, _ in scores.values()), scores


def test_exactly_one_exercise_is_graded_by_training():
    """`trains` tells training from the rest by the checks' own time limits; if a limit is raised
    for another reason, this says so instead of silently skipping that exercise's second seed."""
    trained = [(slug, e) for slug in SLUGS for e in chapter(slug).exercises if trains(slug, e)]
    assert trained == [("05_applications", "train_aspect_sentiment")], trained
