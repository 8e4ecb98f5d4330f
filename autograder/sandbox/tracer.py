"""The frameworks' ready-made attention: which names are forbidden, and the dynamic half of the
detection (wrappers that report each call the moment it happens).

The contract forbids these built-ins inside exercises. Both halves read the tables below:
`autograder/scan.py` (the static half, trusted side) and the wrappers here (in the sandbox).

A wrapper lives in the student's process, so nothing it keeps there can be trusted: the student
can clear a record, or reach behind a wrapper. So a wrapper keeps nothing that matters:
- it sends a `{"op": "builtin"}` frame on the session socket at once, before the call runs; the
  trusted side reads it (`recv_reply`) and charges it to the exercise being checked. What has been
  sent cannot be taken back; a forged report only charges its sender;
- it has no `__wrapped__`, and its closure holds a number, not the original (kept in `_ORIGINALS`).
What the wrappers cannot cover (`torch._C._VariableFunctions`, whose attributes are read-only; the
originals reached through `__globals__`, `gc` or `ctypes`) the static half names or flags.
"""
from __future__ import annotations

import functools
import importlib
import importlib.abc
import inspect
import re
import sys
import time
import types

from autograder.sandbox import protocol

REPORT = "builtin"   # the op of a wrapper's report frame
MAX_REPORTS = 100_000   # report frames one exchange may carry before the peer counts as hostile

# --------------------------------------------------------------------------- what is forbidden

SDPA = "torch.nn.functional.scaled_dot_product_attention"
KERAS_DPA = "keras.ops.dot_product_attention"
# torch functions (and aten ops) -> the name the feedback gives; private kernels by their aten name
TORCH_FUNCTIONS = {
    "scaled_dot_product_attention": SDPA,
    "multi_head_attention_forward": "torch.nn.functional.multi_head_attention_forward",
    "flex_attention": "torch.nn.attention.flex_attention",
    **{name: f"torch.ops.aten.{name}" for name in (
        "_scaled_dot_product_attention_math", "_scaled_dot_product_attention_math_for_mps",
        "_scaled_dot_product_flash_attention", "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention",
        "_scaled_dot_product_fused_attention_overrideable", "_native_multi_head_attention",
        "_triton_multi_head_attention", "_triton_scaled_dot_attention", "_transformer_encoder_layer_fwd",
        "_flash_attention_forward", "_efficient_attention_forward", "_cudnn_attention_forward",
        "_flash_attention_forward_no_dropout_inplace")},
}
# kernels a later torch may add, under the families' naming: shown as the public function
TORCH_PATTERN = re.compile(r"_scaled_dot_product_\w+|_\w+_attention_(forward|backward)\w*")
TORCH_CLASSES = {name: f"torch.nn.{name}" for name in (
    "MultiheadAttention", "TransformerEncoderLayer", "TransformerDecoderLayer", "TransformerEncoder",
    "TransformerDecoder", "Transformer")}
KERAS_PATTERN = re.compile(r"_?dot_product_attention\w*")   # ops, backends, their XLA helper
KERAS_CLASSES = {"MultiHeadAttention": "keras.layers.MultiHeadAttention", "Attention": "keras.layers.Attention",
                 "AdditiveAttention": "keras.layers.AdditiveAttention",
                 "GroupQueryAttention": "keras.layers.GroupQueryAttention",
                 "GroupedQueryAttention": "keras.layers.GroupQueryAttention",
                 "BaseDenseAttention": "keras.layers.Attention", "DotProductAttention": KERAS_DPA}
FAMILIES = {"torch": "torch", "keras": "keras", "tensorflow": "keras", "tf_keras": "keras"}
# every name a report or the scan may give: the trusted side accepts no other text from the sandbox
KNOWN = frozenset({*TORCH_FUNCTIONS.values(), *(f"torch.ops.aten.{name}" for name in TORCH_FUNCTIONS),
                   *TORCH_CLASSES.values(), *KERAS_CLASSES.values(), KERAS_DPA})
# methods of a forbidden layer that do its work (not __init__ or build: Keras inspects those)
LAYER_METHODS = {"forward", "call", "_compute_attention", "_calculate_scores", "_apply_scores", "compute_output_spec"}


def forbidden(family: str | None, name: str, path: str = "") -> str | None:
    """The feedback's name for `name` in that framework family, or None when it is allowed."""
    if family == "torch":
        if name in TORCH_FUNCTIONS:
            shown = TORCH_FUNCTIONS[name]
            return f"torch.ops.aten.{name}" if ".ops.aten." in f"{path}." and name != "flex_attention" else shown
        if name in TORCH_CLASSES:
            return TORCH_CLASSES[name]
        return SDPA if TORCH_PATTERN.fullmatch(name) else None
    if family == "keras":
        if name in KERAS_CLASSES:
            return KERAS_CLASSES[name]
        return KERAS_DPA if KERAS_PATTERN.fullmatch(name) else None
    return None


