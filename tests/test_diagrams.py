"""The book's diagrams: committed SVGs are what their scripts draw now, and safe to show offline.

`python -m book.diagrams.ch02` rewrites chapter 02's figures; run it after changing the script (or
the oracle whose masks it draws) and commit the result."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from book.diagrams import ch02

ROOT = Path(__file__).resolve().parents[1]
METADATA = re.compile(r"<metadata>.*?</metadata>", re.DOTALL)   # matplotlib's version and the like
# Anything that would make a browser fetch something: links, embedded images, fonts.
EXTERNAL = re.compile(r"<image\b|@font-face|@import|(?:xlink:)?href=\"(?!#)|url\((?!#)", re.I)


def normalised(svg: Path) -> str:
    return METADATA.sub("", svg.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("figures")
    # A separate process: the script selects matplotlib's SVG backend, which must not leak into
    # other tests sharing this worker.
    subprocess.run([sys.executable, "-m", "book.diagrams.ch02", str(out)], cwd=ROOT, check=True,
                   capture_output=True, timeout=120)
    return out


def test_drawing_twice_gives_the_same_bytes(regenerated, tmp_path):
    subprocess.run([sys.executable, "-m", "book.diagrams.ch02", str(tmp_path)], cwd=ROOT,
                   check=True, capture_output=True, timeout=120)
    for name in ch02.DIAGRAMS:
        assert (tmp_path / name).read_bytes() == (regenerated / name).read_bytes(), name


def test_committed_figures_are_the_scripts_output(regenerated):
    committed = {path.name for path in ch02.FIGURES.glob("*.svg")}
    assert committed == set(ch02.DIAGRAMS), "figures/ and the script's list of diagrams differ"
    stale = [name for name in ch02.DIAGRAMS
             if normalised(ch02.FIGURES / name) != normalised(regenerated / name)]
    assert stale == [], f"stale: run `python -m book.diagrams.ch02` and commit {stale}"


@pytest.mark.parametrize("name", sorted(ch02.DIAGRAMS))
def test_figure_fits_the_content_column_and_fetches_nothing(name):
    text = (ch02.FIGURES / name).read_text(encoding="utf-8")
    width_pt = float(re.search(r'<svg[^>]*\bwidth="([\d.]+)pt"', text).group(1))
    # ~750 px column: wider would be scaled down (smaller text than designed), much narrower wastes it.
    assert 700 <= width_pt * 96 / 72 <= 760
    assert EXTERNAL.findall(text) == []
    assert "<text" not in text, "text must be drawn as paths: no font is looked up or fetched"
    # Transparent: the figure's background patch is unfilled, so both themes show through.
    assert re.search(r'<g id="patch_1">\s*<path d="[^"]*"\s*style="fill: none"', text)
