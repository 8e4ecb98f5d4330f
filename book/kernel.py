"""Kernel-side plumbing for chapter pages: keep the PyTorch and TensorFlow twins apart.

Twin cells use the same names (`queries`, `weights`, ...) and both run in one kernel, PyTorch first.
Without help, a later PyTorch cell would pick up its TensorFlow twin's objects, and since `@` and
many ops accept either, it could run TensorFlow code silently. Before a cell that mentions exactly
one framework (`torch`/`F.` or `tf.`/`keras`) runs, this puts back the names that framework's
earlier cells assigned. Cells that mention both or neither (plots, NumPy checks) are left alone;
they read NumPy copies such as `weights_pt` and `weights_tf`.
"""
from __future__ import annotations

import re

FRAMEWORK_PATTERNS = {
    "pytorch": re.compile(r"\btorch\b|\bF\."),
    "tensorflow": re.compile(r"\btf\.|\bkeras\b"),
}


class FrameworkNamespaces:
    def __init__(self, shell):
        self.ns, self.saved, self.current, self.before = shell.user_ns, {}, None, {}
        shell.events.register("pre_run_cell", self.pre_run_cell)
        shell.events.register("post_run_cell", self.post_run_cell)

    def pre_run_cell(self, info):
        found = [fw for fw, pattern in FRAMEWORK_PATTERNS.items() if pattern.search(info.raw_cell)]
        self.current = found[0] if len(found) == 1 else None
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

    return FrameworkNamespaces(get_ipython())
