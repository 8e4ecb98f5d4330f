"""Breach 6's attack, rebuilt: a notebook cell whose functions compute nothing and look their inputs
up in a release's stored expected values (`course_checks/data/`), as a student holding the handout
could. The cell is self-contained (the release's own `replay.py`, the store as base64), so that it
runs wherever a submission runs: in the sandbox, or exec'd in a namespace. Used by
tests/test_hardening_inputs.py."""
from __future__ import annotations

import base64
import inspect
import json
from pathlib import Path

from autograder.release.template import replay

_LOOKUP = '''
def _plain(value):
    if isinstance(value, (tuple, list)):
        return tuple(_plain(v) for v in value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


def _variants(args):
    """The ways the check may have written these inputs: ints as int64 (TensorFlow hands int32),
    sequences as tuples or lists."""
    def widen(value):
        if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.integer):
            return value.astype(np.int64)
        if isinstance(value, tuple):
            return tuple(widen(v) for v in value)
        return value
    for form in (args, tuple(widen(a) for a in args)):
        yield form
        yield tuple(list(a) if isinstance(a, tuple) else a for a in form)


def _framework(value):
    if isinstance(value, np.ndarray):
        if FRAMEWORK == "torch":
            import torch
            return torch.from_numpy(np.array(value))
        import tensorflow as tf
        return tf.constant(value)
    if isinstance(value, (tuple, list)):
        return tuple(_framework(v) for v in value)
    if isinstance(value, dict):
        return {k: _framework(v) for k, v in value.items()}
    return value


def _looking_up(name):
    def looked_up(*args, **kwargs):
        plain = tuple(_plain(a) for a in args)
        named = {k: _plain(v) for k, v in kwargs.items()}
        for form in _variants(plain):
            key = call_key(name, form, named)
            if key in _STORE.calls:
                return _framework(_STORE.get(key))
        raise NotImplementedError(name)
    return looked_up


import io as _io
_CALLS = json.loads(base64.b64decode(CALLS).decode())
with np.load(_io.BytesIO(base64.b64decode(ARRAYS)), allow_pickle=False) as _data:
    _STORE = Store(_CALLS, {k: _data[k] for k in _data.files})
for _name in sorted({entry["name"] for entry in _CALLS.values()}):
    globals()[_name] = _looking_up(_name)
'''


def attack_source(release_folder: Path, slug: str, framework: str) -> str:
    """A code cell defining every function the release stored results for, answering from the
    store and nothing else."""
    data = release_folder / slug / "course_checks" / "data"
    calls = json.loads((data / f"{slug}.json").read_text(encoding="utf-8"))["calls"]
    arrays = (data / f"{slug}.npz").read_bytes()
    module = inspect.getsource(replay).replace("from __future__ import annotations\n", "")
    return "\n".join([
        "import base64", module,
        f"FRAMEWORK = {framework!r}",
        f"CALLS = {base64.b64encode(json.dumps(calls).encode()).decode()!r}",
        f"ARRAYS = {base64.b64encode(arrays).decode()!r}",
        _LOOKUP])


def stored_names(release_folder: Path, slug: str) -> set[str]:
    data = release_folder / slug / "course_checks" / "data" / f"{slug}.json"
    return {entry["name"] for entry in json.loads(data.read_text(encoding="utf-8"))["calls"].values()}
