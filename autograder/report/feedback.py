"""The feedback a student reads: Markdown (feedback.md) and one self-contained HTML page
(feedback.html). Both render the same view, in the same order:

header (submission, assignment, total) -> warnings -> the error, if grading failed -> the notebook
-> one section per exercise, each check with ✓/✗, its points, and its message.

Everything that came from the student's side (file name, error text, check messages that quote
their output) is escaped: in Markdown it sits in code spans and fenced blocks, in HTML it goes
through html.escape, and the page's Content-Security-Policy forbids scripts besides. How much of a
hidden check's message is shown is decided in disclosure.py; `instructor=True` shows all of it.
"""
from __future__ import annotations

import html
import re

from autograder.report.disclosure import shown_output
from autograder.report.numbers import fmt_percent, fmt_points
from autograder.report.sections import (FORBIDDEN, INSTRUCTOR_NOTES, NOT_GRADED, NOT_IMPLEMENTED, NOTEBOOK,
                                        Section, framework_label, one_line, sections, status, untouched)
from autograder.results import CheckResult, SubmissionResult

PASS, FAIL = "✓", "✗"
BUILTIN_HINT = "The exercise asks you to implement this yourself, without the framework's version."
ERROR_HINT = "Nothing could be graded, so the score is 0. Ask your instructor if the reason is unclear."
PARTIAL_HINT = "Grading stopped early: the score counts only the checks below, which did run."
NO_CHECKS = "No checks ran for this exercise."


def _error_hint(result: SubmissionResult) -> str:
    return PARTIAL_HINT if result.checks else ERROR_HINT


def _assignment(result: SubmissionResult) -> str:
    return f"{result.chapter or 'assignment unknown'}, {framework_label(result.framework)}"


def _total(result: SubmissionResult) -> str:
    if not result.checks:   # nothing ran: "0 / 0" would suggest an empty assignment
        return fmt_points(result.score)
    pct = fmt_percent(result.score, result.max_score)
    total = f"{fmt_points(result.score)} / {fmt_points(result.max_score)}"
    return f"{total} ({pct})" if pct else total


def _points(score: float, max_score: float) -> str:
    """` — 1.5 / 2`; nothing for 0-point lines (the notebook runs top to bottom), where it is noise."""
    return f" — {fmt_points(score)} / {fmt_points(max_score)}" if max_score > 0 or score else ""


def _heading(section: Section) -> tuple[str, bool, str]:
    """A section's heading for both formats: (title, whether it is code, the points after it).
    An exercise always shows its points, 0 / 0 included; the notebook only when it has some."""
    if section.title == NOTEBOOK:
        return "Notebook", False, _points(section.score, section.max_score)
    return section.title, True, f" — {fmt_points(section.score)} / {fmt_points(section.max_score)}"


# --- Markdown -------------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*\[\]<>|~&#]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")


def md_text(text: str) -> str:
    """Inline text that renders as itself. Intraword underscores (masked_softmax) are inert in
    CommonMark, so they stay unescaped and the raw file stays readable."""
    return _MD_SPECIAL.sub(r"\\\1", one_line(text))


def md_code(text: str) -> str:
    """A code span that holds any text, backticks included."""
    text = one_line(text)
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_block(text: str, indent: str = "") -> list[str]:
    """A fenced block that no backtick run inside `text` can close early."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    body = [f"{indent}{line}".rstrip() for line in text.rstrip("\n").splitlines()]
    return [f"{indent}{fence}text", *body, f"{indent}{fence}"]


def _md_check(check: CheckResult, instructor: bool) -> list[str]:
    mark = PASS if check.passed else FAIL
    hidden = " *(hidden check)*" if check.visibility == "hidden" else ""
    lines = [f"- {mark} {md_text(check.name)}{_points(check.score, check.max_score)}{hidden}"]
    output = shown_output(check, instructor)
    if output.strip():
        lines += ["", *md_block(output, indent="  ")]
    return lines


def feedback_markdown(result: SubmissionResult, *, instructor: bool = False) -> str:
    copy = " (instructor copy)" if instructor else ""
    out = [
        f"# Feedback for {md_code(result.submission)}{copy}",
        "",
        f"- Assignment: {md_text(_assignment(result))}",
        f"- Score: **{_total(result)}**",
        "",
    ]
    for warning in result.warnings:
        out += [f"> **⚠ Warning:** {md_text(warning)}", ""]
    if instructor and result.notes:   # the built-in scan's doubts: for staff, never for the student
        out += [f"## {INSTRUCTOR_NOTES}", "", *(f"- {md_text(note)}" for note in result.notes), ""]
    if result.error:
        out += [f"## {FAIL} {NOT_GRADED}", "", *md_block(result.error), "", _error_hint(result), ""]
    for section in sections(result):
        title, code, points = _heading(section)
        out += [f"## {md_code(title) if code else title}{points}", ""]
        for call in section.builtins:
            out += [f"> **{FAIL} {FORBIDDEN}:** {md_code(call)}. {BUILTIN_HINT}", ""]
        if not section.checks:
            out += [NO_CHECKS, ""]
        for check in section.checks:
            out += [*_md_check(check, instructor), ""]
    return "\n".join(out).rstrip("\n") + "\n"


# --- HTML -----------------------------------------------------------------------------------------

# Inline so the page is one file that opens anywhere, offline, from a zip or an LMS attachment.
_CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 52rem;
       margin: 2rem auto; padding: 0 1rem; color: #1f2328; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; }
h2 { font-size: 1.15rem; border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; margin-top: 2rem; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
code { font-size: .92em; }
pre { font-size: 13px; line-height: 1.4; }
pre { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 6px; padding: .6rem .8rem;
      overflow-x: auto; white-space: pre-wrap; }
.meta { color: #57606a; margin: 0; }
.total { font-size: 1.2rem; font-weight: 600; }
.banner { border-radius: 6px; padding: .6rem .9rem; margin: 1rem 0; }
.warning { background: #fff8c5; border: 1px solid #d4a72c; }
.error { background: #ffebe9; border: 1px solid #cf222e; }
.error pre { background: #fff; }
ul.checks { list-style: none; padding-left: 0; }
ul.checks li { margin: .4rem 0; }
.mark { display: inline-block; width: 1.3em; font-weight: 700; }
.passed .mark { color: #1a7f37; }
.failed .mark { color: #cf222e; }
.points { color: #57606a; white-space: nowrap; }
table.overview { border-collapse: collapse; margin: 1rem 0; }
table.overview th, table.overview td { border-bottom: 1px solid #d0d7de; padding: .25rem .8rem .25rem 0;
       text-align: left; }
table.overview td.num { text-align: right; white-space: nowrap; }
details summary { cursor: pointer; color: #57606a; }
.tag { font-size: .8rem; color: #57606a; border: 1px solid #d0d7de; border-radius: 1em;
       padding: 0 .5em; margin-left: .3em; }
"""

