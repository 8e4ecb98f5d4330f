"""The check stage: run a chapter's pytest checks against one submission, trusted side.

Where the functions live is a *backend*: `session.Runner` (a sandboxed process, in grading) or
`LocalBackend` (the student's own kernel, in `check()`). Either way a call returns an
`session.Reply` of plain data, and comparisons happen here, never in the student's process.
"""
from __future__ import annotations

import builtins
import contextlib
import io
import itertools
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from autograder import chapters, secret, untrusted
from autograder.checks.api import MB, CheckFailure, CheckMeta, NotImplementedYet, detail, meta_of, size_text
from autograder.session import Handle, Reply, _read_reply
from autograder.results import CheckResult
from autograder.sandbox import calls, convert

CHECKS_DIR = Path(__file__).parent   # pytest.ini and the rootdir: the chapters' files come from their records
TENSOR_TYPE = {"torch": "torch.Tensor", "tf": "tf.Tensor"}


def check_files(chapter: str) -> list[Path]:
    """The chapter's checks module (its record's `checks_path`), or [] for no checks."""
    try:
        path = chapters.chapter(chapter).checks_path
    except LookupError:
        return []
    return [path] if path.is_file() else []


def oracle_for(chapter: str):
    return chapters.chapter(chapter).load_oracle()


class LocalBackend:
    """The functions of a namespace in this process (the student's kernel). A call's time limit
    cannot be enforced here (nothing may kill the student's kernel): `seconds` is ignored."""

    def __init__(self, namespace: dict, framework: str):
        self.namespace = namespace
        self.framework = framework
        self.handles: dict = {}

    def request(self, request: dict, args: tuple, kwargs: dict, seconds: float | None = None) -> Reply:
        spec, arrays = convert.encode_args(args, kwargs)
        head, out = calls.perform({**request, "spec": spec}, arrays, self.namespace, self.handles,
                                  self.framework)
        return _read_reply(head, out or {})


@dataclass(frozen=True)
class CallLimits:
    """What every call of one check gets: its time limit (None: the backend's, i.e. the chapter's
    call_seconds), its memory bound, and the seed its calls' seeds derive from (None: unseeded)."""

    seconds: float | None = None
    memory_bytes: int | None = None
    memory_hint: str = ""
    seed: int | None = None

    @classmethod
    def of(cls, meta: CheckMeta, chapter: chapters.Limits, seed: int | None) -> "CallLimits":
        # A check may ask for less memory than the chapter's, never more: the worker watches the
        # submission's memory at the chapter's bound whatever the check says.
        memory_mb = min(meta.memory_mb or chapter.memory_mb, chapter.memory_mb)
        return cls(meta.seconds, int(memory_mb * MB), meta.memory_hint, seed)


