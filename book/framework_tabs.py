"""Sphinx extension: notebook cells tagged `pytorch` / `tensorflow` become synced framework tabs.

Jupyter Book v1 cannot nest a code-cell inside a tab directive (jupyter-book#1178), so pages
write the twins as adjacent tagged cells and this extension regroups them after myst-nb has
executed and rendered them, into sphinx-design's synced tabs (sync group `framework`):

    [pytorch cell(s)] [tensorflow cell(s)]   ->   tab-set
                                                    tab-item "PyTorch"    (cells)   sync id pytorch
                                                    tab-item "TensorFlow" (cells)   sync id tensorflow

Grouping rules, applied to each run of adjacent tagged cells:
- the run splits into blocks of one framework; blocks pair up in order ((1st, 2nd), (3rd, 4th), ...),
  either framework first; each pair becomes one tab set, PyTorch always the first tab;
- a block left without a twin stays as it is and causes a warning (a page shows every example in
  both frameworks, so a lone tagged cell is a mistake), as does a cell carrying both tags.
Untagged cells are never touched. A page with such a problem is re-read on every build, so its
warning (and the failure under `-W`) comes back until the page is fixed.

sphinx-design renders the tabs (CSS radio buttons: they switch without JavaScript) and its
design-tabs.js selects the reader's framework in every tab set and remembers it in localStorage.

Before myst-nb executes a page, `announce_cell_tags` tells the kernel which cells are which
framework (see book/kernel.py): the kernel sees only a cell's code, never its tags.
"""

from __future__ import annotations

import os
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.transforms import SphinxTransform
from sphinx.util import logging
from sphinx_design.shared import create_component

from book.kernel import CELLS_VARIABLE, describe_cells

logger = logging.getLogger(__name__)

# tag -> tab label; the order is the tab order, so PyTorch comes first whichever cell came first.
FRAMEWORKS = {"pytorch": "PyTorch", "tensorflow": "TensorFlow"}
SYNC_GROUP = "framework"  # sphinx-design syncs (and stores) the choice per group: one for the book
ENV_KEY = "framework_tabs_problems"  # docname -> [(line, message)], kept in the pickled env
Block = tuple[str, list[nodes.Node]]  # (framework, adjacent cells tagged with it)


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


def make_tab_set(blocks: tuple[Block, Block]) -> nodes.container:
    """A sphinx-design tab set, built as its tab-set and tab-item directives build theirs."""
    tab_set = create_component("tab-set", classes=["sd-tab-set", "framework-tabs"])
    for framework, cells in sorted(blocks, key=lambda block: list(FRAMEWORKS).index(block[0])):
        label = nodes.rubric("", FRAMEWORKS[framework], classes=["sd-tab-label"],
                             sync_id=framework, sync_group=SYNC_GROUP)
        content = create_component("tab-content", classes=["sd-tab-content"])
        for cell in cells:
            cell.parent.remove(cell)
            content += cell
        tab_set += create_component("tab-item", classes=["sd-tab-item"], children=[label, content])
    return tab_set


class GroupFrameworkCells(SphinxTransform):
    """Wrap each PyTorch/TensorFlow pair of cell blocks into a tab set."""

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

        for parent in parents:
            for run in split_into_blocks(list(parent.children)):
                pairs, lone = pair_blocks(run)
                for pair in pairs:
                    position = parent.index(pair[0][1][0])
                    parent.insert(position, make_tab_set(pair))
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


def setup(app: Sphinx) -> dict[str, Any]:
    app.setup_extension("sphinx_design")
    app.add_transform(GroupFrameworkCells)
    app.connect("source-read", announce_cell_tags)
    app.connect("env-get-outdated", reread_pages_with_problems)
    app.connect("env-purge-doc", purge_doc)
    app.connect("env-merge-info", merge_info)
    # env_version: doctrees pickled by 1.x hold its own tab nodes; a new version makes Sphinx
    # re-read every page instead of failing to unpickle them (executed cells come from the cache).
    return {"version": "2.0", "env_version": 2, "parallel_read_safe": True,
            "parallel_write_safe": True}
