"""Text that came from a submission, made safe to keep in a record and show to a reader.

Trusted side. Everything a submission's process sends back (error messages, tracebacks, type
names) and everything read from a submitted file (metadata strings) passes through here before
a record holds it. Two guarantees:
- bounded: a caller says how many characters (and lines) it will keep, so no reply can flood a
  report or smuggle a large dump into it;
- neutral: no control characters (ANSI escapes, carriage returns that overprint a line, bells),
  no invisible format characters (bidi overrides such as U+202E that reorder what a reader sees,
  zero-width characters), no odd line separators. Markdown and HTML escaping stay the renderers'
  job (report/feedback.py), because they depend on where the text lands.

Bounding and neutralising do not make text *secret*: a hidden check's message must still keep
student-produced values out of its first line (see checks/api.py and report/disclosure.py).
"""
from __future__ import annotations

import re
import unicodedata

REPLACEMENT = "?"
_NEWLINES = re.compile(r"\r\n|[\r\u2028\u2029\x0b\x0c\x85]")


def _keep(ch: str) -> bool:
    if ch in "\n\t":
        return True
    return unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn")


def neutral(text: object, max_chars: int = 2000, max_lines: int = 40, keep: str = "tail") -> str:
    """`text` as plain, printable, bounded text. `keep="tail"` keeps the end (a traceback's last
    lines say what went wrong), `"head"` the start."""
    if not isinstance(text, str):   # str() of a hostile object could run its code or recurse
        text = str(text) if isinstance(text, (int, float)) else f"<{type(text).__name__}>"
    text = _NEWLINES.sub("\n", text)
    if len(text) > 4 * max_chars:   # do not scan megabytes only to throw them away
        text = text[-4 * max_chars:] if keep == "tail" else text[: 4 * max_chars]
    text = "".join(ch if _keep(ch) else REPLACEMENT for ch in text)
    lines = text.split("\n")
    if len(lines) > max_lines:
        lines = (["…", *lines[-max_lines:]] if keep == "tail" else [*lines[:max_lines], "…"])
        text = "\n".join(lines)
    if len(text) > max_chars:
        text = "…" + text[-(max_chars - 1):] if keep == "tail" else text[: max_chars - 1] + "…"
    return text


def name(text: object, max_chars: int = 60) -> str:
    """A short one-line label (a type name, a metadata value): no whitespace runs, no newlines."""
    return " ".join(neutral(text, max_chars * 2, 1, keep="head").split())[:max_chars]
