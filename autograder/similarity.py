"""Similarity across a class: `python -m autograder similarity DIR` (and `grade --similarity`).

Exercise by exercise, every pair of graded submissions' code for that exercise is compared with
copydetect's winnowing fingerprints (Schleimer et al., SIGMOD 2003, the method of MOSS): code is
tokenised by Pygments with names, strings and numbers replaced by placeholders and comments
dropped, so renamed variables, reworded comments and reordered functions do not hide a copy.
copydetect is maintained, small (NumPy, Pygments, Jinja2), works offline, and takes boilerplate
fingerprints, which is what the starter code is: the student notebook's own exercise cell (the
signature, the docstring, the `raise NotImplementedError`) is removed from every submission before
pairs are compared, so two untouched notebooks are not "identical".

The chapter's own page code is a *known source*: a pair whose shared passages are mostly the book's
is labelled "from the book" rather than reported as collusion (copying the page is allowed; it
earns at most a quarter of the points by design).

An exercise's code in a submission is every top-level function or class its cells define whose
name is the exercise's, plus the top-level functions that code calls (helpers), read from the
notebook file each result names. The notebook is the student's file: it is read with O_NOFOLLOW,
bounded in size, parsed (never run) with `ast`.

Writes DIR/similarity.csv (the contract's columns, most similar first) and DIR/similarity.html
(pairs above the threshold, side by side, shared passages highlighted; one file, no scripts or
network). Nothing here changes a grade.
"""
from __future__ import annotations

import ast
import csv
import html
import io
import json
import os
import stat
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from autograder import chapters, report
from autograder.report.atomic import write_atomic

K, WINDOW = 12, 4            # k-gram length and winnowing window, in filtered characters
MIN_TOKENS = 40              # code shorter than this (after the starter is removed) is not compared
DEFAULT_THRESHOLD = 0.6
FROM_BOOK = 0.5              # a pair whose overlap is at least this share the book's is "from the book"
MAX_BYTES = 64 << 20
MAX_SIDE_BY_SIDE = 200       # pairs drawn side by side in the HTML; the table and the CSV list all


@dataclass
class Pair:
    exercise: str
    a: str
    b: str
    similarity: float
    from_book: bool
    code_a: str
    code_b: str
    html_a: str = ""
    html_b: str = ""


def _fingerprint(code: str, boilerplate=None):
    import numpy as np
    from copydetect import CodeFingerprint

    return CodeFingerprint("exercise.py", K, WINDOW, boilerplate=np.array(sorted(boilerplate or ()), dtype=np.int64)
                           if boilerplate else None, fp=io.StringIO(code), language="python")


def _read_notebook(path: Path) -> dict | None:
    """The student's notebook as JSON, or None; never follows a link, never reads more than MAX_BYTES."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            raw = f.read(MAX_BYTES + 1)
    finally:
        os.close(fd)
    if len(raw) > MAX_BYTES:
        return None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _code_cells(notebook: dict) -> list[str]:
    cells = notebook.get("cells") if isinstance(notebook.get("cells"), list) else []
    out = []
    for cell in cells:
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            source = cell.get("source", "")
            source = "".join(source) if isinstance(source, list) else source
            if isinstance(source, str):
                out.append(source)
    return out


def exercise_code(cells: list[str], exercises: list[str]) -> dict[str, str]:
    """Each exercise's code: its last top-level definition and the top-level functions it calls."""
    definitions: dict[str, str] = {}
    for source in cells:
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                definitions[node.name] = ast.get_source_segment(source, node) or ""
    found = {}
    for exercise in exercises:
        if exercise not in definitions:
            continue
        parts, todo, seen = [], [exercise], set()
        while todo:
            name = todo.pop()
            if name in seen or name not in definitions:
                continue
            seen.add(name)
            parts.append(definitions[name])
            try:
                called = {n.id for n in ast.walk(ast.parse(definitions[name])) if isinstance(n, ast.Name)}
            except (SyntaxError, RecursionError):
                called = set()
            todo += sorted((called & set(definitions)) - seen - set(exercises))
        found[exercise] = "\n\n".join(parts)
    return found


def _starter(slug: str, exercises: list[str]) -> dict[str, set]:
    """Fingerprints of each exercise's starter code, from both student notebooks."""
    record = chapters.chapter(slug)
    starter: dict[str, set] = {e: set() for e in exercises}
    for framework in chapters.FRAMEWORKS:
        notebook = _read_notebook(record.student_path(framework))
        if notebook is None:
            continue
        for exercise, code in exercise_code(_code_cells(notebook), exercises).items():
            starter[exercise] |= set(_fingerprint(code).hashes)
    return starter


def book_code(slug: str) -> str:
    """The code cells of the chapter's pages (MyST notebooks): the known source."""
    import jupytext

    record = chapters.chapter(slug)
    folder = record.index_page.parent
    code = []
    for page in sorted(folder.glob("*.md")):
        notebook = jupytext.read(page)
        code += [c.source for c in notebook.cells if c.cell_type == "code"]
    return "\n\n".join(code)