def family_of(module_name: str) -> str | None:
    return FAMILIES.get(module_name.split(".", 1)[0])


# --------------------------------------------------------------------------- the report channel

used: set[str] = set()   # this process's own record: for check() in a kernel, where no socket exists
_channel = None          # the session socket, in the sandbox's child


def report_to(sock) -> None:
    """In the sandbox's child: send every report on the session socket, as it happens."""
    global _channel
    _channel = sock


def _report(shown: str) -> None:
    used.add(shown)
    if _channel is not None:
        try:
            protocol.send(_channel, {"op": REPORT, "builtin": shown})
        except (OSError, ValueError):
            pass   # a closed socket ends the session anyway


def take() -> list[str]:
    out = sorted(used)
    used.clear()
    return out


def recv_reply(sock, reported: set[str], seconds: float):
    """Trusted side: the next frame that is not a report, within `seconds`; reports go to `reported`."""
    give_up = time.monotonic() + seconds
    for _ in range(MAX_REPORTS):
        header, arrays = protocol.recv(sock)
        if header.get("op") != REPORT:
            return header, arrays
        if header.get("builtin") in KNOWN:
            reported.add(header["builtin"])
        if time.monotonic() > give_up:
            raise TimeoutError("still reporting after the time limit")
    raise protocol.ProtocolError("too many report frames")


# --------------------------------------------------------------------------- the wrappers

_ORIGINALS: list = []            # wrapper number -> the original; not in any wrapper's closure
_SHOWN: list = []                # wrapper number -> the name its reports give
_WRAPPERS: dict[int, object] = {}   # id(original) -> its wrapper, so each is wrapped once
_DONE: set[int] = set()          # ids of wrappers and patched classes


def _traced(func, shown: str):
    if id(func) in _DONE:
        return func
    if id(func) in _WRAPPERS:
        return _WRAPPERS[id(func)]
    number = len(_ORIGINALS)
    _ORIGINALS.append(func)
    _SHOWN.append(shown)

    def traced(*args, **kwargs):
        _report(shown)
        return _ORIGINALS[number](*args, **kwargs)

    for attr in ("__name__", "__qualname__", "__doc__", "__module__"):
        try:
            setattr(traced, attr, getattr(func, attr))
        except (AttributeError, TypeError):
            pass
    try:   # Keras reads call()'s signature to decide which arguments to pass
        traced.__signature__ = inspect.signature(func)
    except (TypeError, ValueError):
        pass
    _WRAPPERS[id(func)] = traced
    _DONE.add(id(traced))
    return traced


class _TracedPacket:
    """`torch.ops.aten.<op>` and its overloads (`.default`): reports a call, and otherwise looks
    like the original. Torch's own code reads an overload's `_schema`, `name()` and the like (the
    import of `torch.nn.attention.bias` does), so attributes pass through and only overloads,
    themselves packets, are wrapped again, once each."""

    __slots__ = ("_number", "_shown", "_overloads")

    def __init__(self, packet, shown: str):
        self._number, self._shown, self._overloads = len(_ORIGINALS), shown, {}
        _ORIGINALS.append(packet)
        _SHOWN.append(shown)

    def __call__(self, *args, **kwargs):
        _report(self._shown)
        return _ORIGINALS[self._number](*args, **kwargs)

    def __getattr__(self, attr: str):
        value = getattr(_ORIGINALS[self._number], attr)
        if type(value).__name__ != "OpOverload":
            return value
        if attr not in self._overloads:
            self._overloads[attr] = _TracedPacket(value, self._shown)
        return self._overloads[attr]


def _patch_class(cls: type, shown: str) -> None:
    if id(cls) in _DONE:
        return
    _DONE.add(id(cls))
    for name, value in list(vars(cls).items()):
        if name in LAYER_METHODS and isinstance(value, types.FunctionType):
            setattr(cls, name, _traced(value, shown))


def _sweep_namespace(owner, family: str, path: str) -> None:
    """Replace the forbidden callables `owner` (a module or a C namespace) holds by their wrappers."""
    try:
        items = list(vars(owner).items())
    except TypeError:
        return
    for name, value in items:
        shown = forbidden(family, name, path)
        if shown is None or isinstance(value, types.ModuleType) or not callable(value):
            continue
        if isinstance(value, type):
            if value.__module__.split(".", 1)[0] in FAMILIES:
                _patch_class(value, shown)
            continue
        try:
            setattr(owner, name, _traced(value, shown))
        except (AttributeError, TypeError):
            continue   # read-only (torch._C._VariableFunctions): the static half names it


