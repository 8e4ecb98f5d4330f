"""Sphinx extension: notebook cells tagged `pytorch` / `tensorflow` become synced framework tabs.

Jupyter Book v1 cannot nest a code-cell inside a tab directive (jupyter-book#1178), so pages
write the twins as adjacent tagged cells and this extension regroups them after myst-nb has
executed and rendered them:

    [pytorch cell(s)] [tensorflow cell(s)]   ->   framework_tabs
                                                    framework_tab_panel "PyTorch"    (cells)
                                                    framework_tab_panel "TensorFlow" (cells)

Grouping rules, applied to each run of adjacent tagged cells:
- the run splits into blocks of one framework; blocks pair up in order ((1st, 2nd), (3rd, 4th), ...),
  either framework first; each pair becomes one tab set, PyTorch always the first tab;
- a block left without a twin stays as it is and causes a warning (a page shows every example in
  both frameworks, so a lone tagged cell is a mistake), as does a cell carrying both tags.
Untagged cells are never touched. A page with such a problem is re-read on every build, so its
warning (and the failure under `-W`) comes back until the page is fixed.

Before myst-nb executes a page, `announce_cell_tags` tells the kernel which cells are which
framework (see book/kernel.py): the kernel sees only a cell's code, never its tags.

The HTML is usable without JavaScript: both panels are shown, each under its framework's name.
`_static/framework_tabs.js` turns them into tabs, syncs every tab set on the page and remembers the
reader's choice in localStorage; `_static/framework_tabs.css` styles both states.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.transforms import SphinxTransform
from sphinx.util import logging

from book.kernel import CELLS_VARIABLE, describe_cells

logger = logging.getLogger(__name__)

# tag -> tab label; the order is the tab order, so PyTorch comes first whichever cell came first.
FRAMEWORKS = {"pytorch": "PyTorch", "tensorflow": "TensorFlow"}
STATIC_DIR = Path(__file__).parent / "_static"
ENV_KEY = "framework_tabs_problems"  # docname -> [(line, message)], kept in the pickled env
Block = tuple[str, list[nodes.Node]]  # (framework, adjacent cells tagged with it)


class framework_tabs(nodes.General, nodes.Element):
    """One tab set: a framework_tab_panel child per framework."""


class framework_tab_panel(nodes.General, nodes.Element):
    """The cells of one framework; attribute `framework` is a key of FRAMEWORKS."""


def cell_framework(node: nodes.Node) -> str | None | bool:
    """The framework a code cell is tagged with; None when untagged, False when tagged twice."""
    if not (isinstance(node, nodes.container) and node.get("nb_element") == "cell_code"):
        return None
    found = [name for name in FRAMEWORKS if f"tag_{name}" in node["classes"]]
    if len(found) > 1:
        return False
    return found[0] if found else None


def split_into_blocks(children: list[nodes.Node]) -> list[list[Block]]:
    """Runs of adjacent tagged cells, each run split into (framework, cells) blocks."""
    runs: list[list[Block]] = []
    previous_tagged = False
    for child in children:
        framework = cell_framework(child)
        if not framework:
            previous_tagged = False
            continue
        if not previous_tagged:
            runs.append([])
        run = runs[-1]
        if run and run[-1][0] == framework:
            run[-1][1].append(child)
        else:
            run.append((framework, [child]))
        previous_tagged = True
    return runs


def pair_blocks(run: list[Block]) -> tuple[list[tuple[Block, Block]], Block | None]:
    """Pair a run's blocks in order: ([(first, second), ...], block left without a twin or None)."""
    pairs = [tuple(run[start : start + 2]) for start in range(0, len(run) - 1, 2)]
    lone = run[-1] if len(run) % 2 else None
    return pairs, lone


def make_tab_set(blocks: tuple[Block, Block], set_id: str) -> framework_tabs:
    tab_set = framework_tabs(set_id=set_id)
    for framework, cells in sorted(blocks, key=lambda block: list(FRAMEWORKS).index(block[0])):
        panel = framework_tab_panel(framework=framework, set_id=set_id)
        for cell in cells:
            cell.parent.remove(cell)
            panel += cell
        tab_set += panel
    return tab_set


class GroupFrameworkCells(SphinxTransform):
    """Wrap each PyTorch/TensorFlow pair of cell blocks into a framework_tabs node."""

    # Runs at read time, after myst-nb's parser has produced the executed cells, so the grouped
    # doctree is what Sphinx pickles; mime-bundle selection happens later and finds the outputs
    # inside the panels as well as anywhere else.
    default_priority = 500

    def apply(self, **kwargs: Any) -> None:
        problems: list[tuple[int | None, str]] = []
        parents = []
        for cell in self.document.findall(nodes.container):
            framework = cell_framework(cell)
            if framework is False:
                problems.append((cell.line, "a code cell is tagged both 'pytorch' and 'tensorflow'"))
            elif framework and not any(cell.parent is seen for seen in parents):
                parents.append(cell.parent)

        counter = 0
        for parent in parents:
            for run in split_into_blocks(list(parent.children)):
                pairs, lone = pair_blocks(run)
                for pair in pairs:
                    counter += 1
                    position = parent.index(pair[0][1][0])
                    parent.insert(position, make_tab_set(pair, set_id=f"framework-tabs-{counter}"))
                if lone:
                    framework, cells = lone
                    twin = "tensorflow" if framework == "pytorch" else "pytorch"
                    problems.append(
                        (cells[0].line, f"'{framework}' cell without an adjacent '{twin}' twin")
                    )

        for line, message in problems:
            logger.warning(
                "framework tabs: %s", message, location=(self.env.docname, line),
                type="framework_tabs",
            )
        store = self.env.__dict__.setdefault(ENV_KEY, {})
        if problems:
            store[self.env.docname] = problems
        else:
            store.pop(self.env.docname, None)