def compare(graded: Path, threshold: float = DEFAULT_THRESHOLD, known: list[str] | None = None,
            progress=None) -> list[Pair]:
    """Every pair of graded submissions of one exercise, most similar first."""
    from copydetect.detector import compare_files
    from copydetect.utils import highlight_overlap

    results = [r for r in report.completed_results(graded).values() if not r.error and r.chapter]
    by_chapter: dict[str, list] = {}
    for r in results:
        by_chapter.setdefault(r.chapter, []).append(r)
    pairs: list[Pair] = []
    for slug, group in sorted(by_chapter.items()):
        exercises = list(chapters.chapter(slug).exercises)
        starter = _starter(slug, exercises)
        sources = known if known is not None else [book_code(slug)]
        book_hashes = set().union(*(set(_fingerprint(s).hashes) for s in sources)) if sources else set()
        codes = {}
        for r in group:
            notebook = _read_notebook(Path(r.path))
            codes[r.submission] = exercise_code(_code_cells(notebook), exercises) if notebook else {}
        for exercise in exercises:
            prints = {}
            for name, found in codes.items():
                if exercise in found:
                    fp = _fingerprint(found[exercise], starter[exercise])
                    if fp.token_coverage >= MIN_TOKENS:
                        prints[name] = (fp, found[exercise])
            for a, b in combinations(sorted(prints, key=str.casefold), 2):
                (fa, ca), (fb, cb) = prints[a], prints[b]
                _, (sa, sb), slices = compare_files(fa, fb)
                similarity = float(max(sa, sb))
                shared = fa.hashes & fb.hashes
                from_book = bool(shared) and len(shared & book_hashes) >= FROM_BOOK * len(shared)
                pair = Pair(exercise, a, b, round(similarity, 4), from_book, ca, cb)
                if similarity >= threshold and len(slices[0]):
                    pair.html_a = highlight_overlap(ca, slices[0], "<mark>", "</mark>", escape_html=True)[0]
                    pair.html_b = highlight_overlap(cb, slices[1], "<mark>", "</mark>", escape_html=True)[0]
                pairs.append(pair)
            if progress:
                progress(slug, exercise)
    pairs.sort(key=lambda p: (-p.similarity, p.exercise, p.a, p.b))
    return pairs


def write_csv(pairs: list[Pair], path: Path) -> Path:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(["exercise", "submission_a", "submission_b", "similarity", "from_book"])
    for p in pairs:
        writer.writerow([p.exercise, p.a, p.b, f"{p.similarity:.4f}", "yes" if p.from_book else ""])
    return write_atomic(path, buffer.getvalue())


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222;background:#fff}
h1{font-size:1.4em} table{border-collapse:collapse} td,th{padding:.2em .6em;border-bottom:1px solid #ddd}
.pair{margin:2em 0;border-top:2px solid #999} .side{display:flex;gap:1em}
.side>div{flex:1;min-width:0} pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:13px}
mark{background:#ffe08a} .book{color:#555;font-style:italic}
@media (prefers-color-scheme: dark){body{background:#111;color:#ddd} pre{background:#222}
mark{background:#7a5c00;color:#fff} td,th{border-color:#444}}
"""


def _link(i: int, text: str) -> str:
    return f"<a href='#p{i}'>{html.escape(text)}</a>" if i < MAX_SIDE_BY_SIDE else html.escape(text)


def write_html(pairs: list[Pair], path: Path, threshold: float) -> Path:
    shown = [p for p in pairs if p.similarity >= threshold]
    e = html.escape
    rows = "".join(
        f"<tr><td>{_link(i, p.exercise)}</td><td>{e(p.a)}</td><td>{e(p.b)}</td>"
        f"<td>{p.similarity:.0%}</td><td class='book'>{'from the book' if p.from_book else ''}</td></tr>"
        for i, p in enumerate(shown))
    blocks = "".join(
        f"<section class='pair' id='p{i}'><h2>{e(p.exercise)}: {e(p.a)} and {e(p.b)}, {p.similarity:.0%}"
        f"{' <span class=book>(shared passages mostly from the book)</span>' if p.from_book else ''}</h2>"
        f"<div class='side'><div><h3>{e(p.a)}</h3><pre>{p.html_a or e(p.code_a)}</pre></div>"
        f"<div><h3>{e(p.b)}</h3><pre>{p.html_b or e(p.code_b)}</pre></div></div></section>"
        for i, p in enumerate(shown[:MAX_SIDE_BY_SIDE]))
    if len(shown) > MAX_SIDE_BY_SIDE:
        blocks += (f"<p>The {len(shown) - MAX_SIDE_BY_SIDE} less similar pairs are in the table above "
                   "and in similarity.csv, not drawn side by side.</p>")
    body = (f"<!doctype html><html lang='en'><meta charset='utf-8'><title>Similarity</title>"
            f"<style>{_STYLE}</style><h1>Similarity across the class</h1>"
            f"<p>{len(shown)} pairs of {len(pairs)} compared are at least {threshold:.0%} similar "
            "(copydetect winnowing; starter code removed; names, strings and comments ignored). "
            "Similar code is a reason to look, not a verdict: short exercises have few ways to be "
            "right. Highlighted: the passages both share.</p>"
            f"<table><tr><th>exercise</th><th>a</th><th>b</th><th>similarity</th><th></th></tr>{rows}</table>"
            f"{blocks}</html>\n")
    return write_atomic(path, body)


def run(graded: Path, threshold: float = DEFAULT_THRESHOLD, known_files: list[Path] | None = None,
        progress=None) -> list[Pair]:
    known = None
    if known_files:
        known = [Path(f).read_text(encoding="utf-8") for f in known_files]
    pairs = compare(graded, threshold, known, progress)
    write_csv(pairs, Path(graded) / "similarity.csv")
    write_html(pairs, Path(graded) / "similarity.html", threshold)
    return pairs
