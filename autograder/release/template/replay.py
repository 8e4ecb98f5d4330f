"""Stored expected values: recorded from the oracle at release time, replayed in a student's kernel.

At release time each public check runs against the reference solutions with a `RecordingOracle`,
which stores what every oracle call was given (as a digest) and what it returned. The released
check runs with a `ReplayOracle` instead: it answers a call only when its inputs are the ones
recorded, so a released check compares with exactly what the grader's oracle said, without the
oracle's code. This module is shipped as is; it needs only NumPy.
"""
from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path

import numpy as np

_SCALARS = (bool, int, float, str)


class NotStored(LookupError):
    """An oracle call whose inputs were not recorded at release time."""


def call_key(name: str, args: tuple, kwargs: dict) -> str:
    """A digest of a call: the function's name and the exact inputs (dtype, shape and bytes)."""
    digest = hashlib.sha256(name.encode())

    def feed(value) -> None:
        if value is None:
            digest.update(b"N;")
        elif isinstance(value, (np.ndarray, np.generic)):
            array = np.ascontiguousarray(value)
            digest.update(f"A{array.dtype.str}{array.shape};".encode())
            digest.update(array.tobytes())
        elif isinstance(value, _SCALARS):
            digest.update(f"{type(value).__name__}:{value!r};".encode())
        elif isinstance(value, (tuple, list)):
            digest.update(f"{type(value).__name__}[{len(value)}](".encode())
            for item in value:
                feed(item)
            digest.update(b")")
        elif isinstance(value, dict):
            digest.update(f"dict[{len(value)}](".encode())
            for key in sorted(value):
                feed(str(key))
                feed(value[key])
            digest.update(b")")
        else:
            raise TypeError(f"cannot store an oracle input of type {type(value).__name__}")

    feed(tuple(args))
    feed(dict(kwargs))
    return digest.hexdigest()


class Store:
    """Oracle results by call key: JSON for the structure, `.npz` (no pickles) for the arrays."""

    def __init__(self, calls: dict | None = None, arrays: dict | None = None):
        self.calls: dict[str, dict] = calls or {}
        self.arrays: dict[str, np.ndarray] = arrays or {}

    def encode(self, value):
        if value is None:
            return {"none": True}
        if isinstance(value, _SCALARS):
            return {"v": value}
        if isinstance(value, (np.ndarray, np.generic)):
            key = f"a{len(self.arrays)}"
            self.arrays[key] = np.array(value)
            return {"a": key, "scalar": isinstance(value, np.generic)}
        if isinstance(value, (tuple, list)):
            return {"seq": [self.encode(v) for v in value], "list": isinstance(value, list)}
        if isinstance(value, dict):
            return {"map": {str(k): self.encode(v) for k, v in value.items()}}
        raise TypeError(f"cannot store an oracle result of type {type(value).__name__}")

    def decode(self, spec):
        if "none" in spec:
            return None
        if "v" in spec:
            return spec["v"]
        if "a" in spec:
            array = np.array(self.arrays[spec["a"]], copy=True)   # a check may modify what it gets
            return array[()] if spec["scalar"] else array
        if "seq" in spec:
            items = [self.decode(v) for v in spec["seq"]]
            return items if spec["list"] else tuple(items)
        return {k: self.decode(v) for k, v in spec["map"].items()}

    def put(self, key: str, name: str, value) -> None:
        if key not in self.calls:
            self.calls[key] = {"name": name, "result": self.encode(value)}

    def get(self, key: str):
        return self.decode(self.calls[key]["result"])

    def save(self, folder: Path, stem: str, manifest: dict) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{stem}.npz", "wb") as file:
            np.savez_compressed(file, **self.arrays)
        text = json.dumps({**manifest, "calls": self.calls}, indent=1, sort_keys=True)
        (folder / f"{stem}.json").write_text(text + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: Path, stem: str) -> tuple["Store", dict]:
        manifest = json.loads((folder / f"{stem}.json").read_text(encoding="utf-8"))
        with np.load(folder / f"{stem}.npz", allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        return cls(manifest.pop("calls"), arrays), manifest


class RecordingOracle:
    """The real oracle, with every call's inputs and result written to a `Store` (release time)."""

    def __init__(self, oracle, store: Store):
        self._oracle, self._store = oracle, store
        self.calls = 0   # oracle calls made through it: a check that makes none needs no replay

    def __getattr__(self, name: str):
        target = getattr(self._oracle, name)
        if not callable(target):
            raise TypeError(f"a public check reads oracle.{name}, which is not a function: only calls are stored")

        def recorded(*args, **kwargs):
            key = call_key(name, args, kwargs)     # before the call: inputs as the check gave them
            self.calls += 1
            if key in self._store.calls:
                # the same inputs again (the other framework's reference, a check calling twice):
                # the stored answer, as the released check will get it; the oracle is not run again
                # (chapter 05's oracle trains a model per call)
                return self._store.get(key)
            result = target(*args, **kwargs)
            self._store.put(key, name, result)
            return result

        return recorded


class ReplayOracle:
    """Answers the oracle calls recorded at release time, and only those (student's kernel)."""

    def __init__(self, store: Store, numpy_then: str):
        self._store, self._numpy_then = store, numpy_then

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)

        def replayed(*args, **kwargs):
            key = call_key(name, args, kwargs)
            if key not in self._store.calls:
                raise NotStored(
                    f"the expected result of {name} for these inputs was not stored when the exercises "
                    f"were released (NumPy {np.__version__} here, {self._numpy_then} then: another "
                    "version may draw other random inputs). Run `python -m autograder check` on the "
                    "notebook instead, or ask your instructor.")
            return self._store.get(key)

        return replayed


def run_check(func, fixtures: dict) -> Exception | None:
    """Call one check with the fixtures its parameters name; the exception it raised, or None."""
    names = list(inspect.signature(func).parameters)
    unknown = [n for n in names if n not in fixtures]
    if unknown:
        raise TypeError(f"{func.__name__} asks for fixtures {unknown}; a released check may use "
                        f"{sorted(fixtures)}")
    try:
        func(**{n: fixtures[n] for n in names})
    except Exception as exc:   # a failed check; KeyboardInterrupt still stops the cell
        return exc
    return None
