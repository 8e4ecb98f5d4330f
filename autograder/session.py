"""Running one submission in a sandboxed worker (workers.py): its cells, then calls on demand.

A `Runner` runs one submission: its cells in order in a fresh child, then calls on demand. When
the child dies or hangs, the runner starts a new child, replays the cells that had run, and the
failure costs only the cell or call that caused it. A call's reply is plain data, checked before
use (`_read_reply`): a `Reply`, or a `Handle` to an object that stays on the student's side.
"""
from __future__ import annotations

import builtins as builtins_module
import socket
import time
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from autograder import untrusted
from autograder.sandbox import convert, protocol, tracer
from autograder.workers import Limits, Sandbox


class Died(Exception):
    """The submission's process died or was killed; the message says how."""


@dataclass
class CellOutcome:
    index: int
    ok: bool
    error: str = ""


@dataclass
class Reply:
    """What came back from one call, already checked to be plain data."""

    status: str                       # ok | missing | not_implemented | error | died
    value: object = None              # ndarray, tuple of ndarrays/scalars (or of such tuples), or a scalar
    types: list = field(default_factory=list)   # one name per item; a tuple of names for a tuple item
    error: str = ""
    builtins: list[str] = field(default_factory=list)
    peak_bytes: int = 0               # the call's peak memory rise: the trusted side's measure (workers.CallMeter)
    changed: list[str] = field(default_factory=list)   # keys of the arguments the call changed in place
    raised: str = ""                  # status "error": the built-in exception class raised ("ValueError")