def _sweep_modules() -> None:
    for name, module in list(sys.modules.items()):
        family = family_of(name)
        if family and isinstance(module, types.ModuleType):
            _sweep_namespace(module, family, name)


def _wrap_aten_ops() -> None:
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "ops"):
        return
    for qualified in torch._C._dispatch_get_all_op_names():
        namespace, _, rest = qualified.partition("::")
        name = rest.split(".", 1)[0]
        shown = forbidden("torch", name, "torch.ops.aten.") if namespace == "aten" else None
        if shown is None or isinstance(vars(torch.ops.aten).get(name), _TracedPacket):
            continue
        try:
            setattr(torch.ops.aten, name, _TracedPacket(getattr(torch.ops.aten, name), shown))
        except (AttributeError, RuntimeError):
            continue
    _sweep_namespace(torch._C._nn, "torch", "torch._C._nn")


class _AfterImport(importlib.abc.MetaPathFinder):
    """Wraps the built-ins of a framework module imported later (torch in a TensorFlow notebook,
    Keras' NumPy backend), as soon as that module has run."""

    def find_spec(self, fullname, path, target=None):
        if family_of(fullname) is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                run = spec.loader.exec_module

                def exec_module(module, run=run):
                    run(module)
                    _sweep_namespace(module, family_of(module.__name__), module.__name__)
                    if module.__name__ == "torch":
                        _wrap_aten_ops()
                    _apply_removal(module.__name__ == "torch")   # in a child that removed them: these too

                spec.loader.exec_module = exec_module
                return spec
            if spec is not None:
                return spec
        return None


# --------------------------------------------------------------------------- removal, in the child

class Removed(RuntimeError):
    """A forbidden built-in was called in a graded run, where it is not there."""


_removed: dict[str, object] = {}   # shown name -> the stub that replaced it, in this child
_MARK = "__autograder_removed__"


def _message(shown: str) -> str:
    return (f"{shown} is not available in graded exercises: the course asks you to write this "
            "computation yourself")


def _stub(shown: str):
    def removed(*args, **kwargs):
        _report(shown)   # a report the student may silence; the call fails whether or not it is sent
        raise Removed(_message(shown))
    return removed


@functools.lru_cache(maxsize=None)
def _dead_code(shown: str, free: int) -> types.CodeType:
    """A body that raises `Removed` and reads no global (a student's `builtins` cannot change what
    it does), with `free` closure cells, so that it can replace the code of a function with as many."""
    names = [f"_cell{i}" for i in range(free)]
    source = (f"def outer():\n    {' = '.join(names + ['None']) if names else 'pass'}\n"
              f"    def removed(*args, **kwargs):\n        {', '.join(names) or 'None'}\n"
              f"        raise {_MARK!r}\n    return removed\n")
    scope: dict = {}
    exec(compile(source, f"<removed {shown}>", "exec"), scope)
    code = scope["outer"]().__code__
    error = Removed(_message(shown))
    return code.replace(co_consts=tuple(error if c == _MARK else c for c in code.co_consts))


def _kill_function(func, shown: str) -> bool:
    """Every reference to a Python function (a framework's registry, a closure, `gc`) now reaches a
    body that raises: its code is replaced in place, not only the names that point to it."""
    if not isinstance(func, types.FunctionType):
        return False
    try:
        func.__code__ = _dead_code(shown, len(func.__code__.co_freevars))
    except (TypeError, ValueError):
        return False
    return True


_DISPATCH_KEYS = ("CompositeImplicitAutograd", "CompositeExplicitAutograd", "CPU", "Autograd")


_OPS: list | None = None   # (aten op, shown name, public name) of every forbidden operator: found once, in the worker


def _torch_ops(names: set[str]) -> list[tuple[str, str]]:
    """(aten op, shown name) of every forbidden operator the dispatcher knows whose name is in `names`."""
    global _OPS
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "_C"):
        return []
    if _OPS is None:
        found = {}
        for qualified in torch._C._dispatch_get_all_op_names():
            namespace, _, rest = qualified.partition("::")
            name = rest.split(".", 1)[0]
            if namespace == "aten" and name not in found:
                shown = forbidden("torch", name, "torch.ops.aten.")
                if shown:
                    found[name] = (name, shown, forbidden("torch", name))
        _OPS = sorted(found.values())
    return [(name, shown) for name, shown, public in _OPS if shown in names or public in names]