class StudentProxy:
    """`student.name(*args)`: call the submission's function, or raise a CheckFailure.

    `student.new("MultiHeadAttention", 16, 4)` constructs a module on the student's side and
    returns a `RemoteModule`: `.load_weights({...})` puts the grader's weights into the attributes
    the contract names, and calling it runs its forward pass.
    """

    def __init__(self, backend, framework: str, on_builtins, limits: CallLimits = CallLimits()):
        self._backend = backend
        self._framework = framework
        self._on_builtins = on_builtins
        self._limits = limits
        self._calls = itertools.count()   # the call's index within the check: its seed's other half

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self._request({"name": name}, name, args, kwargs)

    def raises(self, error: type[BaseException], name: str, *args, **kwargs) -> None:
        """Call `name(*args, **kwargs)` and require that it raise `error` (a subclass of it too):
        the exercise's inputs that it must refuse. A CheckFailure otherwise."""
        self._request({"name": name}, name, args, kwargs, expect=error)

    def new(self, name: str, *args, **kwargs) -> "RemoteModule":
        handle = self._request({"kind": "new", "name": name}, name, args, kwargs, tensors=False)
        if not isinstance(handle, Handle):
            raise CheckFailure(f"{name}(...) did not construct an object")
        return RemoteModule(self, handle, name)

    def _request(self, request: dict, name: str, args: tuple, kwargs: dict, tensors: bool = True,
                 expect: type[BaseException] | None = None):
        limits = self._limits
        index = next(self._calls)
        if limits.seed is not None:   # the same check makes the same calls, so draws the same numbers
            request = {**request, "seed": stable_seed(limits.seed, str(index))}
        if limits.seconds is not None:
            reply = self._backend.request(request, args, kwargs, seconds=limits.seconds)
        else:   # a backend that knows no per-call limit (the release's, a test's) still works
            reply = self._backend.request(request, args, kwargs)
        if reply.builtins:
            self._on_builtins(reply.builtins)
        if reply.status == "missing":
            raise CheckFailure(f"{name} is not defined. Did the cell that defines it run, "
                               "and is the name spelled as in the exercise?")
        if reply.status == "not_implemented":
            raise NotImplementedYet(name)
        if expect is not None and reply.status in ("ok", "error"):
            raised = getattr(builtins, reply.raised, None) if reply.status == "error" else None
            if isinstance(raised, type) and issubclass(raised, expect):
                return None
            what = "returned a value" if reply.status == "ok" else "raised another error"
            raise CheckFailure(detail(f"{name}: expected a {expect.__name__} for these inputs, as the "
                                      f"exercise says; it {what}.",
                                      reply.error.rstrip() if reply.status == "error" else ""))
        if reply.status == "error":
            raise CheckFailure(f"{name} raised an error:\n{reply.error.rstrip()}")
        if reply.status == "died":
            raise CheckFailure(f"{name}: {untrusted.name(reply.error, 200)}")
        if limits.memory_bytes is not None and reply.peak_bytes > limits.memory_bytes:
            # The peak is the submission's word, as any value it returns: only on the later lines.
            allowed = size_text(limits.memory_bytes)
            raise CheckFailure(detail(f"{name} used more memory than this check allows ({allowed}): "
                                      f"{limits.memory_hint}",
                                      f"{name} used {size_text(reply.peak_bytes)} at its peak; "
                                      f"this check allows {allowed}."))
        if reply.changed:
            raise CheckFailure(detail(
                f"{name} changed an input in place; a function leaves its inputs unchanged: compute "
                "into a new tensor (x = x - m, not x -= m, x.sub_(m) or x[...] = ...).",
                f"changed: {', '.join(_places(args, kwargs, reply.changed))}"))
        if tensors:
            # Every array that comes back must be the framework's own tensor, a dict's values too
            # (attention_cost's are numbers, which need no type).
            want = TENSOR_TYPE[self._framework]
            if isinstance(reply.value, dict):
                values = tuple(reply.value.values())
            else:
                values = reply.value if isinstance(reply.value, tuple) else (reply.value,)
            for value, kind in _flat_pairs(values, reply.types):
                if isinstance(value, np.ndarray) and kind != want:
                    # The type's name is the submission's to choose: named only if it is a known one.
                    shown = kind if kind in convert.KNOWN_TYPES else "an object of another type"
                    raise CheckFailure(detail(f"{name} returned {_article(shown)}; the exercise asks for "
                                              f"{_article(want)}.", f"(the type it returned: {kind})"))
        return reply.value


def _places(args: tuple, kwargs: dict, keys: list[str]) -> list[str]:
    """The arguments behind the array keys a reply names, in encode_args' order ("a0", "a1", ...)."""
    labels: list[str] = []

    def walk(value, label: str) -> None:
        if isinstance(value, np.ndarray):
            labels.append(label)
        elif isinstance(value, (tuple, list)):
            for i, item in enumerate(value):
                walk(item, f"{label}[{i}]")

    for i, value in enumerate(args):
        walk(value, f"argument {i + 1}")
    for key, value in kwargs.items():
        walk(value, key)
    named = {f"a{i}": label for i, label in enumerate(labels)}
    return [named.get(key, "an argument") for key in keys]


