"""Static half of the forbidden built-in detection: read the whole submission's source, trusted side.

The sandbox's tracer sees calls as they happen, but lives in the student's process; this sees
references in the code, where hiding from the tracer does not help. It works on the notebook as
one module (the cells share a namespace):

1. aliases: `import torch.nn.functional as F`, `from torch.nn import functional`, `sdpa =
   F.scaled_dot_product_attention`, `importlib.import_module("torch.nn." + "functional")`,
   `getattr(F, "scaled_dot_" + "product_attention")`, `vars(F)[...]`: names and expressions are
   resolved to dotted paths, folding constant strings (concatenation, f-strings, join, reversal);
2. units: each module-level def, class, and assigned name, with the built-ins it names and the
   module-level names it uses (decorators, default arguments, lambdas and class bodies included);
3. an exercise is charged with every built-in named by a unit it can reach from its own def.

Where the source leaves the grader unsure (a name computed at run time on a framework module,
`torch.ops` or `torch._C`, reaching behind a function with `__closure__` or `gc`, the grader's own
modules, `exec`), it writes a note for the instructor: the student is not charged for it.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field

from autograder.sandbox.tracer import family_of, forbidden
from autograder.sandbox.worker import _strip_magics

MAX_NOTES = 30
# attributes that reach behind a function, e.g. past the tracer's wrapper to the original
INTROSPECTION = {"__wrapped__", "__closure__", "cell_contents", "__globals__", "__code__", "__func__",
                 "__self__", "__defaults__", "__kwdefaults__", "__builtins__"}
# stdlib entry points with the same power
RISKY_PATHS = {"gc.get_referents": "gc.get_referents", "gc.get_objects": "gc.get_objects",
               "gc.get_referrers": "gc.get_referrers", "sys.modules": "sys.modules",
               "sys._getframe": "sys._getframe", "inspect.unwrap": "inspect.unwrap",
               "inspect.getclosurevars": "inspect.getclosurevars", "ctypes": "ctypes", "builtins": "builtins",
               "inspect.getmembers": "inspect.getmembers", "inspect.getmembers_static": "inspect.getmembers_static",
               "inspect.getattr_static": "inspect.getattr_static", "operator.attrgetter": "operator.attrgetter",
               "operator.methodcaller": "operator.methodcaller"}
# calls that read an attribute by a name given as a string: `getattr(t, "requires_grad_")` reads
# `requires_grad_` as surely as `t.requires_grad_` does (argument index of the name)
NAMED_READS = {"getattr": 1, "hasattr": 1, "inspect.getattr_static": 1, "operator.attrgetter": 0,
               "operator.methodcaller": 0}
RUNTIME_CODE = {"exec", "eval", "compile", "globals", "__import__"}
IMPORTERS = {"importlib.import_module", "__import__"}
# Automatic differentiation, charged only to the exercises a chapter's record lists in `no_autograd`
# (an exercise that asks for gradients by hand): module paths (and everything under them), and
# attribute names, whatever object they are read from (`loss.backward()`, `x.requires_grad_()`).
AUTOGRAD_PATHS = {"torch.autograd": "torch.autograd", "torch.func": "torch.func", "functorch": "functorch",
                  "tensorflow.GradientTape": "tf.GradientTape", "tensorflow.gradients": "tf.gradients",
                  "tensorflow.autodiff": "tf.autodiff", "tensorflow.custom_gradient": "tf.custom_gradient"}
AUTOGRAD_ATTRIBUTES = {"backward": "Tensor.backward", "requires_grad": "requires_grad",
                       "requires_grad_": "requires_grad", "GradientTape": "tf.GradientTape",
                       "vjp": "torch.func.vjp"}


# where a name counts for a record's `own_job`: imported from these, or read as any attribute
FRAMEWORK_ROOTS = {"torch", "tensorflow", "keras", "numpy", "scipy", "jax", "functorch"}


def autograd_path(path: str) -> str | None:
    """The feedback's name for automatic differentiation reached through `path`, or None."""
    for prefix, shown in AUTOGRAD_PATHS.items():
        if path == prefix or path.startswith(prefix + "."):
            return shown
    return None


@dataclass
class Findings:
    charged: dict[str, list[str]] = field(default_factory=dict)   # exercise -> built-ins it reaches
    notes: list[str] = field(default_factory=list)                 # for the instructor only


@dataclass
class _Unit:
    """A module-level binding: a def, a class, or an assigned value."""

    name: str
    node: ast.AST
    cell: int
    uses: set[str] = field(default_factory=set)        # module-level names it loads
    builtins: set[str] = field(default_factory=set)    # forbidden built-ins it names
    autograd: set[str] = field(default_factory=set)    # automatic differentiation it uses
    names: set[str] = field(default_factory=set)       # attributes it reads, names it imports from a framework
    doubts: list[tuple[int, str]] = field(default_factory=list)   # (line, what) the scan cannot settle


