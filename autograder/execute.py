"""The execute stage: run a submission's code in the untrusted sandbox, and call its functions.

Trusted side only. A `Sandbox` is one resident worker per framework (see sandbox/worker.py), at
one of the isolation levels of autograder/isolation.py:
- "bubblewrap": the sandbox sees the Python installation and a copy of `autograder/sandbox/`,
  nothing else (no solutions, no checks, no other submissions), read-only except /tmp and
  /dev/shm (emptied after each submission), has no network and its own PID namespace, and runs
  as `nobody`;
- "uid-drop": the worker runs as root outside any namespace; each submission's child drops to the
  worker's own unprivileged uid (isolation.DroppedUid), and the grader's files are closed to it;
- "none": the worker and the submission run as the grader's own user.
In every level a cgroup (where the machine lets us make one) caps the worker's memory and process
count, so a memory bomb or a fork bomb is killed without touching the machine; stale cgroups of
dead graders are removed when the first one is made.

A `Runner` runs one submission: its cells in order in a fresh child, then calls on demand. When
the child dies or hangs, the runner starts a new child, replays the cells that had run, and the
failure costs only the cell or call that caused it.
"""
from __future__ import annotations

import atexit
import ctypes
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from autograder import untrusted
from autograder.sandbox import convert, protocol, tracer
from autograder import isolation
from autograder.sandbox import confine

SANDBOX_SRC = Path(__file__).parent / "sandbox"
BOOT = ("import sys; sys.path.insert(0, '/opt/grader'); from autograder.sandbox.worker import serve;"
        " import socket; serve(sys.argv[1], socket.socket(fileno=int(sys.argv[2])))")
STUB_INIT = '"""The grader\'s view of the package: check() does nothing in a graded run."""\n' \
            "def check(*args, **kwargs):\n    return None\n" \
            "def checker(*args, **kwargs):\n    return check\n"   # the setup cell's binding
ISOLATED, UID_DROP, NONE = isolation.BUBBLEWRAP, isolation.UID_DROP, isolation.NONE
PR_SET_PDEATHSIG = 1
_ids = itertools.count()


@dataclass
class Limits:
    call_seconds: float = 20.0       # one call of a student's function
    cell_seconds: float = 60.0       # one notebook cell
    submission_seconds: float = 300.0
    memory_bytes: int = 4 << 30      # cgroup cap, worker + submission; TF alone is ~0.6 GiB
    submission_memory_bytes: int = 2 << 30   # the submission's own anonymous memory, watched
    max_processes: int = 64
    max_file_bytes: int = 64 << 20


class SandboxError(Exception):
    """The sandbox itself could not be started (not the student's fault)."""


class Died(Exception):
    """The submission's process died or was killed; the message says how."""


# ------------------------------------------------------------------------------ the sandbox