def _flat_pairs(values: tuple, types: list):
    """(value, type name) for every leaf, inside a nested tuple item too."""
    for value, kind in zip(values, types):
        if isinstance(value, tuple) and isinstance(kind, tuple):
            yield from zip(value, kind)
        else:
            yield value, kind


def _article(kind: str) -> str:
    return kind if kind.startswith(("a ", "an ")) else f"a {kind}"


class RemoteModule:
    """A student's module instance, living wherever the student's code runs."""

    def __init__(self, proxy: StudentProxy, handle: Handle, name: str):
        self._proxy, self._handle, self._name = proxy, handle, name

    def load_weights(self, weights: dict[str, dict[str, np.ndarray]]) -> None:
        """{"w_q": {"kernel": (in, out), "bias": (out,)}, "norm1": {"scale": .., "offset": ..}}"""
        flat = {f"{path}.{part}": value for path, params in weights.items() for part, value in params.items()}
        self._proxy._request({"kind": "load", "handle": self._handle.id}, f"loading the weights into {self._name}",
                             (), flat, tensors=False)

    def __call__(self, *args, **kwargs):
        return self._proxy._request({"kind": "call", "handle": self._handle.id}, self._name, args, kwargs)


MAX_OUTPUT, MAX_OUTPUT_LINES = 2500, 45   # a check's message: a student's traceback and a hint


def _message(exc: BaseException | None) -> str:
    """A failed check's message; its first line never quotes what the submission returned."""
    if isinstance(exc, CheckFailure):
        return str(exc)
    if isinstance(exc, AssertionError):
        # A bare `assert` in a check: pytest's rewritten message quotes the values compared.
        text = str(exc)
        summary = "" if text.startswith("assert ") else text.split("\nassert ")[0].split("\n")[0]
        return detail(summary or "a property this check tests does not hold.", text)
    return detail(f"the check itself failed ({type(exc).__name__}); tell your instructor",
                  untrusted.neutral(str(exc), 500, 5))


def stable_seed(base: int, name: str) -> int:
    return zlib.crc32(f"{base}:{name}".encode()) & 0x7FFFFFFF


@dataclass
class _Plugin:
    backend: object
    framework: str
    oracle: object
    seed: int
    exercise: str | None
    public_only: bool
    limits: chapters.Limits = chapters.Limits()
    secret: bytes | None = None       # grading: seeds from the course secret and the student
    student_name: str = ""
    results: list[CheckResult] = field(default_factory=list)
    order: dict[str, int] = field(default_factory=dict)   # nodeid -> place in the file
    places: list[int] = field(default_factory=list)       # each result's place in the file
    builtins: dict[str, set] = field(default_factory=dict)
    seeds: dict[str, int] = field(default_factory=dict)
    current: str = ""

    @pytest.fixture
    def student(self, request):
        def seen(names):
            self.builtins.setdefault(self.current, set()).update(names)
        limits = CallLimits.of(meta_of(request.node), self.limits, self._check_seed(request))
        return StudentProxy(self.backend, self.framework, seen, limits)

    @pytest.fixture(name="oracle")
    def oracle_fixture(self):
        return self.oracle

    @pytest.fixture(name="framework")
    def framework_fixture(self):
        return self.framework

    @pytest.fixture
    def rng(self, request):
        return np.random.default_rng(self._check_seed(request))

    def _check_seed(self, request) -> int:
        """The check's seed: its inputs' (`rng`) and, through the call's index, its calls'. In
        grading it comes from the course secret and the student (secret.py), never from the public
        seed the release draws its stored inputs from."""
        if self.secret is not None:
            seed = secret.check_seed(self.secret, self.seed, self.student_name, request.node.name)
        else:
            seed = stable_seed(self.seed, request.node.name)
        self.seeds[request.node.nodeid] = seed
        return seed

    def pytest_collection_modifyitems(self, config, items):
        keep, drop = [], []
        for item in items:
            meta = meta_of(item)
            wanted = (meta is not None and (self.exercise is None or meta.exercise == self.exercise)
                      and (meta.public or not self.public_only))
            (keep if wanted else drop).append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
        # Every public check runs before any hidden one: a hidden check's inputs, which the
        # submission's process sees, can then reach no message a student reads in full (a public
        # check's); hidden checks show only their first line. Results go back to file order.
        self.order = {item.nodeid: place for place, item in enumerate(keep)}
        items[:] = sorted(keep, key=lambda item: not meta_of(item).public)

    def pytest_runtest_setup(self, item):
        self.current = meta_of(item).exercise

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if report.when == "call" or (report.when == "setup" and report.failed):
            self.results.append(self._result(item, call, report))
            self.places.append(self.order.get(item.nodeid, len(self.order)))

    def _result(self, item, call, report) -> CheckResult:
        meta = meta_of(item)
        doc = (item.function.__doc__ or "").strip().splitlines()
        what = doc[0].strip() if doc else item.name.removeprefix("test_").replace("_", " ")
        output = ""
        if report.failed:
            output = untrusted.neutral(_message(call.excinfo.value if call.excinfo else None),
                                       MAX_OUTPUT, MAX_OUTPUT_LINES)
        return CheckResult(
            exercise=meta.exercise, name=f"{meta.exercise}: {what}",
            score=meta.points if report.passed else 0.0, max_score=meta.points,
            status="passed" if report.passed else "failed",
            visibility="visible" if meta.public else "hidden", output=output,
            seed=self.seeds.get(item.nodeid))


