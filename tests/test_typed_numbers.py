"""No number that a run printed is typed into a page's prose: it is glued from the executed cell.

A page's prose (markdown, admonitions, figure captions) that types "accuracy 0.37" goes stale the
next time the page runs on another machine or under load: the build printed 0.35 and the text
still said 0.37. myst-nb's `glue` puts the printed number into the text instead
(`book.pages.glue_values`, `{glue:text}`name:.2f``).

The test reads each page's executed notebook, which `make book` leaves in
_build/jupyter_execute/<page>.ipynb, collects the numbers its outputs print, and fails on a number
in the page's prose that equals one of them (a prose number with k decimals matches a printed
number rounded to k decimals). To keep coincidences out, a prose number counts only when it has at
least two significant digits (0.37, 15.7, 128; not 4 or 0.5), and years in citations (1900-2029
without decimals) are left alone.

Some prose numbers are definitions, not results: "d_k = 64" names a parameter the code sets, and
the page may print it too. Those are listed in ALLOWED, one entry per page and number, with the
reason, and each entry is checked: the number must be written as a literal in the page's code
(a parameter, not an output), and it must still occur in the prose (no stale entries). An entry
cannot cover another page or a number the code does not set.

Only the chapters in CHECKED_CHAPTERS are checked for now; a chapter is added to that list once its
prose is glued.

Like the browser test, this reads the existing build and fails, not skips, when it is missing:
`make test` builds the book first.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXECUTED = ROOT / "_build" / "jupyter_execute"
# The chapters whose prose has been converted to glue. Chapters 04-06 still type numbers their runs
# print (issue 20); each one joins this list when its pages pass, until it names every chapter.
CHECKED_CHAPTERS = ["01_background", "02_principles", "03_math"]
PAGES = sorted(page for chapter in CHECKED_CHAPTERS for page in (ROOT / "chapters" / chapter).glob("**/*.md"))

pytestmark = [pytest.mark.slow]

# page (relative to chapters/) -> {number as typed in the prose: why it is a definition}.
# Each number must appear as a literal in that page's code cells.
ALLOWED: dict[str, dict[str, str]] = {
    "01_background/bottleneck.md": {"10": "log2 10 bits per digit: DIGITS = 10, the task's alphabet"},
    "01_background/kernel_regression.md": {"50": "the number of examples the page draws",
                                           "1.0": "a bandwidth the page sets (BANDWIDTHS)"},
    "02_principles/index.md": {"1.5": "the stretch factor the page applies to a row",
                               "100": "the shift the page adds to a row",
                               "13": "the query hour of the kernel-regression example (13:00)"},
    "02_principles/scoring.md": {"64": "a d_k the page sets (sizes; the source-formula demo)",
                                 "1024": "the largest d_k in the page's sizes"},
    "02_principles/taxonomy.md": {"32": "a test length the page sets", "128": "a test length the page sets",
                                  "512": "a test length the page sets"},
}

NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?![\w])")
FENCE = re.compile(r"^(`{3,}|~{3,})\s*(\{([\w:-]+)\})?\s*(\S*)")


def prose_of(text: str) -> list[tuple[int, str]]:
    """(line number, text) of a MyST page's prose: front matter, code cells, literal code blocks,
    directive options, inline code, glue roles, links' targets and labels removed."""
    lines = text.splitlines()
    out: list[tuple[int, str]] = []
    i = 0
    if lines and lines[0] == "---":
        i = lines.index("---", 1) + 1
    stack: list[tuple[str, bool]] = []      # open fences: (fence, is prose inside)
    while i < len(lines):
        line = lines[i]
        opening = FENCE.match(line.strip())
        if opening and (not stack or stack[-1][1]):
            fence, directive, language = opening.group(1), opening.group(3), opening.group(4)
            if stack and line.strip() == stack[-1][0]:          # closes the innermost prose fence
                stack.pop()
                i += 1
                continue
            prose = directive is not None and directive not in {"code-cell", "code", "code-block",
                                                                  "literalinclude", "math"}
            if directive is None and not language and stack:
                stack.pop()                                    # a bare fence closes
                i += 1
                continue
            stack.append((fence, prose))
            i += 1
            if directive == "code-cell" and i < len(lines) and lines[i].strip() == "---":
                end = lines.index("---", i + 1)               # a code cell's figure caption is prose
                options = yaml.safe_load("\n".join(lines[i + 1:end])) or {}
                caption = ((options.get("mystnb") or {}).get("figure") or {}).get("caption")
                if caption:
                    out.append((i + 1, clean(str(caption))))
                i = end + 1
            if prose:                                          # skip the directive's options
                if i < len(lines) and lines[i].strip() == "---":
                    i = lines.index("---", i + 1) + 1
                while i < len(lines) and re.match(r"^\s*:[\w-]+:", lines[i]):
                    i += 1
            continue
        if stack and not stack[-1][1]:
            if line.strip() == stack[-1][0]:
                stack.pop()
            i += 1
            continue
        if stack and line.strip() == stack[-1][0]:
            stack.pop()
            i += 1
            continue
        out.append((i + 1, clean(line)))
        i += 1
    return out