def _remove_from_dispatcher(ops: list[tuple[str, str]]) -> int:
    """Each forbidden aten operator gets a kernel that raises, for every key a CPU call goes
    through: `F.scaled_dot_product_attention`, `torch._C._nn...`, `torch.ops.aten...`, a packet
    made anew, `redispatch` and `decompose` all reach it. The library object that holds the
    kernels is kept by a reference no Python object holds (a student who finds nothing to delete
    cannot give the originals back)."""
    if not ops:
        return 0
    import ctypes
    import warnings

    torch = sys.modules["torch"]
    library = torch._C._dispatch_library("IMPL", "aten", "", "<autograder>", 0)
    done = 0
    with warnings.catch_warnings():   # "overriding a previously registered kernel": that is the point
        warnings.simplefilter("ignore")
        for name, shown in ops:
            kernel = _stub(shown)
            for key in _DISPATCH_KEYS:
                try:
                    library.impl(name, key, kernel, False)
                    done += 1
                except (RuntimeError, TypeError, ValueError):
                    continue
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(library))   # never freed: the kernels stay
    del library
    return done


_DECOMPOSITIONS: list | None = None   # (function, shown name, public name), found once, in the worker


def _decompositions(names: set[str]) -> list:
    """Python implementations torch keeps of the forbidden operators (torch._decomp's tables):
    a flash attention written with plain ops, callable without the dispatcher."""
    global _DECOMPOSITIONS
    decomp = sys.modules.get("torch._decomp")
    if decomp is None:
        return []
    if _DECOMPOSITIONS is None:
        _DECOMPOSITIONS = []
        for table in (getattr(decomp, "decomposition_table", {}), getattr(decomp, "meta_table", {})):
            for op, func in list(table.items()):
                name = str(getattr(op, "_name", op)).split("::")[-1].split(".")[0]
                shown = forbidden("torch", name, "torch.ops.aten.")
                if shown:
                    _DECOMPOSITIONS.append((func, shown, forbidden("torch", name)))
    return [(func, shown) for func, shown, public in _DECOMPOSITIONS if shown in names or public in names]


def remove(names) -> int:
    """In a submission's child, before any of its code runs: the forbidden built-ins in `names`
    (KNOWN names) stop computing, whatever reaches them. The tracer's reports live in the student's
    process and can be switched off; this cannot be undone from Python:
    - every wrapped original loses its place in `_ORIGINALS` (the wrappers call a stub), and each
      Python one (Keras' functions, layer methods, `multi_head_attention_forward`) gets a body that
      raises, so a registry, `inspect.getmembers`, `gc` or a wrapper's `__globals__` finds a
      function that raises;
    - torch's forbidden aten operators get raising kernels in the dispatcher (C builtins such as
      `torch._C._nn.scaled_dot_product_attention` go through it), and torch's Python
      decompositions of them raise as well.
    Only `ctypes` (which the static scan charges as a doubt) reaches below this.
    A framework imported later (torch in a TensorFlow notebook) loses them as it is imported.
    -> how many functions and kernels were removed."""
    _REMOVING.update(names)
    return _apply_removal(torch_too=True)


_REMOVING: set[str] = set()   # what `remove` was given, in this child: applied again after each import
_KILLED: set[int] = set()     # wrapper numbers already removed
_KILLED_FUNCS: set[int] = set()   # ids of torch's decompositions already removed
_KILLED_OPS: set[str] = set()  # aten operators already given a raising kernel


def _apply_removal(torch_too: bool) -> int:
    """`torch_too`: the dispatcher and torch's decompositions as well (torch wholly imported)."""
    names = _REMOVING
    if not names:
        return 0
    count = 0
    for number, shown in enumerate(_SHOWN):
        original = _ORIGINALS[number]
        if number in _KILLED or shown not in names or type(original).__name__ in ("OpOverloadPacket", "OpOverload"):
            continue   # (an aten packet keeps its original: torch reads its schema; the dispatcher raises)
        _KILLED.add(number)
        _ORIGINALS[number] = _removed.setdefault(shown, _stub(shown))
        _kill_function(original, shown)
        count += 1
    if not torch_too:
        return count
    for func, shown in _decompositions(names):
        if id(func) not in _KILLED_FUNCS:
            _KILLED_FUNCS.add(id(func))
            count += _kill_function(func, shown)
    ops = [(name, shown) for name, shown in _torch_ops(names) if name not in _KILLED_OPS]
    _KILLED_OPS.update(name for name, _ in ops)
    count += _remove_from_dispatcher(ops)
    return count


def install(framework: str) -> None:
    """In the worker, before any submission: wrap what is loaded, and what loads later."""
    for name in (["torch.nn.functional", "torch.nn"] if framework == "torch" else
                 ["keras", "keras.src.ops.nn", "keras.src.backend.tensorflow.nn", "keras.src.backend.numpy.nn",
                  "keras.src.layers", "tensorflow.python.keras.layers.dense_attention"]):
        try:
            importlib.import_module(name)
        except Exception:   # an API that moved is no reason to stop grading
            continue
    _sweep_modules()
    _wrap_aten_ops()
    _torch_ops(set())        # found now, once: each child's `remove` only applies them
    _decompositions(set())
    if not any(isinstance(f, _AfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport())