# pytest plugins a grading run has no use for; unraisableexception alone costs two full
# gc.collect() passes per run, a third of the time of grading a submission.
_QUIET_PLUGINS = [arg for name in ("cacheprovider", "xdist", "nbval", "unraisableexception", "threadexception",
                                   "faulthandler", "junitxml", "doctest", "pastebin", "legacypath",
                                   "stepwise", "lfplugin", "setuponly", "setupplan")
                  for arg in ("-p", f"no:{name}")]


def run_checks(chapter: str, backend, framework: str, *, exercise: str | None = None,
               public_only: bool = False, seed: int = 0,
               limits: chapters.Limits | None = None, secret_key: bytes | None = None,
               student: str = "") -> tuple[list[CheckResult], dict[str, list[str]]]:
    """Run the chapter's checks; returns the results in file order and the built-ins seen.
    `limits`: the calls' defaults where a check sets none (None: the chapter record's).
    `secret_key` (grading): check seeds from the course secret, `seed` and `student` (secret.py);
    None (the student's own `check()`, the release): from `seed` and the check's name alone."""
    files = check_files(chapter)
    if not files:
        raise LookupError(f"no checks for chapter {chapter}")
    limits = limits or chapters.chapter(chapter).limits
    plugin = _Plugin(backend, framework, oracle_for(chapter), seed, exercise, public_only, limits,
                     secret=secret_key, student_name=student)
    args = [*map(str, files), "-c", str(CHECKS_DIR / "pytest.ini"), "--rootdir", str(CHECKS_DIR),
            *_QUIET_PLUGINS, "-q",
            # A failure's message comes from the exception itself (_result); pytest's own report
            # of it is never read, and its default style re-parses the source of every traceback
            # entry: two thirds of the grading time of a notebook whose checks fail.
            "--tb=native",
            "--capture=no", "-W", "ignore::DeprecationWarning"]
    log = io.StringIO()
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        code = pytest.main(args, plugins=[plugin])
    results = [result for _, result in sorted(zip(plugin.places, plugin.results), key=lambda pair: pair[0])]
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.NO_TESTS_COLLECTED):
        raise RuntimeError(f"the checks of {chapter} could not run:\n{log.getvalue()[-3000:]}")
    return results, {k: sorted(v) for k, v in plugin.builtins.items()}
