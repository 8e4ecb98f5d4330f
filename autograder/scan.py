"""Static half of the forbidden built-in detection: read the submission's source, trusted side.

The sandbox's tracer sees calls as they happen; this sees references in the code, so hiding from
the tracer does not help. A reference inside an exercise's own `def`/`class` is charged to that
exercise. One elsewhere (a helper) is only charged through the tracer, when an exercise calls it.
"""
from __future__ import annotations

import ast

# attribute or imported name -> how the feedback names it
FORBIDDEN = {
    "scaled_dot_product_attention": "torch.nn.functional.scaled_dot_product_attention",
    "MultiheadAttention": "torch.nn.MultiheadAttention",
    "TransformerEncoderLayer": "torch.nn.TransformerEncoderLayer",
    "MultiHeadAttention": "keras.layers.MultiHeadAttention",
    "Attention": "keras.layers.Attention",
    "AdditiveAttention": "keras.layers.AdditiveAttention",
    "dot_product_attention": "keras.ops.dot_product_attention",
}
FRAMEWORK_MODULES = ("torch", "tensorflow", "keras")


def _imported_aliases(tree: ast.AST) -> dict[str, str]:
    """`from torch.nn.functional import scaled_dot_product_attention as sdpa` -> {"sdpa": ...}."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in FRAMEWORK_MODULES:
            for alias in node.names:
                if alias.name in FORBIDDEN:
                    aliases[alias.asname or alias.name] = FORBIDDEN[alias.name]
    return aliases


def _uses(node: ast.AST, aliases: dict[str, str]) -> set[str]:
    found = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute) and sub.attr in FORBIDDEN:
            found.add(FORBIDDEN[sub.attr])
        elif isinstance(sub, ast.Name) and sub.id in aliases:
            found.add(aliases[sub.id])
        elif isinstance(sub, ast.ImportFrom) and (sub.module or "").split(".")[0] in FRAMEWORK_MODULES:
            found.update(FORBIDDEN[a.name] for a in sub.names if a.name in FORBIDDEN)
    return found


def forbidden_uses(cells: list[tuple[int, str]], exercises: list[str]) -> dict[str, list[str]]:
    """exercise -> forbidden built-ins referenced inside its own definition."""
    trees = []
    for _, source in cells:
        try:
            trees.append(ast.parse(source))
        except SyntaxError:
            continue   # the run reports it; magics are stripped there
    aliases: dict[str, str] = {}
    for tree in trees:
        aliases.update(_imported_aliases(tree))
    found: dict[str, set[str]] = {}
    for tree in trees:
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in exercises:
                # The exercise's own name is not a forbidden reference (its def shadows the built-in).
                local = {k: v for k, v in aliases.items() if k != node.name}
                uses = _uses(node, local)
                if uses:
                    found.setdefault(node.name, set()).update(uses)
    return {k: sorted(v) for k, v in found.items()}