class Runner:
    """Runs one submission's cells, then its functions; survives the child's death.

    `limits`: the submission's (its chapter's, grade.py); the sandbox's by default. A call may
    bring its own time limit (a check's `seconds`)."""

    def __init__(self, sandbox: Sandbox, cells: list[tuple[int, str]], deadline: float | None = None,
                 limits: Limits | None = None):
        self.sandbox = sandbox
        self.cells = cells
        self.limits = limits or sandbox.limits
        self.deadline = deadline or time.monotonic() + self.limits.submission_seconds
        self.sock: socket.socket | None = None
        self.outcomes: list[CellOutcome] = []
        self.gave_up = ""
        self.timeouts: dict[str, list[float]] = {}   # function -> the limits its calls ran past
        self.reported: set[str] = set()      # forbidden built-ins the sandbox reported since the last call

    # -- life cycle
    def _open(self) -> None:
        self.sock = self.sandbox.open_session({
            "max_file_bytes": self.limits.max_file_bytes,
            "max_processes": self.limits.max_processes,
            "max_memory_bytes": self.limits.submission_memory_bytes,
            "remove_builtins": list(self.limits.removed_builtins),
        })

    def _died(self, why: str, grace: bool) -> str:
        how = self.sandbox.end_session(grace)
        if self.sock:
            self.sock.close()
        self.sock = None
        return why or how

    def close(self) -> None:
        if self.sock is not None:
            try:
                protocol.send(self.sock, {"op": "bye"})
            except OSError:
                pass
            self._died("", grace=True)

    def _exchange(self, header: dict, arrays=None, seconds: float = 10.0, whose: str = "one cell"):
        """`whose` names the limit `seconds` is: "one cell", "one call", "this check"."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise Died("the submission's time limit was reached")
        timeout = min(seconds, left)
        self.sock.settimeout(timeout)
        try:
            protocol.send(self.sock, header, arrays)
            # reports of forbidden built-ins come first, sent the moment they were called
            return tracer.recv_reply(self.sock, self.reported, timeout)
        except (socket.timeout, TimeoutError):
            limit = (f"{timeout:.3g} s, the submission's time limit" if timeout < seconds
                     else f"{seconds:.3g} s, the limit of {whose}")
            raise Died(self._died(f"{TIMED_OUT}: still running after {limit}", grace=False)) from None
        except (OSError, protocol.ProtocolError):
            how = self._died("", grace=True)
            raise Died(how if how.startswith("the process") else "the process " + how) from None

    # -- cells
    def run_cells(self) -> list[CellOutcome]:
        """First run: every cell in order. A cell that kills the process is skipped on restart."""
        self._open()
        for index, source in self.cells:
            try:
                head, _ = self._exchange({"op": "cell", "index": index, "source": source},
                                         seconds=self.limits.cell_seconds)
                self.outcomes.append(CellOutcome(index, bool(head.get("ok")), str(head.get("error", ""))[:4000]))
            except Died as died:
                self.outcomes.append(CellOutcome(index, False, f"{died}"))
                if time.monotonic() >= self.deadline:
                    self.gave_up = str(died)
                    break
                try:
                    self._replay()
                except Died:
                    break
        return self.outcomes

    def _replay(self, attempts: int = 2) -> None:
        """A fresh child with the cells that ran without killing the process."""
        for attempt in range(attempts):
            try:
                return self._replay_once()
            except Died as died:
                if attempt == attempts - 1:
                    self.gave_up = str(died)
                    raise

    def _replay_once(self) -> None:
        self._open()
        done = {o.index for o in self.outcomes if o.ok or "Traceback" in o.error}
        for index, source in self.cells:
            if index not in done:
                continue
            try:
                self._exchange({"op": "cell", "index": index, "source": source},
                               seconds=self.limits.cell_seconds)
            except Died as died:
                raise Died(f"could not restart the notebook: code cell {index}: {died}") from None

    # -- calls
    def request(self, request: dict, args: tuple, kwargs: dict, seconds: float | None = None) -> Reply:
        """A call, construction or weight load (see sandbox/calls.py); never raises. `seconds`:
        the calling check's own time limit (None: the submission's `call_seconds`)."""
        name = request.get("name", "")
        limit = seconds or self.limits.call_seconds
        if self.gave_up:
            return Reply("died", error=self.gave_up)
        # A hanging exercise must not eat the whole budget: after two calls that ran past a limit
        # at least this one, it is not called again (with a longer limit, it is).
        if sum(ran_past >= limit for ran_past in self.timeouts.get(name, ())) >= 2:
            return Reply("died", error=f"not run: it {TIMED_OUT} twice already, at this limit "
                                       f"({limit:.3g} s) or a longer one")
        spec, arrays = convert.encode_args(args, kwargs)
        self.reported.clear()
        try:
            if self.sock is None:
                self._replay()
            meter = getattr(self.sandbox, "meter", None)   # workers.CallMeter: the trusted side's
            if meter is not None:
                meter.start()
            try:
                head, out = self._exchange({"op": "call", **request, "spec": spec}, arrays, seconds=limit,
                                           whose="this check" if seconds else "one call")
            finally:
                outside = meter.stop() if meter is not None else 0
        except Died as died:
            if str(died).startswith(TIMED_OUT):
                self.timeouts.setdefault(name, []).append(limit)
            return Reply("died", error=str(died), builtins=sorted(self.reported))
        if meter is not None and meter.forked:
            # Work done in another process escapes any measure of this one: not graded at all.
            return Reply("error", error=FORKED, builtins=sorted(self.reported), peak_bytes=outside)
        reply = _read_reply(head, out)
        reply.builtins = sorted(set(reply.builtins) | self.reported)
        # The trusted side's measure decides; the student's own can only make the peak larger
        # (it sees TensorFlow's pooled tensors, which no resident set shows).
        reply.peak_bytes = max(outside, reply.peak_bytes)
        return reply

    def call(self, name: str, args: tuple, kwargs: dict) -> Reply:
        return self.request({"name": name}, args, kwargs)


@dataclass(frozen=True)
class Handle:
    """An object (a module) that lives on the student's side."""

    id: str


TIMED_OUT = "timed out"
FORKED = ("it started a process during a graded call: an exercise's function computes in its own "
          "process (no fork, subprocess or multiprocessing)")
MALFORMED = "the submission's process sent a malformed reply"
MAX_REPLY_ERROR = 2000   # characters of a student's traceback kept: its last lines say what failed


@lru_cache(maxsize=1)
def known_builtins() -> frozenset[str]:
    """The names the tracer and the static scan report. The tracer lives in the student's process,
    so a reply may name anything: an unknown name is a forgery, and could carry hidden inputs."""
    from autograder import scan
    from autograder.sandbox import tracer

    names = set(getattr(scan, "FORBIDDEN", {}).values())
    names.update(getattr(tracer, "KNOWN", ()))
    for table in (getattr(tracer, "TORCH", []), getattr(tracer, "TF", [])):
        names.update(entry[-1] for entry in table if isinstance(entry[-1], str))
    return frozenset(names)


FORGED_BUILTIN = "(a built-in name the grader does not know: the submission's process made it up)"