def reread_pages_with_problems(app, env, added, changed, removed) -> list[str]:
    """Pages with a problem count as outdated, so every build warns again (and `-W` fails)
    until they are fixed, not just the build that first read them."""
    return sorted(set(getattr(env, ENV_KEY, {})) - set(removed))


def purge_doc(app: Sphinx, env: BuildEnvironment, docname: str) -> None:
    getattr(env, ENV_KEY, {}).pop(docname, None)


def merge_info(app: Sphinx, env: BuildEnvironment, docnames: set[str], other: BuildEnvironment):
    mine = env.__dict__.setdefault(ENV_KEY, {})
    for docname, problems in getattr(other, ENV_KEY, {}).items():
        if docname in docnames:
            mine[docname] = problems


# --- HTML ------------------------------------------------------------------------------------
# Without JS: the tab list is `hidden` and each panel shows its own caption, so both frameworks
# are readable one after the other. The script unhides the tab list and hides inactive panels.


def visit_tabs_html(self, node: framework_tabs) -> None:
    set_id = node["set_id"]
    self.body.append(f'<div class="framework-tabs" id="{set_id}">\n')
    self.body.append(
        '<div class="framework-tabs-list" role="tablist" aria-label="Framework" hidden>'
    )
    for index, panel in enumerate(node.children):
        framework = panel["framework"]
        selected = "true" if index == 0 else "false"
        self.body.append(
            f'<button type="button" role="tab" class="framework-tab" '
            f'id="{set_id}-tab-{framework}" aria-controls="{set_id}-panel-{framework}" '
            f'aria-selected="{selected}" tabindex="{0 if index == 0 else -1}" '
            f'data-framework="{framework}">{FRAMEWORKS[framework]}</button>'
        )
    self.body.append("</div>\n")


def depart_tabs_html(self, node: framework_tabs) -> None:
    self.body.append("</div>\n")


def visit_panel_html(self, node: framework_tab_panel) -> None:
    set_id, framework = node["set_id"], node["framework"]
    self.body.append(
        f'<div class="framework-tab-panel" role="tabpanel" id="{set_id}-panel-{framework}" '
        f'aria-labelledby="{set_id}-tab-{framework}" data-framework="{framework}">\n'
        f'<p class="framework-tab-caption">{FRAMEWORKS[framework]}</p>\n'
    )


def depart_panel_html(self, node: framework_tab_panel) -> None:
    self.body.append("</div>\n")


def visit_plain(self, node: nodes.Element) -> None:
    """Other builders (LaTeX, text, ...) just show the panels' cells in order."""


def depart_plain(self, node: nodes.Element) -> None:
    pass


def announce_cell_tags(app: Sphinx, docname: str, source: list[str]) -> None:
    """Put the page's code cells and their framework tags where the kernel will find them.

    source-read comes just before the parser, which is where myst-nb executes; the kernel it starts
    inherits this process's environment. The notebook is read by myst-nb's own reader, so the
    cells' code is exactly what the kernel will be sent."""
    from myst_nb.core.read import create_nb_reader

    env = app.env
    path = str(env.doc2path(docname))
    reader = create_nb_reader(path, env.myst_config, env.mystnb_config, source[0])
    if reader is None:  # not a notebook
        os.environ.pop(CELLS_VARIABLE, None)
    else:
        os.environ[CELLS_VARIABLE] = describe_cells(reader.read(source[0]))


def add_static_path(app: Sphinx, config) -> None:
    # At config-inited, so the value is the same on every run and cached builds stay cached.
    confdir = Path(app.confdir)
    if all((confdir / entry).resolve() != STATIC_DIR.resolve() for entry in config.html_static_path):
        config.html_static_path.append(str(STATIC_DIR))


def setup(app: Sphinx) -> dict[str, Any]:
    plain = (visit_plain, depart_plain)
    other_builders = {name: plain for name in ("latex", "text", "man", "texinfo")}
    app.add_node(framework_tabs, html=(visit_tabs_html, depart_tabs_html), **other_builders)
    app.add_node(framework_tab_panel, html=(visit_panel_html, depart_panel_html), **other_builders)
    app.add_transform(GroupFrameworkCells)
    app.connect("config-inited", add_static_path)
    app.connect("source-read", announce_cell_tags)
    app.connect("env-get-outdated", reread_pages_with_problems)
    app.connect("env-purge-doc", purge_doc)
    app.connect("env-merge-info", merge_info)
    app.add_css_file("framework_tabs.css")
    app.add_js_file("framework_tabs.js", defer="defer")
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
