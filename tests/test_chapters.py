"""The chapter records (`autograder/chapters.py`) agree with the repository.

The exercise list lives in the record only; the masters, the checks and the oracle must follow it,
and so must the book's table of contents. Adding a chapter is adding its record, so these tests are
written once for all chapters.
"""
from __future__ import annotations

import dataclasses
import re

import pytest
import yaml

from autograder import chapters
from autograder.chapters import FRAMEWORKS, REPO_ROOT, all_chapters, chapter, chapters_with_exercises

SLUG = re.compile(r"\d\d_[a-z0-9_]+")


@pytest.mark.parametrize("record", all_chapters(), ids=lambda c: c.slug)
def test_the_repository_agrees_with_the_record(record):
    assert record.audit() == []


def test_the_table_of_contents_lists_the_chapters_in_order():
    toc = yaml.safe_load((REPO_ROOT / "_toc.yml").read_text(encoding="utf-8"))
    in_toc = [entry["file"] for entry in toc["chapters"]]
    assert in_toc == [f"chapters/{c.slug}/index" for c in all_chapters()]


@pytest.mark.parametrize("record", all_chapters(), ids=lambda c: c.slug)
def test_the_title_is_the_index_pages_heading(record):
    heading = next(line for line in record.index_page.read_text(encoding="utf-8").splitlines()
                   if line.startswith("# "))
    assert heading[2:].strip() == record.title


def test_every_chapter_folder_with_exercises_has_a_record():
    """A master or a checks module without a record would be invisible to the grader."""
    known = {c.slug for c in all_chapters()}
    masters = {p.name for p in (REPO_ROOT / "solutions").iterdir() if p.is_dir() and SLUG.fullmatch(p.name)}
    checks = {p.stem[2:] for p in (REPO_ROOT / "autograder" / "checks").glob("ch[0-9][0-9]_*.py")}
    assert masters <= known and checks <= known
    assert masters == {c.slug for c in chapters_with_exercises()}


def test_slugs_and_paths_are_derived_from_the_slug():
    for record in all_chapters():
        assert SLUG.fullmatch(record.slug) and record.number == int(record.slug[:2])
        for framework in FRAMEWORKS:
            assert record.master_path(framework) == REPO_ROOT / "solutions" / record.slug / f"exercises_{framework}.ipynb"
            assert record.student_path(framework) == REPO_ROOT / "chapters" / record.slug / f"exercises_{framework}.ipynb"
        assert record.checks_path.stem == f"ch{record.slug}"
        assert record.checks_module.endswith(record.checks_path.stem)
    assert [c.number for c in all_chapters()] == list(range(1, 8))


def test_lookups():
    assert chapter("02_principles").exercises[0] == "dot_product_scores"
    assert [c.slug for c in chapters.chapters_of("masked_softmax")] == ["02_principles"]
    with pytest.raises(LookupError, match="known: 01_background, 02_principles"):
        chapter("02_principle")
    with pytest.raises(ValueError, match="unknown framework"):
        chapter("02_principles").master_path("jax")
    assert "torch.nn.functional.scaled_dot_product_attention" in chapter("04_code").forbidden["torch"]
    assert "keras.layers.MultiHeadAttention" in chapter("04_code").forbidden["tf"]


def test_the_forbidden_built_ins_are_the_tracers_table_not_a_copy():
    """The sandbox sees only autograder/sandbox/, so the tracer holds the table and the record reads it."""
    from autograder.sandbox import tracer

    for record in all_chapters():
        assert set(record.forbidden["torch"]) | set(record.forbidden["tf"]) == set(tracer.KNOWN)
    forged = dataclasses.replace(chapters_with_exercises()[0],
                                 forbidden=chapters.Forbidden(torch=("torch.nn.functional.softmax",)))
    assert any("forbids torch.nn.functional.softmax, which the tracer and the scan do not detect" in p
               for p in forged.audit())


def test_assignments_come_from_the_records():
    assert chapters.assignments() == [(c.slug, f) for c in chapters_with_exercises() for f in FRAMEWORKS]


# The audit must be able to fail: records that disagree with the same repository.

@pytest.mark.parametrize("record", chapters_with_exercises(), ids=lambda c: c.slug)
def test_a_record_that_lost_an_exercise_is_caught(record):
    shorter = dataclasses.replace(record, exercises=record.exercises[:-1])
    problems = shorter.audit()
    assert any("defines" in p for p in problems)
    assert any(f"checks {record.exercises[-1]}, which the record does not list" in p for p in problems)


@pytest.mark.parametrize("record", chapters_with_exercises(), ids=lambda c: c.slug)
def test_a_record_in_another_order_or_with_an_unknown_exercise_is_caught(record):
    swapped = dataclasses.replace(record, exercises=record.exercises[1::-1] + record.exercises[2:])
    assert len([p for p in swapped.audit() if "defines" in p]) == len(FRAMEWORKS)
    extra = dataclasses.replace(record, exercises=record.exercises + ("no_such_exercise",))
    problems = extra.audit()
    assert f"{record.checks_module} has no @check for no_such_exercise" in problems
    assert f"{record.oracle_module} has no function no_such_exercise" in problems


def test_a_record_whose_oracle_is_missing_is_caught():
    record = chapters_with_exercises()[0]
    renamed = dataclasses.replace(record, slug=record.slug + "x")
    assert f"autograder/oracle/ch{record.slug}x.py is missing (the oracle of {record.slug}x)" in renamed.audit()


def test_a_record_without_exercises_for_a_chapter_that_has_masters_is_caught():
    record = chapters_with_exercises()[0]
    assert any("lists no exercises" in p for p in dataclasses.replace(record, exercises=()).audit())


@pytest.mark.parametrize("record", chapters_with_exercises(), ids=lambda c: c.slug)
def test_assign_refuses_a_master_whose_check_is_not_bound_to_its_assignment(record):
    from autograder import assign, notebooks

    master = notebooks.read(record.master_path("torch"))
    assign.generate(record.slug, "torch")                 # the real master is bound
    setup = next(c for c in master.cells if c.cell_type == "code" and "autograder.checker(" in c.source)
    bound = setup.source
    other = next(c.slug for c in chapters_with_exercises() if c.slug != record.slug) \
        if len(chapters_with_exercises()) > 1 else "07_outlook"   # another chapter's binding
    for unbound in ("from autograder import check",
                    bound.replace(f'"{record.slug}"', f'"{other}"'),
                    bound.replace('"torch"', '"tf"')):
        setup.source = unbound
        with pytest.raises(assign.AssignError, match="binds check to this assignment"):
            assign._check_binding(master, record.slug, "torch")
    setup.source = bound
    assign._check_binding(master, record.slug, "torch")
