"""Kernel-side plumbing for chapter pages: keep the PyTorch and TensorFlow twins apart.

Twin cells use the same names (`queries`, `weights`, ...) and both run in one kernel, PyTorch first.
Without help, a later PyTorch cell would pick up its TensorFlow twin's objects, and since `@` and
many ops accept either, it could run TensorFlow code silently. Before a cell tagged `pytorch` or
`tensorflow` runs, this puts back the names that framework's earlier cells assigned. Untagged cells
(plots, NumPy checks) are left alone; they read NumPy copies such as `weights_pt` and `weights_tf`.

A cell's framework is its tag, never a guess from its code (`class X(nn.Module)` names no `torch`,
and a comment may name the other framework). The kernel does not see tags: nbclient sends only a
cell's source. So the book's Sphinx extension (framework_tabs.py), just before myst-nb executes a
page, puts the page's code cells into the environment the kernel inherits, as
`[source digest, framework or null]` in order (`describe_cells`). Cells run in that order, so the
kernel matches each one to the next entry with its digest; twins with identical code (`print(x)`
in both tabs) are told apart by their position.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys

FRAMEWORKS = ("pytorch", "tensorflow")
CELLS_VARIABLE = "BOOK_PAGE_CELL_FRAMEWORKS"


def digest(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def describe_cells(notebook) -> str:
    """The value of CELLS_VARIABLE for a notebook (nbformat): its code cells' digests and tags."""
    cells = []
    for cell in notebook.cells:
        if cell.cell_type == "code":
            tagged = [name for name in FRAMEWORKS if name in cell.metadata.get("tags", [])]
            cells.append([digest(cell.source), tagged[0] if len(tagged) == 1 else None])
    return json.dumps(cells)


class FrameworkNamespaces:
    def __init__(self, shell, cells: list):
        self.ns, self.saved, self.current, self.before = shell.user_ns, {}, None, {}
        self.cells, self.position = cells, 0
        shell.events.register("pre_run_cell", self.pre_run_cell)
        shell.events.register("post_run_cell", self.post_run_cell)

    def framework_of(self, source: str) -> str | None:
        """The tag of the page's next code cell with this source (None: untagged or unknown)."""
        key = digest(source)
        for index in range(self.position, len(self.cells)):
            if self.cells[index][0] == key:
                self.position = index + 1
                return self.cells[index][1]
        return None

    def pre_run_cell(self, info):
        self.current = self.framework_of(info.raw_cell)
        if self.current:
            self.ns.update(self.saved.setdefault(self.current, {}))
            self.before = dict(self.ns)

    def post_run_cell(self, result):
        if self.current:
            self.saved[self.current].update(
                {name: value for name, value in self.ns.items()
                 if not name.startswith("_") and self.before.get(name, self) is not value})


def keep_frameworks_apart() -> FrameworkNamespaces:
    from IPython import get_ipython

    cells = json.loads(os.environ.get(CELLS_VARIABLE, "[]"))
    if not cells:
        # Outside the book's build (JupyterLab, nbclient alone) no one says which cell is which.
        print("keep_frameworks_apart: no cell tags from the book build; the PyTorch and "
              "TensorFlow cells share one namespace here", file=sys.stderr)
    return FrameworkNamespaces(get_ipython(), cells)
