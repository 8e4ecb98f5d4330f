"""book/framework_tabs.py on a tiny Sphinx + myst-nb project (tests/fixtures/tabs_book).

The fixture's cells only print or display constants, so a build takes a few seconds."""

import subprocess
import sys
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "tabs_book"
sys.path.insert(0, str(ROOT / "book"))

import framework_tabs  # noqa: E402


def sphinx_build(out: Path) -> str:
    """Build the fixture into `out`; return the warnings it wrote."""
    warnings = out / f"warnings-{len(list(out.glob('warnings-*')))}.txt"
    out.mkdir(exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-q", str(FIXTURE), str(out / "html"),
         "-d", str(out / "doctrees"), "-w", str(warnings)],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300,
    )
    return warnings.read_text()


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    out = tmp_path_factory.mktemp("tabs_book")
    warnings = sphinx_build(out)
    return out, warnings


def page(build, name: str) -> BeautifulSoup:
    out, _ = build
    return BeautifulSoup((out / "html" / f"{name}.html").read_text(), "html.parser")


def text_of(element) -> str:
    return element.get_text(" ", strip=True)


def tab_sets(soup: BeautifulSoup) -> list:
    return soup.select(".sd-tab-set.framework-tabs")


def panels_of(tab_set) -> list:
    return tab_set.select(":scope > .sd-tab-content")


def test_one_tab_set_per_pair_with_pytorch_tab_first(build):
    sets = tab_sets(page(build, "pairs"))
    assert len(sets) == 2
    for tab_set in sets:
        labels = tab_set.select(":scope > label.sd-tab-label")
        assert [text_of(label) for label in labels] == ["PyTorch", "TensorFlow"]
        # One sync group for the whole book: choosing a framework anywhere selects it everywhere.
        assert [(label["data-sync-group"], label["data-sync-id"]) for label in labels] == [
            ("framework", "pytorch"), ("framework", "tensorflow")
        ]
        inputs = tab_set.select(':scope > input[type="radio"]')
        assert [label["for"] for label in labels] == [radio["id"] for radio in inputs]
        assert [label["aria-controls"] for label in labels] == [
            panel["id"] for panel in panels_of(tab_set)
        ]


def test_tab_panels_keep_the_cells_outputs(build):
    first, second = tab_sets(page(build, "pairs"))
    torch_panel, tf_panel = panels_of(first)
    assert "torch-output-1a" in text_of(torch_panel) and "torch-output-1b" in text_of(torch_panel)
    assert "tf-output-1" in text_of(tf_panel) and "torch-output" not in text_of(tf_panel)
    assert len(torch_panel.select(".cell")) == 2
    torch_panel, tf_panel = panels_of(second)
    assert tf_panel.select_one("span.tf-html-output"), "HTML output lost"
    assert torch_panel.select_one(".cell_output img"), "image output lost"


def test_untagged_cell_stays_outside_tab_sets(build):
    soup = page(build, "pairs")
    untagged = [cell for cell in soup.select(".cell") if "untagged-output" in text_of(cell)]
    assert len(untagged) == 1
    assert untagged[0].find_parent(class_="sd-tab-set") is None


def test_without_javascript_the_tabs_still_switch(build):
    # sphinx-design's tabs are radio buttons styled by CSS: the first is checked in the HTML, and
    # clicking a label checks its own, with no script.
    for tab_set in tab_sets(page(build, "pairs")):
        inputs = tab_set.select(':scope > input[type="radio"]')
        assert [radio.has_attr("checked") for radio in inputs] == [True, False]
        assert len({radio["name"] for radio in inputs}) == 1


def test_sphinx_design_script_and_stylesheet_are_shipped_and_linked(build):
    out, _ = build
    soup = page(build, "pairs")
    assert any("design-tabs.js" in s.get("src", "") for s in soup.select("script"))
    assert any("sphinx-design" in s.get("href", "") for s in soup.select("link"))
    assert (out / "html" / "_static" / "design-tabs.js").is_file()


def test_lone_tagged_cell_warns_and_is_left_alone(build):
    _, warnings = build
    lines = [line for line in warnings.splitlines() if "WARNING" in line]
    assert len(lines) == 1, warnings  # and no other warning from the extension's nodes
    assert "lone.md" in lines[0] and "'pytorch' cell without" in lines[0]
    soup = page(build, "lone")
    assert tab_sets(soup) == []
    assert "lonely-torch-output" in text_of(soup)


def test_lone_cell_warning_comes_back_on_an_unchanged_rebuild(build):
    out, _ = build
    assert "lone.md" in sphinx_build(out), "an incremental build forgot the warning, -W would pass"


class Cell:
    """Stand-in for a run entry: only identity matters to pair_blocks."""


@pytest.mark.parametrize(
    "order, pairs, lone",
    [
        ("pt tf", [("pt", "tf")], None),
        ("tf pt", [("tf", "pt")], None),
        ("pt tf pt tf", [("pt", "tf"), ("pt", "tf")], None),
        ("pt tf pt", [("pt", "tf")], "pt"),
        ("tf", [], "tf"),
    ],
)
def test_blocks_pair_in_order(order, pairs, lone):
    run = [(name, [Cell()]) for name in order.split()]
    got_pairs, got_lone = framework_tabs.pair_blocks(run)
    assert [(a[0], b[0]) for a, b in got_pairs] == pairs
    assert (got_lone[0] if got_lone else None) == lone


def test_each_cell_runs_in_the_namespace_of_its_tag(build):
    """book/kernel.py routes by tag: a PyTorch cell that names no `torch` (and mentions tf.keras in
    a comment) keeps its own `Scorer`; identical twin cells are told apart by position."""
    torch_panel, tf_panel = panels_of(tab_sets(page(build, "namespaces"))[1])
    assert "the pytorch scorer" in text_of(torch_panel)
    assert "the tensorflow scorer" in text_of(tf_panel)
