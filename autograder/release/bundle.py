"""Copy into a released package the definitions it needs from the grader's modules, and no others.

A release carries the public checks and the student-side code they call (`StudentProxy`, the
conversions, the assertions), but no oracle, no hidden check and no solution. Copying whole
modules would carry too much (a chapter's checks module holds its hidden checks too), so this
copies definitions: ask for names in a module, and it keeps the top-level statements that define
them plus, transitively, whatever those statements use, following `from autograder... import`
into the other modules. Each kept module lands at the same relative path under the new package,
with `autograder` renamed in its imports.

Only top-level names are followed. Code that reaches the grader dynamically (importlib, strings)
is not; the release test runs the package without the repository to catch it.
"""
from __future__ import annotations

import ast
import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path

SOURCE_PACKAGE = "autograder"
NEVER = ("autograder.oracle",)   # trusted references: no release may carry their code
_RENAME = re.compile(rf"\b{SOURCE_PACKAGE}(?=[./]|\s+import\b)")


_ROOT = Path(importlib.util.find_spec(SOURCE_PACKAGE).origin).parents[1]


class BundleError(Exception):
    """A requested definition cannot be copied (missing, or it would carry forbidden code)."""


@dataclass
class _Statement:
    node: ast.stmt
    defines: set[str]
    uses: set[str]


def _stored(target: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}


def _bound_names(node: ast.stmt) -> set[str]:
    """The module-level names a top-level statement binds (not those local to a comprehension)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {a.asname or a.name.split(".")[0] for a in node.names}
    if isinstance(node, ast.Assign):
        return set().union(*map(_stored, node.targets))
    if isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        return _stored(node.target)
    names = set()
    if isinstance(node, (ast.For, ast.AsyncFor)):
        names |= _stored(node.target)
    if isinstance(node, (ast.With, ast.AsyncWith)):
        names |= set().union(set(), *(_stored(i.optional_vars) for i in node.items if i.optional_vars))
    for handler in getattr(node, "handlers", []):
        names |= {handler.name} if handler.name else set()
    for block in ("body", "orelse", "finalbody"):
        for child in getattr(node, block, []):
            names |= _bound_names(child)
    for handler in getattr(node, "handlers", []):
        for child in handler.body:
            names |= _bound_names(child)
    return names


def _nested_imports(node: ast.stmt) -> list[ast.ImportFrom]:
    """`from ... import` inside functions: followed too, or the release would fail when called."""
    return [sub for sub in ast.walk(node) if isinstance(sub, ast.ImportFrom) and sub is not node]


def _used_names(node: ast.stmt) -> set[str]:
    return {sub.id for sub in ast.walk(node) if isinstance(sub, ast.Name)}


def is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


class _Module:
    def __init__(self, name: str):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise BundleError(f"no module {name}")
        self.name = name
        self.path = Path(spec.origin)
        self.is_package = self.path.name == "__init__.py"
        self.text = self.path.read_text(encoding="utf-8")
        self.lines = self.text.splitlines(keepends=True)
        tree = ast.parse(self.text, str(self.path))
        body = tree.body[1:] if ast.get_docstring(tree) is not None else tree.body
        self.statements = [_Statement(n, _bound_names(n), _used_names(n)) for n in body]
        self.kept: set[int] = set()
        self.needed: set[str] = set()
        self.whole = False

    def defining(self, name: str) -> list[int]:
        return [i for i, s in enumerate(self.statements) if name in s.defines]

    def absolute(self, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = self.name.split(".") if self.is_package else self.name.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))


@dataclass
class Bundle:
    """Definitions gathered from `autograder.*`, written out as the package `package`."""

    package: str
    modules: dict[str, _Module] = field(default_factory=dict)

    def need(self, module: str, names: list[str] | None = None) -> None:
        """Keep `names` of `module` (the whole module when None) and what they use."""
        if module.startswith(NEVER):
            raise BundleError(f"{module} must never be released (it is the trusted reference)")
        if not (module == SOURCE_PACKAGE or module.startswith(SOURCE_PACKAGE + ".")):
            raise BundleError(f"{module} is not part of {SOURCE_PACKAGE}")
        mod = self.modules.get(module) or self.modules.setdefault(module, _Module(module))
        queue = list(names or [])
        if names is None:
            if mod.whole:
                return
            mod.whole = True
            mod.kept.update(range(len(mod.statements)))
            for statement in mod.statements:   # a top-level call defines nothing but uses names
                queue += statement.defines or statement.uses
        while queue:
            name = queue.pop()
            if name in mod.needed:
                continue
            where = mod.defining(name)
            if not where:
                if names is None:
                    continue                    # a builtin used at top level
                raise BundleError(f"{module} defines no {name}")
            mod.needed.add(name)
            for index in where:
                mod.kept.add(index)
                statement = mod.statements[index]
                if isinstance(statement.node, ast.ImportFrom):
                    self._follow(mod, statement.node, name)
                for nested in _nested_imports(statement.node):
                    for alias in nested.names:
                        self._follow(mod, nested, alias.asname or alias.name)
                queue += [u for u in statement.uses if u not in mod.needed and mod.defining(u)]

    def _follow(self, mod: _Module, node: ast.ImportFrom, bound: str) -> None:
        source = mod.absolute(node)
        if not (source == SOURCE_PACKAGE or source.startswith(SOURCE_PACKAGE + ".")):
            return
        for alias in node.names:
            if (alias.asname or alias.name) != bound:
                continue
            submodule = f"{source}.{alias.name}"
            if is_module(submodule):
                self.need(submodule)
            else:
                self.need(source, [alias.name])

    def sources(self) -> dict[str, str]:
        """Relative path in the new package -> file text."""
        out: dict[str, str] = {}
        for name, mod in sorted(self.modules.items()):
            parts = name.split(".")[1:]
            relative = "/".join(parts + ["__init__.py"] if mod.is_package else parts[:-1] + [parts[-1] + ".py"])
            out[relative or "__init__.py"] = self._render(mod)
            for depth in range(1, len(parts)):   # every folder on the way is a package
                out.setdefault("/".join(parts[:depth]) + "/__init__.py", '"""Released copy (generated)."""\n')
        return out

    def _render(self, mod: _Module) -> str:
        origin = mod.path.relative_to(_ROOT)
        head = [f'"""Released copy of what the public checks need from {origin} (generated: do not edit)."""\n']
        if "from __future__ import annotations" in mod.text:
            head.append("from __future__ import annotations\n")
        chunks: list[str] = []
        for index in sorted(mod.kept):
            node = mod.statements[index].node
            if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                continue
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                chunks.append(self._import(mod, node))
                continue
            first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            chunks.append("".join(mod.lines[first - 1: node.end_lineno]))
        body = "".join(("\n\n" if c.startswith(("def ", "class ", "@")) else "\n") + c.rstrip("\n") + "\n"
                       for c in chunks)
        return "".join(head) + _RENAME.sub(self.package, body)

    def _import(self, mod: _Module, node: ast.Import | ast.ImportFrom) -> str:
        aliases = [a for a in node.names if (a.asname or a.name.split(".")[0]) in mod.needed]
        shown = ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in aliases)
        if isinstance(node, ast.Import):
            if any(a.name.split(".")[0] == SOURCE_PACKAGE for a in aliases):
                raise BundleError(f"{mod.name}: `import {SOURCE_PACKAGE}...` cannot be released; use from-imports")
            return f"import {shown}"
        return f"from {_RENAME.sub(self.package, mod.absolute(node))} import {shown}"