# Even if some text escaped escaping, nothing on this page may run or load.
_CSP = "default-src 'none'; style-src 'unsafe-inline'"


def _h(text: object) -> str:
    return html.escape(str(text), quote=True)


def _html_check(check: CheckResult, instructor: bool) -> str:
    mark = PASS if check.passed else FAIL
    hidden = '<span class="tag">hidden check</span>' if check.visibility == "hidden" else ""
    points = _points(check.score, check.max_score)
    output = shown_output(check, instructor)
    detail = f"\n<pre>{_h(output.rstrip())}</pre>" if output.strip() else ""
    return (f'<li class="{_h(check.status)}"><span class="mark">{mark}</span>{_h(check.name)} '
            f'<span class="points">{points}</span>{hidden}{detail}</li>')


def _anchor(title: str) -> str:
    return "ex-" + re.sub(r"[^A-Za-z0-9_-]", "-", title)


def _overview(parts: list[Section]) -> str:
    """Per exercise: its points and status, linked to its section; what to read first."""
    rows = []
    for section in parts:
        title, code, _ = _heading(section)
        name = f"<code>{_h(title)}</code>" if code else _h(title)
        points = f"{fmt_points(section.score)} / {fmt_points(section.max_score)}" if code or section.max_score else ""
        shown = "runs top to bottom" if section.title == NOTEBOOK and status(section) == "passed" else status(section)
        rows.append(f'<tr><td><a href="#{_anchor(section.title)}">{name}</a></td>'
                    f'<td class="num">{_h(points)}</td><td>{_h(shown)}</td></tr>')
    return ('<table class="overview">\n<tr><th>exercise</th><th>points</th><th>status</th></tr>\n'
            + "\n".join(rows) + "\n</table>")


def feedback_html(result: SubmissionResult, *, instructor: bool = False) -> str:
    copy = " (instructor copy)" if instructor else ""
    body = [
        f"<h1>Feedback for <code>{_h(result.submission)}</code>{copy}</h1>",
        f'<p class="meta">{_h(_assignment(result))}</p>',
        f'<p class="total">Score: {_h(_total(result))}</p>',
    ]
    for warning in result.warnings:
        body.append(f'<div class="banner warning" role="alert"><strong>⚠ Warning:</strong> '
                    f"{_h(warning)}</div>")
    if instructor and result.notes:
        items = "".join(f"<li>{_h(note)}</li>" for note in result.notes)
        body.append(f"<h2>{_h(INSTRUCTOR_NOTES)}</h2><ul>{items}</ul>")
    if result.error:
        body.append(f'<div class="banner error" role="alert"><strong>{FAIL} {_h(NOT_GRADED)}.</strong>'
                    f"<pre>{_h(result.error)}</pre>{_h(_error_hint(result))}</div>")
    parts = sections(result)
    if parts:
        body.append(_overview(parts))
    for section in parts:
        title, code, points = _heading(section)
        body.append(f'<section id="{_anchor(section.title)}">\n'
                    f"<h2>{f'<code>{_h(title)}</code>' if code else _h(title)}{points}</h2>")
        for call in section.builtins:
            body.append(f'<div class="banner error"><strong>{FAIL} {_h(FORBIDDEN)}:</strong> '
                        f"<code>{_h(call)}</code>. {_h(BUILTIN_HINT)}</div>")
        if not section.checks:
            body.append(f"<p>{_h(NO_CHECKS)}</p>")
        else:
            items = "\n".join(_html_check(c, instructor) for c in section.checks)
            listing = f'<ul class="checks">\n{items}\n</ul>'
            if untouched(section) and not section.builtins:   # one line, its checks folded away
                plural = "" if len(section.checks) == 1 else "s"
                listing = (f"<details><summary>{_h(NOT_IMPLEMENTED)}: still raises NotImplementedError "
                           f"({len(section.checks)} check{plural})</summary>\n{listing}\n</details>")
            body.append(listing)
        body.append("</section>")
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Feedback: {_h(result.submission)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        *body,
        "</body>",
        "</html>",
        "",
    ])
