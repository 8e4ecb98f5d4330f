"""The sandboxed workers: one resident worker process per framework, trusted side.

A `Sandbox` is one resident worker per framework (see sandbox/worker.py), at one of the isolation
levels of autograder/isolation.py:
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

The worker is started here, restarted when it dies or when its health check differs from its
first, and hands out sessions (one per submission); what happens in a session is session.py's.
"""
from __future__ import annotations

import atexit
import ctypes
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from autograder import chapters, isolation
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
# glibc serves a block above this from its own mmap, given back on free. Left to itself, it raises
# the threshold after the first large free and serves later blocks from a heap that fragments and
# stays resident: an attention computed block by block at n = 16384 then measured 1.1 GB at its
# peak (VmHWM), and a later 400 MB tensor none at all. Fixed at 1 MiB: 56 MB, as the blocks need.
ALLOCATOR_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 20)}


_CHAPTER = chapters.Limits()   # a chapter's defaults; grade.submission_limits reads its own record


@dataclass
class Limits:
    call_seconds: float = _CHAPTER.call_seconds         # one call of a student's function
    cell_seconds: float = _CHAPTER.cell_seconds         # one notebook cell
    submission_seconds: float = _CHAPTER.submission_seconds
    memory_bytes: int = 4 << 30      # cgroup cap, worker + submission; TF alone is ~0.6 GiB
    submission_memory_bytes: int = _CHAPTER.memory_mb << 20   # the submission's own anonymous memory, watched
    max_processes: int = 64
    max_file_bytes: int = 64 << 20
    # the built-ins (tracer.KNOWN names) taken out of the submission's process before its code
    # runs (tracer.remove): the chapter record's `forbidden`, unless an exercise may use them
    removed_builtins: tuple[str, ...] = ()


class SandboxError(Exception):
    """The sandbox itself could not be started (not the student's fault)."""