def clean(line: str) -> str:
    line = re.sub(r"\{glue(?::\w+)?\}`[^`]*`", " ", line)       # glued: inserted, not typed
    line = re.sub(r"\{(?:ref|doc|numref|eq|download|cite)\}`[^`]*`", " ", line)
    line = re.sub(r"`[^`]*`", " ", line)                        # inline code: names, shapes
    line = re.sub(r"\]\([^)]*\)", "] ", line)                   # link targets
    line = re.sub(r"https?://\S+", " ", line)
    line = re.sub(r"^\([\w-]+\)=\s*$", " ", line)               # (label)=
    line = re.sub(r"arXiv:\s*\d+\.\d+", " ", line)
    return line


def prose_numbers(text: str) -> list[tuple[int, str]]:
    """(line, number as typed) for each number in the prose that counts (see the module doc)."""
    found = []
    for number, line in prose_of(text):
        for match in NUMBER.finditer(line):
            typed = match.group(0)
            integer, decimals = match.group(1).replace(",", ""), match.group(2) or ""
            if len((integer + decimals[1:]).lstrip("0")) < 2:
                continue                                      # one significant digit: too common
            if not decimals and 1900 <= int(integer) <= 2029:
                continue                                      # a year
            found.append((number, typed))
    return found


def printed_numbers(notebook: dict) -> set[str]:
    """Every number the executed notebook's outputs print (streams, text/plain, markdown), as
    printed; glued values are outputs too but the prose that shows them is a glue role."""
    texts = []
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            if "text" in output:
                texts.append("".join(output["text"]))
            for mime in ("text/plain", "text/markdown", "text/html"):
                data = output.get("data", {}).get(mime)
                if data and not (mime == "text/plain" and "application/papermill.record/text/plain"
                                 in output.get("data", {})):
                    texts.append("".join(data))
    found = set()
    for text in texts:
        found.update(m.group(0) for m in re.finditer(r"(?<![\w.])\d+(?:\.\d+)?(?:e[+-]?\d+)?", text))
    return found


def matches(typed: str, printed: set[str]) -> bool:
    """Whether a prose number equals a printed one rounded to the prose's decimals."""
    value = typed.replace(",", "")
    decimals = len(value.partition(".")[2])
    for number in printed:
        if "e" in number:
            try:
                as_float = float(number)
            except ValueError:
                continue
        else:
            if len(number.partition(".")[2]) < decimals:
                continue                                      # printed less precisely
            as_float = float(number)
        if decimals == 0:
            if "." not in number and "e" not in number and number.lstrip("0") == value.lstrip("0"):
                return True
        elif f"{as_float:.{decimals}f}" == value:
            return True
    return False


def code_literals(text: str) -> set[str]:
    """The number literals written in a page's code cells (the parameters the page sets)."""
    literals, inside, options, first = set(), False, False, False
    for line in text.splitlines():
        if re.match(r"^(`{3,})\{code-cell\}", line):
            inside, first = True, True
            continue
        if inside and re.match(r"^`{3,}\s*$", line):
            inside = False
            continue
        if inside and (line.strip() == "---" and (first or options)):
            options, first = not options, False               # the cell's YAML options: no code
            continue
        first = False
        if inside and not options and not re.match(r"^:[\w-]+:", line):
            code = re.sub(r"(\"[^\"]*\"|'[^']*')", " ", line.split("#", 1)[0])   # not strings
            literals.update(m.group(0).replace("_", "") for m in
                            re.finditer(r"(?<![\w.])\d[\d_]*(?:\.\d+)?", code))
    return literals