# --------------------------------------------------------------------------- constant strings


def fold(node: ast.AST) -> str | None:
    """The string an expression always evaluates to, when it is built from constants only."""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = fold(node.left), fold(node.right)
        return left + right if left is not None and right is not None else None
    if isinstance(node, ast.JoinedStr):
        parts = [fold(v.value if isinstance(v, ast.FormattedValue) else v) for v in node.values]
        return "".join(parts) if all(p is not None for p in parts) else None
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice):
        text = fold(node.value)
        bounds = [None if b is None else b.value if isinstance(b, ast.Constant) else ... for b in
                  (node.slice.lower, node.slice.upper, node.slice.step)]
        if text is None or ... in bounds or not all(b is None or isinstance(b, int) for b in bounds):
            return None
        return text[slice(*bounds)]
    if isinstance(node, ast.Call) and not node.keywords:
        func = node.func
        if isinstance(func, ast.Name) and func.id in ("str", "reversed") and len(node.args) == 1:
            text = fold(node.args[0])
            return text if text is None or func.id == "str" else text[::-1]
        if isinstance(func, ast.Attribute) and func.attr == "join" and len(node.args) == 1:
            sep, arg = fold(func.value), node.args[0]
            items = arg.elts if isinstance(arg, (ast.List, ast.Tuple)) else [arg]
            parts = [fold(i) for i in items]
            if sep is None or any(p is None for p in parts):
                return None
            return sep.join(parts) if isinstance(arg, (ast.List, ast.Tuple)) else sep.join(parts[0])
    return None


# --------------------------------------------------------------------------- resolving names


def _dotted(node: ast.AST) -> str | None:
    """`a.b.c` as written (no alias resolution), for stdlib paths like `gc.get_referents`."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def resolve(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """The dotted path an expression stands for (`F.softmax` -> `torch.nn.functional.softmax`)."""
    if isinstance(node, ast.Name):
        return aliases.get(node.id)
    if isinstance(node, ast.Attribute):
        base = resolve(node.value, aliases)
        return f"{base}.{node.attr}" if base else None
    if isinstance(node, ast.Call) and node.args:
        func = resolve(node.func, aliases) or _dotted(node.func)
        if func == "getattr" and len(node.args) >= 2:
            base, name = resolve(node.args[0], aliases), fold(node.args[1])
            return f"{base}.{name}" if base and name else None
        if func in IMPORTERS or (func or "").endswith("importlib.import_module"):
            return fold(node.args[0])
        if func == "vars" and len(node.args) == 1:
            return resolve(node.args[0], aliases)
    if isinstance(node, ast.Subscript):   # vars(F)["name"], F.__dict__["name"]
        base = node.value
        if isinstance(base, ast.Attribute) and base.attr == "__dict__":
            base = base.value
        elif not (isinstance(base, ast.Call) and _dotted(base.func) == "vars"):
            return None
        owner, key = resolve(base, aliases), fold(node.slice)
        return f"{owner}.{key}" if owner and key else None
    return None


def forbidden_path(path: str) -> str | None:
    """The built-in a dotted path names, if any (any component: `F.scaled_..._attention.__closure__`)."""
    family = family_of(path)
    parts = path.split(".")
    for i, part in enumerate(parts[1:], start=1):
        shown = forbidden(family, part, ".".join(parts[:i + 1]))
        if shown:
            return shown
    return None


def _import_aliases(node: ast.AST) -> dict[str, str]:
    out = {}
    if isinstance(node, ast.Import):
        for a in node.names:
            out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
        for a in node.names:
            if a.name != "*":
                out[a.asname or a.name] = f"{node.module}.{a.name}"
    return out


def _imported_paths(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and not node.level:
        return [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return []


# --------------------------------------------------------------------------- scopes


def _local_names(fn: ast.AST) -> set[str]:
    """Names local to a function (arguments, assignments, imports, nested defs), minus `global`s."""
    local, declared_global = set(), set()
    for sub in ast.walk(fn):
        if isinstance(sub, ast.arg):
            local.add(sub.arg)
        elif isinstance(sub, ast.Name) and isinstance(sub.ctx, (ast.Store, ast.Del)):
            local.add(sub.id)
        elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and sub is not fn:
            local.add(sub.name)
        elif isinstance(sub, (ast.Import, ast.ImportFrom)):
            local.update(_import_aliases(sub))
        elif isinstance(sub, ast.Global):
            declared_global.update(sub.names)
    return local - declared_global


def _uses(node: ast.AST) -> set[str]:
    loads = {sub.id for sub in ast.walk(node) if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load)}
    functions = [sub for sub in ast.walk(node) if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))]
    local = set().union(*(_local_names(f) for f in functions)) if functions else set()
    return loads - local


# --------------------------------------------------------------------------- one unit


def _examine(unit: _Unit, aliases: dict[str, str]) -> None:
    """Fill in the unit's built-ins and doubts, reading its whole subtree."""
    local = dict(aliases)
    for sub in ast.walk(unit.node):   # imports inside a function count there too
        local.update(_import_aliases(sub))
    unit.uses = _uses(unit.node)
    for sub in ast.walk(unit.node):
        line = getattr(sub, "lineno", 0)
        read = sub.attr if isinstance(sub, ast.Attribute) else _named_read(sub, local)
        if read:
            unit.names.add(read)
            if read in AUTOGRAD_ATTRIBUTES:
                unit.autograd.add(AUTOGRAD_ATTRIBUTES[read])
        for path in _imported_paths(sub):
            if path.split(".")[0] in FRAMEWORK_ROOTS:   # `from torch.special import softmax`
                unit.names.add(path.rsplit(".", 1)[-1])
            if autograd_path(path):
                unit.autograd.add(autograd_path(path))
            if forbidden_path(path):
                unit.builtins.add(forbidden_path(path))
            if path.split(".")[0] == "autograder" and path not in ("autograder", "autograder.check"):
                unit.doubts.append((line, f"imports the grader's own code ({path})"))
            if path.split(".")[0] in ("ctypes", "gc"):
                unit.doubts.append((line, f"imports {path}"))
        if isinstance(sub, (ast.Attribute, ast.Subscript, ast.Call, ast.Name)):
            path = resolve(sub, local)
            if path and path.split(".")[0] in FRAMEWORK_ROOTS:   # `sm` after `import ... softmax as sm`
                unit.names.add(path.rsplit(".", 1)[-1])
            if path and autograd_path(path):
                unit.autograd.add(autograd_path(path))
            if path:
                shown = forbidden_path(path)
                if shown:
                    unit.builtins.add(shown)
                elif path.startswith(("torch.ops", "torch._C", "torch._ops", "torch.library")):
                    unit.doubts.append((line, f"{'.'.join(path.split('.')[:2])} used ({path}): some of its "
                                              "entry points run kernels the tracer cannot see"))
            _doubts_of(sub, local, unit.doubts)