@lru_cache(maxsize=1)
def grader_lib() -> str:
    """A private copy of the sandbox package: the only grader code the sandbox can see."""
    root = Path(tempfile.mkdtemp(prefix="autograder-lib-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    pkg = root / "autograder"
    shutil.copytree(SANDBOX_SRC, pkg / "sandbox", ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "__init__.py").write_text(STUB_INIT)
    # a handed-out notebook (`python -m autograder release`) binds check to `course_checks`:
    # the same stub, so that it runs as the repository's notebooks do
    (root / "course_checks").mkdir()
    (root / "course_checks" / "__init__.py").write_text(STUB_INIT)
    os.chmod(root, 0o755)
    return str(root)


def bwrap_args(lib: str, tmpfs_bytes: int = 2 << 30) -> list[str]:
    # /tmp and /dev/shm are the only writable places; the worker empties them after each
    # submission. Everything else is read-only, "/" and /dev included, so nothing planted there
    # reaches the next submission. Both are memory (tmpfs): each is capped at `tmpfs_bytes`, and
    # what they hold counts against the submission's memory (peak.submission_bytes). /dev/mqueue
    # shows the sandbox's POSIX message queues, so the worker can remove them (ipc.clean).
    size = str(tmpfs_bytes)
    args = ["--unshare-all", "--uid", "65534", "--gid", "65534", "--die-with-parent",
            "--new-session", "--proc", "/proc", "--dev", "/dev", "--size", size, "--tmpfs", "/dev/shm",
            "--size", str(confine.SCRATCH_BYTES), "--tmpfs", "/tmp",   # a submission's disk: capped
            "--mqueue", "/dev/mqueue",
            "--clearenv", "--setenv", "HOME", "/tmp", "--setenv", "PATH", "/usr/bin:/bin",
            "--setenv", "TF_CPP_MIN_LOG_LEVEL", "3", "--setenv", "MPLBACKEND", "Agg",
            "--setenv", "OMP_NUM_THREADS", "1", "--setenv", "AUTOGRADER_PID_NAMESPACE", "1",
            "--setenv", "AUTOGRADER_ISOLATION", ISOLATED, "--chdir", "/tmp"]
    for name, value in ALLOCATOR_ENV.items():
        args += ["--setenv", name, value]
    system = ["/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache", "/etc/ld.so.conf",
              "/etc/ld.so.conf.d", "/etc/alternatives", "/etc/localtime", "/etc/passwd", "/etc/group"]
    python = {sys.base_prefix, sys.prefix, str(Path(os.path.realpath(sys.executable)).parent.parent)}
    for path in system + sorted(python):
        if os.path.exists(path):
            args += ["--ro-bind", path, path]
    return args + ["--ro-bind", lib, "/opt/grader", "--remount-ro", "/dev", "--remount-ro", "/"]


CGROUP_ROOTS = (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup/pids"))
# cgroups are named PREFIX-PID-N; a test sets its own prefix (AUTOGRADER_CGROUP_PREFIX) to tell its
# run's cgroups from those of graders that other tests kill on purpose at the same time
CGROUP_PREFIX = re.sub(r"[^A-Za-z0-9_]", "", os.environ.get("AUTOGRADER_CGROUP_PREFIX", "")) or "autograder"


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
    """cgroups `PREFIX-PID-N` of graders that died (killed, crashed): kill what is left in
    them, then remove them. Once per process, before it makes its own."""
    removed = []
    for root in CGROUP_ROOTS:
        for folder in root.glob(f"{CGROUP_PREFIX}-*-*"):
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
        name = f"{CGROUP_PREFIX}-{os.getpid()}-{next(_ids)}"
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


def _tree(root: int) -> list[int]:
    """`root` and every process below it, by the kernel's children lists (no scan of /proc)."""
    out, todo = [], [root]
    while todo and len(out) < 4096:
        pid = todo.pop()
        out.append(pid)
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks[:256]:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
            except (OSError, ValueError):
                continue
    return out


def _resident(pid: int) -> int:
    """Anonymous and shared memory of one process (RssAnon + RssShmem), in bytes."""
    total = 0
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith((b"RssAnon:", b"RssShmem:")):
                    total += int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return total


def _reaped_faults(pid: int) -> int:
    """The page faults of the children `pid` has waited for (cminflt + cmajflt, /proc/<pid>/stat):
    rises whenever a process below it ends and is reaped, however briefly it lived."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[8]) + int(fields[10])
    except (OSError, ValueError, IndexError):
        return 0


class CallMeter:
    """The peak memory of one call, measured from the trusted side: the student's process can
    neither see nor reset it (its own VmHWM, /proc/self/clear_refs, is not read).

    While a call runs, a thread of the grader samples every process below the worker (the
    submission, and whatever it started in its cells) every `PERIOD` seconds: the sum of their
    anonymous and shared resident memory, less the sum when the call began. Building an (n, n)
    matrix and filling it takes many periods; a peak shorter than one period can be missed (the
    report is a lower bound). Between calls the thread sleeps. Copy-on-write copies of the worker's
    pages do not count (they are resident in the child already), which a cgroup's usage would.

    A graded call may not start a process (work done in a process that ends between two samples
    would escape the measure): `stop` says whether one did, by two signs the call cannot hide, a
    process below the worker that was not there when the call began, or a process of the tree that
    reaped a child meanwhile (the page faults of its waited-for children, /proc/<pid>/stat, rose)."""

    PERIOD = 0.002    # seconds between samples
    TREE_EVERY = 10   # samples between two walks of the process tree

    def __init__(self, root: int):
        self.root = root
        self._go = threading.Event()
        self._lock = threading.Lock()
        self._base = self._peak = 0
        self._pids: list[int] = []
        self._reaped: dict[int, int] = {}
        self._run = True
        self.samples = 0
        self.forked = False   # the last call started a process
        self._thread = threading.Thread(target=self._loop, name=f"call-meter-{root}", daemon=True)
        self._thread.start()

    def _sum(self, pids: list[int]) -> int:
        return sum(_resident(pid) for pid in pids)

    def start(self) -> None:
        pids = _tree(self.root)
        reaped = {pid: _reaped_faults(pid) for pid in pids}
        with self._lock:
            self._pids, self._reaped, self.forked = pids, reaped, False
            self._base = self._peak = self._sum(pids)
        self._go.set()

    def stop(self) -> int:
        """-> the call's peak rise in bytes; `forked` tells whether the call started a process."""
        self._go.clear()
        with self._lock:   # waits for a sample in progress; one last sample after the reply
            pids = _tree(self.root)
            self._peak = max(self._peak, self._sum(pids))
            before = set(self._reaped)
            self.forked = (any(pid not in before for pid in pids)
                           or any(_reaped_faults(pid) > faults for pid, faults in self._reaped.items()))
            return max(0, self._peak - self._base)

    def _loop(self) -> None:
        n = 0
        while self._run:
            if not self._go.wait(0.5):
                continue
            with self._lock:
                if not self._go.is_set():
                    continue
                n += 1
                if n % self.TREE_EVERY == 0:
                    pids = _tree(self.root)
                    self.forked = self.forked or any(pid not in self._reaped for pid in pids)
                    self._pids = pids
                self._peak = max(self._peak, self._sum(self._pids))
                self.samples += 1
            time.sleep(self.PERIOD)

    def close(self) -> None:
        self._run = False
        self._go.set()


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
        self.landlock = ""
        self.cleanup_notes: list[str] = []   # taken by grade.py into the submission's instructor notes
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
               "OMP_NUM_THREADS": "1", "AUTOGRADER_ISOLATION": self.isolation, **ALLOCATOR_ENV}
        if self.isolation == ISOLATED:
            return ["bwrap", *bwrap_args(lib, self.limits.submission_memory_bytes), *worker], None, env
        self._scratch = self._scratch or tempfile.mkdtemp(prefix="autograder-run-")
        env["HOME"] = self._scratch
        if self.uid is not None:
            env.update(AUTOGRADER_UID=str(self.uid.uid), AUTOGRADER_GID=str(self.uid.gid),
                       AUTOGRADER_SCRATCH=self.uid.scratch,
                       AUTOGRADER_PROTECTED=json.dumps(self._protected))
            if os.environ.get("AUTOGRADER_NO_LANDLOCK") == "1":
                env["AUTOGRADER_NO_LANDLOCK"] = "1"
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
        self.meter = CallMeter(self.proc.pid)
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
        self.landlock = ready.get("landlock", "")   # uid-drop only: "on (ABI n)" or "off (why)"

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
        if reply.get("cleanup"):   # leftovers the worker could not remove: contained, reported
            self.cleanup_notes.append(reply["cleanup"])
            print(f"grader: {reply['cleanup']}", file=sys.stderr, flush=True)
        if reply.get("health") != self.baseline:
            self.restart()
        if self.cgroup.oom_kills() > ooms:
            return f"was killed: it used more than the {self.limits.memory_bytes / 2**30:g} GiB memory limit"
        return reply.get("how", "ended")

    def _stop(self) -> None:
        if getattr(self, "meter", None) is not None:
            self.meter.close()
            self.meter = None
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