def typed_hits(page: Path, notebook: dict) -> list[str]:
    text = page.read_text()
    printed = printed_numbers(notebook)
    allowed = ALLOWED.get(page.relative_to(ROOT / "chapters").as_posix(), {})
    return [f"{page.relative_to(ROOT)}:{line}: {typed} is printed by the page's run; glue it"
            for line, typed in prose_numbers(text)
            if typed not in allowed and matches(typed, printed)]


def executed(page: Path) -> Path:
    return EXECUTED / page.relative_to(ROOT).with_suffix(".ipynb")


def test_checked_chapters_exist():
    """A renamed or misspelt chapter must not drop out of the check silently."""
    for chapter in CHECKED_CHAPTERS:
        assert list((ROOT / "chapters" / chapter).glob("*.md")), f"no pages in chapters/{chapter}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT / "chapters").as_posix())
def test_no_typed_number_matches_an_output(page):
    notebook_path = executed(page)
    assert notebook_path.exists(), f"{notebook_path} missing: run `make book` first"
    hits = typed_hits(page, json.loads(notebook_path.read_text()))
    assert not hits, "\n".join(hits)


def test_allow_list_names_parameters_the_code_sets():
    """An allowed number is a literal in the page's code and still in its prose."""
    problems = []
    for name, numbers in ALLOWED.items():
        page = ROOT / "chapters" / name
        text = page.read_text()
        literals = code_literals(text)
        typed = {t for _, t in prose_numbers(text)}
        for number, reason in numbers.items():
            if not reason.strip():
                problems.append(f"{name}: {number} has no reason")
            if float(number.replace(",", "")) not in {float(literal) for literal in literals}:
                problems.append(f"{name}: {number} is not a literal in the page's code: an output?")
            if number not in typed:
                problems.append(f"{name}: {number} no longer in the prose: remove the entry")
    assert not problems, "\n".join(problems)


PLANTED = """---
kernelspec:
  name: python3
---
# A page

```{code-cell} ipython3
---
mystnb:
  figure:
    caption: At length 20 the accuracy is 0.37.
---
accuracy = 0.3712
print(f"accuracy {accuracy:.2f} at n = 128")   # prints 0.37 and 128
```

The accuracy falls to 0.37 at {glue:text}`n_long` digits, and `0.37` in code is a name.

```{figure} x.svg
:width: 80%

Caption: 128 digits, 0.4 of them right, in 2014 (arXiv:1409.0473).
```

```python
print(0.37)      # a literal code block is not prose
```
"""
PLANTED_NOTEBOOK = {"cells": [{"cell_type": "code", "outputs": [
    {"output_type": "stream", "name": "stdout", "text": ["accuracy 0.37 at n = 128\n"]}]}]}


def test_planted_typed_numbers_are_found(tmp_path, monkeypatch):
    """The checker flags a typed result in prose and in a caption, and nothing else."""
    page = ROOT / "chapters" / "planted.md"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: PLANTED)
    hits = typed_hits(page, PLANTED_NOTEBOOK)
    assert [(h.split(":")[1], h.split(": ", 1)[1].split()[0]) for h in hits] == [
        ("8", "0.37"), ("17", "0.37"), ("22", "128")]           # caption, text, figure caption
    # The same page with the results glued instead of typed passes.
    glued = PLANTED.replace("is 0.37.", "is {glue:text}`acc:.2f`.").replace("to 0.37 at", "to {glue:text}`acc:.2f` at").replace("128 digits", "{glue:text}`n` digits")
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: glued)
    assert typed_hits(page, PLANTED_NOTEBOOK) == []
    # Rounding: the prose's 0.37 matches a printed 0.3712, not a printed 0.4.
    assert matches("0.37", {"0.3712"}) and not matches("0.37", {"0.4"}) and not matches("37", {"0.37"})


def test_allow_list_refuses_an_output(monkeypatch):
    """An allow-list entry for a number the code does not set (an output) is refused."""
    page = ROOT / "chapters" / "planted.md"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: PLANTED)
    monkeypatch.setitem(ALLOWED, "planted.md", {"0.37": "a result, wrongly allowed"})
    with pytest.raises(AssertionError, match="not a literal in the page's code"):
        test_allow_list_names_parameters_the_code_sets()
    monkeypatch.setitem(ALLOWED, "planted.md", {"128": ""})
    with pytest.raises(AssertionError, match="no reason"):
        test_allow_list_names_parameters_the_code_sets()
