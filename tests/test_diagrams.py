"""The book's diagrams: committed SVGs are what their scripts draw now, and safe to show offline.

`python -m book.diagrams.chNN` rewrites chapter NN's figures; run it after changing the script (or
the oracle whose masks it draws) and commit the result."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from book.diagrams import ch01, ch02, ch03, ch04, ch05, ch06

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {"ch01": ch01, "ch02": ch02, "ch03": ch03, "ch04": ch04, "ch05": ch05, "ch06": ch06}
FIGURES = [(script, name) for script, module in SCRIPTS.items() for name in sorted(module.DIAGRAMS)]
METADATA = re.compile(r"<metadata>.*?</metadata>", re.DOTALL)   # matplotlib's version and the like
# Anything that would make a browser fetch something: links, embedded images, fonts.
EXTERNAL = re.compile(r"<image\b|@font-face|@import|(?:xlink:)?href=\"(?!#)|url\((?!#)", re.I)


def normalised(svg: Path) -> str:
    return METADATA.sub("", svg.read_text(encoding="utf-8"))


def draw(script: str, out: Path) -> Path:
    # A separate process: the script selects matplotlib's SVG backend, which must not leak into
    # other tests sharing this worker.
    subprocess.run([sys.executable, "-m", f"book.diagrams.{script}", str(out)], cwd=ROOT, check=True,
                   capture_output=True, timeout=120)
    return out


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> dict[str, Path]:
    return {script: draw(script, tmp_path_factory.mktemp(script)) for script in SCRIPTS}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_drawing_twice_gives_the_same_bytes(regenerated, tmp_path, script):
    again = draw(script, tmp_path)
    for name in SCRIPTS[script].DIAGRAMS:
        assert (again / name).read_bytes() == (regenerated[script] / name).read_bytes(), name


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_committed_figures_are_the_scripts_output(regenerated, script):
    module = SCRIPTS[script]
    committed = {path.name for path in module.FIGURES.glob("*.svg")}
    assert committed == set(module.DIAGRAMS), "figures/ and the script's list of diagrams differ"
    stale = [name for name in module.DIAGRAMS
             if normalised(module.FIGURES / name) != normalised(regenerated[script] / name)]
    assert stale == [], f"stale: run `python -m book.diagrams.{script}` and commit {stale}"


@pytest.mark.parametrize("script, name", FIGURES, ids=[f"{s}/{n}" for s, n in FIGURES])
def test_figure_fits_the_content_column_and_fetches_nothing(script, name):
    text = (SCRIPTS[script].FIGURES / name).read_text(encoding="utf-8")
    width_pt = float(re.search(r'<svg[^>]*\bwidth="([\d.]+)pt"', text).group(1))
    # ~750 px column: wider would be scaled down (smaller text than designed), much narrower wastes it.
    assert 700 <= width_pt * 96 / 72 <= 760
    assert EXTERNAL.findall(text) == []
    assert "<text" not in text, "text must be drawn as paths: no font is looked up or fetched"
    # Transparent: the figure's background patch is unfilled, so both themes show through.
    assert re.search(r'<g id="patch_1">\s*<path d="[^"]*"\s*style="fill: none"', text)