def _read_reply(head: dict, arrays: dict[str, np.ndarray]) -> Reply:
    """Trust nothing: the reply's shape is checked before anything is used, and its text is
    bounded and neutralised (autograder/untrusted.py) before any record holds it."""
    reported = head.get("builtins", [])
    reported = reported[:10] if isinstance(reported, list) else []
    builtins = sorted({b if b in known_builtins() else FORGED_BUILTIN for b in reported if isinstance(b, str)})
    refused = getattr(arrays, "reason", "")
    if refused:   # protocol.RefusedArrays: the frame was read, its arrays were not loaded
        return Reply("error", error=refused, builtins=builtins)
    status = head.get("status")
    if status != "ok":
        error = head.get("error", "")
        if status not in ("missing", "not_implemented", "error") or not isinstance(error, str):
            return Reply("error", error=MALFORMED, builtins=builtins)
        raised = head.get("raised")
        raised = raised if isinstance(raised, str) and isinstance(getattr(builtins_module, raised, None), type) \
            and issubclass(getattr(builtins_module, raised), BaseException) else ""
        return Reply(status, error=untrusted.neutral(error, MAX_REPLY_ERROR), builtins=builtins,
                     raised=raised if status == "error" else "")
    result = head.get("result")
    if isinstance(result, dict) and result.get("kind") == "handle":
        handle = result.get("handle")
        if not isinstance(handle, str) or len(handle) > 20:
            return Reply("error", error=MALFORMED, builtins=builtins)
        return Reply("ok", value=Handle(handle), types=["object"], builtins=builtins, peak_bytes=_peak(head),
                     changed=_changed(head))
    try:
        items, types = [], []
        for item in result["items"]:
            value, kind = _item(item, arrays, nested=result["kind"] == "single")
            items.append(value)
            types.append(kind)
        if result["kind"] == "dict":
            value = _dict_of(result.get("keys"), items)
        else:
            sequence = convert.ReturnedList if result["kind"] == "list" else tuple
            value = items[0] if result["kind"] == "single" else sequence(items)
        if result["kind"] == "single" and len(items) != 1:
            raise ValueError("bad single")
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        return Reply("error", error=MALFORMED, builtins=builtins)
    return Reply("ok", value=value, types=types, builtins=builtins, peak_bytes=_peak(head), changed=_changed(head))


MAX_NESTED_ITEMS = 16


def _item(item: dict, arrays: dict, nested: bool) -> tuple[object, object]:
    """One returned item -> (value, its type's name); a tuple item (one level deep, inside a tuple
    result: `(output, (keys, values))`) -> (tuple of values, tuple of names). ValueError otherwise."""
    if "seq" in item and not nested:
        seq = item["seq"]
        if not isinstance(seq, list) or len(seq) > MAX_NESTED_ITEMS:
            raise ValueError("bad nested tuple")
        pairs = [_item(inner, arrays, nested=True) for inner in seq]
        return tuple(v for v, _ in pairs), tuple(k for _, k in pairs)
    if not isinstance(item.get("type"), str):
        raise ValueError("a type that is not a name")
    kind = untrusted.name(item["type"], 80)
    if "a" in item:
        array = arrays[item["a"]]
        # numbers and booleans only: a string or structured dtype would carry text
        if type(array) is not np.ndarray or array.dtype.kind not in "biufc":
            raise ValueError("not a plain array")
        return array, kind
    if "v" in item and isinstance(item["v"], (bool, int, float)):
        return item["v"], kind
    if "none" in item:
        return None, kind
    raise ValueError("unknown item")


MAX_DICT_KEYS = 32
MAX_KEY_CHARS = 40


def _dict_of(keys, items: list) -> dict:
    """A returned dict: at most MAX_DICT_KEYS distinct keys, each a short name of letters, digits
    and underscores (no other text crosses), one per item; a ValueError otherwise."""
    if (not isinstance(keys, list) or len(keys) != len(items) or len(keys) > MAX_DICT_KEYS
            or len(set(map(str, keys))) != len(keys)
            or not all(isinstance(k, str) and 0 < len(k) <= MAX_KEY_CHARS
                       and k.replace("_", "a").isascii() and k.replace("_", "a").isalnum() for k in keys)):
        raise ValueError("bad dict")
    return dict(zip(keys, items))


def _changed(head: dict) -> list[str]:
    """The reply's "changed": argument keys as the request named them ("a0", "a1", ...), at most 32."""
    changed = head.get("changed", [])
    if not isinstance(changed, list):
        return ["?"]   # malformed: something was claimed changed
    return sorted({k for k in changed[:32] if isinstance(k, str) and len(k) <= 4 and k[:1] == "a" and k[1:].isdigit()})


def _peak(head: dict) -> int:
    """The reply's "peak_bytes": a non-negative int (below 1 PiB), else 0."""
    peak = head.get("peak_bytes", 0)
    return peak if type(peak) is int and 0 <= peak < 1 << 50 else 0