@lru_cache(maxsize=1)
def grader_lib() -> str:
    """A private copy of the sandbox package: the only grader code the sandbox can see."""
    root = Path(tempfile.mkdtemp(prefix="autograder-lib-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    pkg = root / "autograder"
    shutil.copytree(SANDBOX_SRC, pkg / "sandbox", ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "__init__.py").write_text(STUB_INIT)
    os.chmod(root, 0o755)
    return str(root)


def bwrap_args(lib: str) -> list[str]:
    # /tmp and /dev/shm are the only writable places; the worker empties them after each
    # submission. Everything else is read-only, "/" and /dev included, so nothing planted there
    # reaches the next submission.
    args = ["--unshare-all", "--uid", "65534", "--gid", "65534", "--die-with-parent",
            "--new-session", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/dev/shm", "--tmpfs", "/tmp",
            "--clearenv", "--setenv", "HOME", "/tmp", "--setenv", "PATH", "/usr/bin:/bin",
            "--setenv", "TF_CPP_MIN_LOG_LEVEL", "3", "--setenv", "MPLBACKEND", "Agg",
            "--setenv", "OMP_NUM_THREADS", "1", "--setenv", "AUTOGRADER_PID_NAMESPACE", "1",
            "--setenv", "AUTOGRADER_ISOLATION", ISOLATED, "--chdir", "/tmp"]
    system = ["/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache", "/etc/ld.so.conf",
              "/etc/ld.so.conf.d", "/etc/alternatives", "/etc/localtime", "/etc/passwd", "/etc/group"]
    python = {sys.base_prefix, sys.prefix, str(Path(os.path.realpath(sys.executable)).parent.parent)}
    for path in system + sorted(python):
        if os.path.exists(path):
            args += ["--ro-bind", path, path]
    return args + ["--ro-bind", lib, "/opt/grader", "--remount-ro", "/dev", "--remount-ro", "/"]


CGROUP_ROOTS = (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup/pids"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


@lru_cache(maxsize=1)
def remove_stale_cgroups() -> list[str]:
    """cgroups `autograder-PID-N` of graders that died (killed, crashed): kill what is left in
    them, then remove them. Once per process, before it makes its own."""
    removed = []
    for root in CGROUP_ROOTS:
        for folder in root.glob("autograder-*-*"):
            try:
                pid = int(folder.name.split("-")[1])
            except ValueError:
                continue
            if _alive(pid) or not folder.is_dir():
                continue
            for _ in range(50):
                try:
                    for line in (folder / "cgroup.procs").read_text().split():
                        os.kill(int(line), signal.SIGKILL)
                    folder.rmdir()
                    removed.append(str(folder))
                    break
                except (OSError, ValueError):
                    time.sleep(0.02)
    return removed


class _Cgroup:
    """Memory and process caps for one sandbox, on cgroup v1 or v2, where we may create one."""

    def __init__(self, limits: Limits):
        self.dirs: list[Path] = []
        remove_stale_cgroups()
        name = f"autograder-{os.getpid()}-{next(_ids)}"
        v1 = {"memory": ("memory.limit_in_bytes", limits.memory_bytes),
              "pids": ("pids.max", limits.max_processes + 8)}
        try:
            if Path("/sys/fs/cgroup/cgroup.controllers").exists():
                d = Path("/sys/fs/cgroup") / name
                d.mkdir()
                self.dirs.append(d)
                (d / "memory.max").write_text(str(limits.memory_bytes))
                (d / "pids.max").write_text(str(limits.max_processes + 8))
            else:
                for controller, (knob, value) in v1.items():
                    d = Path("/sys/fs/cgroup") / controller / name
                    d.mkdir()
                    self.dirs.append(d)
                    (d / knob).write_text(str(value))
        except OSError:
            self.remove()
            self.dirs = []

    def oom_kills(self) -> int:
        for d in self.dirs:
            for name in ("memory.events", "memory.oom_control"):
                try:
                    for line in (d / name).read_text().splitlines():
                        key, _, value = line.partition(" ")
                        if key == "oom_kill":
                            return int(value)
                except (OSError, ValueError):
                    continue
        return 0

    def enter(self) -> None:   # runs in the child between fork and exec
        for d in self.dirs:
            (d / "cgroup.procs").write_text(str(os.getpid()))

    def remove(self) -> None:
        for d in self.dirs:
            try:
                d.rmdir()
            except OSError:
                pass


def _worker_preexec(cgroup: _Cgroup):
    def preexec() -> None:   # in the child between fork and exec
        cgroup.enter()
        # The worker dies with the grader even outside bubblewrap (--die-with-parent there).
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    return preexec


class Sandbox:
    """One resident worker for one framework, at an isolation level (isolation.choose() if None).

    `protected`: folders the submissions must not read under "uid-drop" besides the grader's
    own (isolation.grader_paths()): the submissions' folders and the output folder."""

    def __init__(self, framework: str, limits: Limits | None = None, level: str | None = None,
                 protected: list[Path] = ()):
        self.framework = framework
        self.limits = limits or Limits()
        try:
            self.isolation = level or isolation.choose()
        except isolation.Unavailable as exc:
            raise SandboxError(str(exc)) from None
        self.proc = None
        self.restarts = 0
        self.uid = None
        self._scratch = None
        self._protected: list[str] = []
        if self.isolation == UID_DROP:
            problem = isolation.uid_drop_problem()
            if problem:
                raise SandboxError(problem)
            self._protected = isolation.protect(list(protected))
            try:
                self.uid = isolation.DroppedUid()
            except isolation.Unavailable as exc:
                raise SandboxError(str(exc)) from None
        self._start()

    def _command(self, fd: int) -> tuple[list[str], str | None, dict]:
        lib = grader_lib()
        worker = [sys.executable, "-I", "-c", BOOT, self.framework, str(fd)]
        env = {"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg",
               "OMP_NUM_THREADS": "1", "AUTOGRADER_ISOLATION": self.isolation}
        if self.isolation == ISOLATED:
            return ["bwrap", *bwrap_args(lib), *worker], None, env
        self._scratch = self._scratch or tempfile.mkdtemp(prefix="autograder-run-")
        env["HOME"] = self._scratch
        if self.uid is not None:
            env.update(AUTOGRADER_UID=str(self.uid.uid), AUTOGRADER_GID=str(self.uid.gid),
                       AUTOGRADER_SCRATCH=self.uid.scratch,
                       AUTOGRADER_PROTECTED=json.dumps(self._protected))
        return [*worker[:3], BOOT.replace("/opt/grader", lib), *worker[4:]], self._scratch, env

    def _start(self) -> None:
        self.cgroup = _Cgroup(self.limits)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        cmd, cwd, env = self._command(theirs.fileno())
        self.proc = subprocess.Popen(
            cmd, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, cwd=cwd, start_new_session=True,
            preexec_fn=_worker_preexec(self.cgroup), env=env)
        theirs.close()
        self.ctrl = ours
        self.ctrl.settimeout(180)
        try:
            ready = json.loads(self.ctrl.recv(1 << 16) or b"{}")
        except (OSError, ValueError):
            ready = {}
        if ready.get("op") != "ready":
            self.close()
            raise SandboxError(f"the {self.framework} worker did not start")
        if ready.get("confined") != "ok":
            self.close()
            raise SandboxError(f"isolation {self.isolation} does not hold here, refusing to grade: "
                               f"{str(ready.get('confined'))[:500]}")
        self.baseline = ready.get("health")

    def restart(self) -> None:
        self.restarts += 1
        self._stop()
        self._start()

    def open_session(self, op: dict) -> socket.socket:
        self._ooms_at_open = self.cgroup.oom_kills()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            socket.send_fds(self.ctrl, [json.dumps({"op": "session", **op}).encode()], [theirs.fileno()])
        except OSError:
            theirs.close()
            self.restart()
            return self.open_session(op)
        theirs.close()
        return ours

    def end_session(self, grace: bool) -> str:
        """Kill the child and all it started; say how it ended. A worker that the submission may
        have altered (its health differs from when it started) is replaced before the next one."""
        ooms = self._ooms_at_open
        try:
            self.ctrl.settimeout(30)
            self.ctrl.send(json.dumps({"op": "end", "grace_steps": 50 if grace else 0}).encode())
            reply = json.loads(self.ctrl.recv(1 << 16) or b"{}")
        except (OSError, ValueError):
            self.restart()   # the worker itself died (e.g. chosen by the OOM killer)
            return "the process was killed (out of memory?)"
        if reply.get("health") != self.baseline:
            self.restart()
        if self.cgroup.oom_kills() > ooms:
            return f"was killed: it used more than the {self.limits.memory_bytes / 2**30:g} GiB memory limit"
        return reply.get("how", "ended")

    def _stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 9)
            except ProcessLookupError:
                pass
            self.proc.wait()
        try:
            self.ctrl.close()
        except AttributeError:
            pass
        if self.uid is not None:   # the worker may have died before it killed the submission
            self.uid.clean()
        self.cgroup.remove()

    def close(self) -> None:
        self._stop()
        if self.uid is not None:
            self.uid.release()
            self.uid = None
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


# ------------------------------------------------------------------------------- a submission


@dataclass
class CellOutcome:
    index: int
    ok: bool
    error: str = ""


@dataclass
class Reply:
    """What came back from one call, already checked to be plain data."""

    status: str                       # ok | missing | not_implemented | error | died
    value: object = None              # ndarray, tuple of ndarrays/scalars, or a scalar
    types: list[str] = field(default_factory=list)
    error: str = ""
    builtins: list[str] = field(default_factory=list)
    peak_bytes: int = 0               # the call's peak memory over its start, as the student side measured it


class Runner:
    """Runs one submission's cells, then its functions; survives the child's death."""

    def __init__(self, sandbox: Sandbox, cells: list[tuple[int, str]], deadline: float | None = None):
        self.sandbox = sandbox
        self.cells = cells
        self.limits = sandbox.limits
        self.deadline = deadline or time.monotonic() + self.limits.submission_seconds
        self.sock: socket.socket | None = None
        self.outcomes: list[CellOutcome] = []
        self.gave_up = ""
        self.timeouts: dict[str, int] = {}   # function -> calls that hit the time limit
        self.reported: set[str] = set()      # forbidden built-ins the sandbox reported since the last call

    # -- life cycle
    def _open(self) -> None:
        self.sock = self.sandbox.open_session({
            "max_file_bytes": self.limits.max_file_bytes,
            "max_processes": self.limits.max_processes,
            "max_memory_bytes": self.limits.submission_memory_bytes,
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

    def _exchange(self, header: dict, arrays=None, seconds: float = 10.0):
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
            limit = "the submission's time limit" if timeout < seconds else f"the {seconds:.3g} s limit"
            raise Died(self._died(f"timed out: still running after {limit}", grace=False)) from None
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
                raise Died(f"could not restart the notebook: cell {index}: {died}") from None

    # -- calls
    def request(self, request: dict, args: tuple, kwargs: dict) -> Reply:
        """A call, construction or weight load (see sandbox/calls.py); never raises."""
        name = request.get("name", "")
        if self.gave_up:
            return Reply("died", error=self.gave_up)
        if self.timeouts.get(name, 0) >= 2:   # a hanging exercise must not eat the whole budget
            return Reply("died", error="not run: it timed out twice already")
        spec, arrays = convert.encode_args(args, kwargs)
        self.reported.clear()
        try:
            if self.sock is None:
                self._replay()
            head, out = self._exchange({"op": "call", **request, "spec": spec}, arrays,
                                       seconds=self.limits.call_seconds)
        except Died as died:
            if str(died).startswith("timed out"):
                self.timeouts[name] = self.timeouts.get(name, 0) + 1
            return Reply("died", error=str(died), builtins=sorted(self.reported))
        reply = _read_reply(head, out)
        reply.builtins = sorted(set(reply.builtins) | self.reported)
        return reply

    def call(self, name: str, args: tuple, kwargs: dict) -> Reply:
        return self.request({"name": name}, args, kwargs)


@dataclass(frozen=True)
class Handle:
    """An object (a module) that lives on the student's side."""

    id: str


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
        return Reply(status, error=untrusted.neutral(error, MAX_REPLY_ERROR), builtins=builtins)
    result = head.get("result")
    if isinstance(result, dict) and result.get("kind") == "handle":
        handle = result.get("handle")
        if not isinstance(handle, str) or len(handle) > 20:
            return Reply("error", error=MALFORMED, builtins=builtins)
        return Reply("ok", value=Handle(handle), types=["object"], builtins=builtins, peak_bytes=_peak(head))
    try:
        items, types = [], []
        for item in result["items"]:
            if not isinstance(item.get("type"), str):
                raise ValueError("a type that is not a name")
            types.append(untrusted.name(item["type"], 80))
            if "a" in item:
                array = arrays[item["a"]]
                # numbers and booleans only: a string or structured dtype would carry text
                if type(array) is not np.ndarray or array.dtype.kind not in "biufc":
                    raise ValueError("not a plain array")
                items.append(array)
            elif "v" in item and isinstance(item["v"], (bool, int, float)):
                items.append(item["v"])
            elif "none" in item:
                items.append(None)
            else:
                raise ValueError("unknown item")
        value = items[0] if result["kind"] == "single" else tuple(items)
        if result["kind"] == "single" and len(items) != 1:
            raise ValueError("bad single")
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        return Reply("error", error=MALFORMED, builtins=builtins)
    return Reply("ok", value=value, types=types, builtins=builtins, peak_bytes=_peak(head))


def _peak(head: dict) -> int:
    """The reply's "peak_bytes": a non-negative int (below 1 PiB), else 0."""
    peak = head.get("peak_bytes", 0)
    return peak if type(peak) is int and 0 <= peak < 1 << 50 else 0