def _named_read(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """The attribute name a `getattr(obj, "name")`-like call reads, when it is a constant string."""
    if not isinstance(node, ast.Call):
        return None
    func = resolve(node.func, aliases) or _dotted(node.func) or ""
    at = NAMED_READS.get(func)
    if at is None or len(node.args) <= at:
        return None
    name = fold(node.args[at])
    return name.rsplit(".", 1)[-1] if name else None   # attrgetter("a.b") reads b last


def _doubts_of(node: ast.AST, aliases: dict[str, str], doubts: list) -> None:
    line = getattr(node, "lineno", 0)
    if isinstance(node, ast.Attribute):
        written = _dotted(node) or ""
        if node.attr in INTROSPECTION:
            doubts.append((line, f"reaches behind a function with {node.attr}"))
        elif written in RISKY_PATHS:
            doubts.append((line, f"uses {RISKY_PATHS[written]}"))
        base = resolve(node.value, aliases)
        if node.attr == "__dict__" and base and family_of(base):
            doubts.append((line, f"dynamic attribute access on {base} (its __dict__)"))
        if isinstance(node.ctx, ast.Store) and base and family_of(base):
            doubts.append((line, f"changes {base} (assigns {node.attr})"))
    elif isinstance(node, ast.Call):
        func = resolve(node.func, aliases) or _dotted(node.func) or ""
        first = resolve(node.args[0], aliases) if node.args else None
        if func in ("getattr", "setattr", "delattr", "hasattr") and len(node.args) >= 2:
            name = fold(node.args[1])
            if name in INTROSPECTION:
                doubts.append((line, f"reaches behind a function with {name}"))
            if name is None:   # on any object: `getattr(t, name)` may be `t.backward`, `x.logsumexp`
                on = first if first and family_of(first) else "an object"
                doubts.append((line, f"dynamic attribute access on {on} ({func} with a name computed at run time)"))
            elif first and family_of(first) and func in ("setattr", "delattr"):
                doubts.append((line, f"changes {first} ({func} {name})"))
        elif (func in IMPORTERS or func.endswith("importlib.import_module")) and node.args and fold(node.args[0]) is None:
            doubts.append((line, "dynamic import (a module name computed at run time)"))
        elif func in ("vars", "dir") and first and family_of(first):
            doubts.append((line, f"dynamic attribute access on {first} ({func})"))
        elif func in RISKY_PATHS and func.startswith(("inspect.", "operator.")):
            doubts.append((line, f"uses {func}"))
        elif func in RUNTIME_CODE:
            doubts.append((line, f"runs {func}(), which the scan cannot read"))


# --------------------------------------------------------------------------- the whole submission


def _module_statements(tree: ast.Module):
    """Module-level statements in order, looking into if/for/while/try/with bodies."""
    todo = list(reversed(tree.body))
    while todo:
        stmt = todo.pop()
        yield stmt
        if isinstance(stmt, (ast.If, ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith, ast.Try)):
            inner = [*stmt.body, *getattr(stmt, "orelse", []), *getattr(stmt, "finalbody", [])]
            for handler in getattr(stmt, "handlers", []):
                inner.extend(handler.body)
            todo.extend(reversed(inner))


def _bindings(stmt: ast.AST) -> list[tuple[str, ast.AST]]:
    """(name, unit node) for what a module-level statement binds."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [(stmt.name, stmt)]
    if isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        names = [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
        return [(name, stmt) for name in names]
    return []


def _global_assignments(tree: ast.AST) -> list[tuple[str, ast.AST]]:
    """`global sdpa; sdpa = ...` inside a function binds a module-level name too."""
    out = []
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            declared = {n for g in ast.walk(fn) if isinstance(g, ast.Global) for n in g.names}
            for sub in ast.walk(fn):
                for name, node in _bindings(sub) if declared and isinstance(sub, (ast.Assign, ast.AnnAssign)) else []:
                    if name in declared:
                        out.append((name, node))
    return out


def _parse(cells: list[tuple[int, str]], notes: list[str]) -> list[tuple[int, ast.Module]]:
    trees = []
    for index, source in cells:
        try:
            trees.append((index, ast.parse(_strip_magics(source))))
        except SyntaxError:
            continue   # it does not run either; the run reports it
        except (RecursionError, MemoryError, ValueError):
            notes.append(f"code cell {index}: too deeply nested to scan for built-ins")
    return trees


def scan(cells: list[tuple[int, str]], exercises: list[str], no_autograd=(), own_job=()) -> Findings:
    """What each exercise reaches: the forbidden built-ins, automatic differentiation for the
    exercises in `no_autograd`, and for those in `own_job` ((exercise, names) pairs: the chapter
    record's) any framework function of those names, which would do the exercise's whole job."""
    own = {exercise: set(names) for exercise, names in own_job}
    findings = Findings()
    trees = _parse(cells, findings.notes)
    aliases: dict[str, str] = {}
    units: dict[str, list[_Unit]] = {}
    loose: list[_Unit] = []   # statements that bind nothing: examined for doubts only
    for index, tree in trees:
        for stmt in _module_statements(tree):
            aliases.update(_import_aliases(stmt))
            bound = _bindings(stmt)
            for name, node in bound:
                # the last binding in notebook order is the one a function sees when graded
                value = getattr(node, "value", None)
                path = resolve(value, aliases) if value is not None and not isinstance(node, ast.AugAssign) else None
                if path:
                    aliases[name] = path
                elif name in aliases and not _import_aliases(stmt):
                    del aliases[name]
                units.setdefault(name, []).append(_Unit(name, node, index))
            if not bound and not isinstance(stmt, (ast.If, ast.For, ast.AsyncFor, ast.While, ast.With,
                                                   ast.AsyncWith, ast.Try)):
                loose.append(_Unit("", stmt, index))
        for name, node in _global_assignments(tree):
            units.setdefault(name, []).append(_Unit(name, node, index))
    for unit in [u for group in units.values() for u in group] + loose:
        _examine(unit, aliases)
    reached_by: dict[int, list[str]] = {}
    for exercise in exercises:
        seen, todo = set(), [exercise]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            for unit in units.get(name, []):
                reached_by.setdefault(id(unit), []).append(exercise)
                todo.extend(unit.uses)
                if unit.builtins:
                    findings.charged.setdefault(exercise, set()).update(unit.builtins)
                if unit.autograd and exercise in no_autograd:
                    findings.charged.setdefault(exercise, set()).update(unit.autograd)
                if unit.names & own.get(exercise, set()):
                    findings.charged.setdefault(exercise, set()).update(unit.names & own[exercise])
    findings.charged = {k: sorted(v) for k, v in findings.charged.items()}
    for unit in [u for group in units.values() for u in group] + loose:
        by = reached_by.get(id(unit), [])
        for line, what in unit.doubts:
            where = f" (reached from {', '.join(sorted(set(by)))})" if by else ""
            note = f"code cell {unit.cell}, line {line}: {what}{where}"
            if note not in findings.notes:
                findings.notes.append(note)
    if len(findings.notes) > MAX_NOTES:
        findings.notes[MAX_NOTES:] = [f"... and {len(findings.notes) - MAX_NOTES} more"]
    return findings
