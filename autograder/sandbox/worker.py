"""The sandbox's resident worker: imports the framework once, then forks a child per submission.

Importing TensorFlow costs seconds; forking a process that has already imported it costs
milliseconds. So one worker per framework lives inside the sandbox for the whole batch, and each
submission runs in a fresh forked child that talks to the trusted side over its own socket.

    python -I worker.py FRAMEWORK CONTROL_FD

The control socket (SOCK_SEQPACKET) carries small JSON messages, and with `session` the file
descriptor of the child's socket. `end` kills the child and everything it started (the worker is a
child subreaper, so orphans come back to it), puts back what the submission changed (bubblewrap's
/tmp and /dev/shm are emptied and get their mode back; under "uid-drop" every process of the
dropped uid is killed and its files removed), and reports how the child ended and the worker's
health: a few framework results computed again, compared by the trusted side with those of the
fresh worker, so that a worker a submission managed to alter is restarted.

The isolation level comes in AUTOGRADER_ISOLATION ("bubblewrap", "uid-drop" or "none"); see
confine.py for what the child gets in each.
"""
from __future__ import annotations

import builtins
import ctypes
import json
import os
import resource
import select
import signal
import socket
import sys
import tempfile
import time
import types

from autograder.sandbox import calls, confine, convert, ipc, landlock, peak, protocol, tracer

PR_SET_CHILD_SUBREAPER = 36
LEVEL = os.environ.get("AUTOGRADER_ISOLATION", "none")
# under "uid-drop": who the child becomes, and the root-owned folder (0711) of its scratch folders
DROP_UID = int(os.environ.get("AUTOGRADER_UID", "0") or 0)
DROP_GID = int(os.environ.get("AUTOGRADER_GID", "0") or 0)
SCRATCH_BASE = os.environ.get("AUTOGRADER_SCRATCH", "")
# places a bubblewrap sandbox may write to, emptied after every submission
SANDBOX_WRITABLE = ("/tmp", "/dev/shm")
OWN_IPC = False   # each child has an IPC namespace of its own (found by self_test)


def _prepare(framework: str) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if framework == "torch":
        import torch

        torch.set_num_threads(1)   # one core per submission; --jobs gives parallelism
        torch.set_num_interop_threads(1)
    else:
        import tensorflow as tf
        import keras  # noqa: F401  (imported now so children don't pay for it)

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    import numpy  # noqa: F401
    convert.pin()   # the real tensor classes, before any student code can rebind them
    tracer.install(framework)


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _kill_all_below_me() -> None:
    me = os.getpid()
    own_namespace = os.environ.get("AUTOGRADER_PID_NAMESPACE") == "1"
    for _ in range(200):   # a fork bomb keeps forking while we kill; go round until none is left
        if own_namespace:
            # Everything in the sandbox's PID namespace but us and its init, in one call.
            try:
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:
                pass
        pids = _descendants(me)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _reap()
        select.select([], [], [], 0.005)


def _reap(statuses: dict[int, int] | None = None) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if statuses is not None:
            statuses[pid] = status


def _tmpfs_roots(roots) -> tuple[str, ...]:
    """Those of `roots` that are memory (tmpfs): a file there is memory in no process's resident set."""
    try:
        with open("/proc/self/mounts") as f:
            mounts = {fields[1]: fields[2] for fields in (line.split() for line in f) if len(fields) > 2}
    except OSError:
        return ("/dev/shm",)
    return tuple(root for root in roots if mounts.get(root) == "tmpfs")


# under uid-drop: the host's world-writable folders that are memory, whose files of the dropped uid count
SHARED_TMPFS = _tmpfs_roots(confine.WORLD_WRITABLE) if LEVEL == "uid-drop" else ()


def _held_bytes() -> int:
    """The submission's memory, shared memory and tmpfs files included (peak.submission_bytes);
    every process below the worker is the submission's (orphans come back to us, the subreaper)."""
    if LEVEL == "uid-drop":
        return peak.submission_bytes(_descendants(os.getpid()), DROP_UID, shared_roots=SHARED_TMPFS)
    return peak.submission_bytes(_descendants(os.getpid()), None, SANDBOX_WRITABLE if LEVEL == "bubblewrap" else ())


def _describe(status: int | None, memory_limit: int = 0, disk: str = "") -> dict:
    if disk:
        return {"how": f"was killed: {disk}"}
    if memory_limit:
        return {"how": f"was killed: it used more than the {memory_limit / 2**30:g} GiB memory limit"}
    if status is None:
        return {"how": "killed by the grader"}
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return {"how": f"killed by signal {sig} ({signal.Signals(sig).name})", "signal": sig}
    return {"how": f"exited with status {os.WEXITSTATUS(status)}", "exit": os.WEXITSTATUS(status)}


def health(framework: str) -> dict:
    """What the trusted side compares after each submission with the fresh worker's answer.

    The numbers are computed in a forked child, a copy of the worker's memory as the next
    submission will get it: the worker itself runs no framework op (TensorFlow's runtime, once
    started, does not survive a fork)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            os.write(write, json.dumps(_framework_numbers(framework)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    modes = {path: oct(os.stat(path).st_mode) for path in _writable()}
    return {"numbers": json.loads(data or b"null"), "modes": modes}


def _framework_numbers(framework: str) -> list[float]:
    values = [0.0, 1.0, -2.5, 3.25]
    if framework == "torch":
        import torch

        x = torch.tensor(values)
        computed = [torch.exp(x), torch.log(x.abs() + 1), torch.tanh(x), torch.softmax(x, -1),
                    torch.sqrt(x.abs()), x @ x, torch.where(x > 0, x, -x), torch.matmul(x[None], x[:, None])]
        numbers = [float(v) for t in computed for v in t.reshape(-1).tolist()]
    else:
        import tensorflow as tf

        x = tf.constant(values)
        computed = [tf.exp(x), tf.math.log(tf.abs(x) + 1), tf.tanh(x), tf.nn.softmax(x),
                    tf.sqrt(tf.abs(x)), tf.tensordot(x, x, 1), tf.where(x > 0, x, -x),
                    tf.matmul(x[None], x[:, None])]
        numbers = [float(v) for t in computed for v in tf.reshape(t, [-1]).numpy().tolist()]
    import numpy

    return numbers + numpy.exp(numpy.array(values)).tolist()


def _writable() -> tuple[str, ...]:
    if LEVEL == "bubblewrap":
        return SANDBOX_WRITABLE
    return (SCRATCH_BASE,) if SCRATCH_BASE else ()


def _new_scratch() -> str:
    """A private folder per submission: its cwd, HOME and TMPDIR."""
    if LEVEL == "uid-drop":
        folder = tempfile.mkdtemp(prefix="submission-", dir=SCRATCH_BASE)
        os.chown(folder, DROP_UID, DROP_GID)
        return folder
    return tempfile.mkdtemp(prefix="submission-")


def _reset(scratch: str, modes: dict) -> dict:
    """After the submission's processes are gone: nothing of it may remain for the next one.

    Returns the clean-up's report ({"removed", "left", "locked"}); what could not be removed is
    locked away from the uid and reported, never raised (a student's leftovers cannot stop grading)."""
    if LEVEL == "bubblewrap":
        for path in SANDBOX_WRITABLE:
            confine.wipe(path, int(modes[path], 8))
        ipc.clean(None)   # the sandbox's processes are gone: every object in its namespace is the submission's
        return {}
    if LEVEL == "uid-drop":
        if not confine.kill_uid(DROP_UID):
            raise RuntimeError(f"processes of uid {DROP_UID} survived")
        # As the uid itself, by descriptors (confine.sweep): root resolves no path a student can change.
        report = confine.sweep(DROP_UID, DROP_GID, scratch=scratch if os.path.isdir(scratch) else "")
        if scratch and not report.get("locked"):
            base = os.open(SCRATCH_BASE, confine.DIR_FLAGS)   # root's, 0711: no student writes here
            try:
                os.rmdir(os.path.basename(scratch), dir_fd=base)
            except FileNotFoundError:
                pass
            finally:
                os.close(base)
        ipc.clean(DROP_UID, own_namespace=OWN_IPC)
        return report
    if os.path.lexists(scratch):
        confine.wipe(scratch, 0o700)
        os.rmdir(scratch)
    return {}


def self_test(protected: list[str]) -> str:
    """Before any submission: apply the child's confinement in a test child, and try what a hostile
    submission would. "ok", or what is wrong (then the trusted side refuses to grade here)."""
    if LEVEL == "none":
        return "ok"
    global OWN_IPC
    scratch = _new_scratch()
    read, write = os.pipe()
    probe = os.fork()
    if probe == 0:
        os.close(read)
        namespace = ""
        try:
            namespace = _confine(scratch, 256 << 20)   # the IPC namespace's caps are tried as well
            problem = _probe_confinement(protected, scratch)
        except BaseException as exc:   # noqa: BLE001 (any failure is a refusal, reported as text)
            problem = f"confinement failed: {exc}"
        os.write(write, json.dumps({"problem": problem[:3000], "ipc": namespace[:200]}).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        said = json.loads(f.read() or b"{}")
    os.waitpid(probe, 0)
    OWN_IPC = said.get("ipc") == "own"   # every child gets the same; ipc.clean needs no helper then
    _reset(scratch, {path: oct(os.stat(path).st_mode) for path in _writable()})
    return said.get("problem") or "the self-test child died"


def _probe_confinement(protected: list[str], scratch: str) -> str:
    import sysconfig

    for family, kind in ((socket.AF_INET, socket.SOCK_STREAM), (socket.AF_INET, socket.SOCK_DGRAM),
                         (socket.AF_INET6, socket.SOCK_STREAM), (socket.AF_NETLINK, socket.SOCK_RAW)):
        try:
            socket.socket(family, kind).close()
            return f"a submission could open a {family.name} socket (no network filter)"
        except OSError:
            pass
    try:
        open(f"/proc/{os.getppid()}/mem", "r+b").close()
        return "a submission could open the worker's memory"
    except OSError:
        pass
    needed = {sysconfig.get_paths()[key] for key in ("stdlib", "purelib", "platlib")}
    for path in sorted(needed) + [os.path.dirname(calls.__file__)]:
        if not os.access(path, os.R_OK | os.X_OK):
            return f"the submission's uid cannot read {path}, which Python needs"
    for path in protected:
        try:
            if os.path.isdir(path):
                os.listdir(path)
            else:
                open(path, "rb").close()
            return f"the submission's uid can read the grader's {path}"
        except FileNotFoundError:
            continue
        except OSError:
            pass
    try:
        with open(os.path.join(scratch, "probe"), "w") as f:
            f.write("x")
    except OSError as exc:
        return f"the submission cannot write its own scratch folder: {exc}"
    if LEVEL == "uid-drop" and landlock.enabled():
        try:
            os.listdir("/tmp")
            return "Landlock is on but the submission could list /tmp (no filesystem wall)"
        except OSError:
            pass
    return "ok"


def serve(framework: str, ctrl: socket.socket) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    confine.make_undumpable()   # /proc/<worker>/mem stays closed to the submissions it forks
    _prepare(framework)
    protected = json.loads(os.environ.get("AUTOGRADER_PROTECTED", "[]"))
    confined = self_test(protected)
    baseline = health(framework)
    modes = baseline["modes"]
    wall = landlock.status() if LEVEL == "uid-drop" else ""
    ctrl.send(json.dumps({"op": "ready", "pid": os.getpid(), "confined": confined, "health": baseline,
                          "landlock": wall}).encode())
    statuses: dict[int, int] = {}
    child, memory_limit, over_memory, scratch, over_disk, disk_at = None, 0, 0, "", "", 0.0
    while True:
        # While a submission runs, look at its memory often: where no cgroup caps it, this does.
        ready, _, _ = select.select([ctrl], [], [], 0.05 if child else 0.5)
        _reap(statuses)
        if child and memory_limit and not over_memory and child not in statuses:
            if _held_bytes() > memory_limit:
                over_memory = memory_limit
                _kill_all_below_me()
        if child and LEVEL == "uid-drop" and not over_disk and time.monotonic() > disk_at:
            over_disk, disk_at = _over_disk(scratch), time.monotonic() + 0.25
            if over_disk:
                _kill_all_below_me()
        if not ready:
            continue
        msg, fds, _, _ = socket.recv_fds(ctrl, 1 << 16, 1)
        if not msg:
            _kill_all_below_me()
            return
        op = json.loads(msg)
        if op["op"] == "session" and fds:
            scratch = _new_scratch()
            try:
                child = os.fork()
            except OSError:   # the process cap is still full of a fork bomb's remains
                _kill_all_below_me()
                child = os.fork()
            if child == 0:
                ctrl.close()
                try:
                    _run_child(socket.socket(fileno=fds[0]), framework, op, scratch)
                finally:
                    os._exit(0)
            os.close(fds[0])
            memory_limit, over_memory, over_disk = int(op.get("max_memory_bytes", 0)), 0, ""
        elif op["op"] == "end":
            # Give a child that is exiting by itself a moment, so its own status is reported.
            for _ in range(op.get("grace_steps", 0)):
                _reap(statuses)
                if child in statuses:
                    break
                select.select([], [], [], 0.01)
            _kill_all_below_me()
            _reap(statuses)
            ended = _describe(statuses.pop(child, None), over_memory, over_disk)
            try:
                ended["cleanup"] = confine.describe_left(_reset(scratch, modes))
                ended["health"] = health(framework)
            except Exception as exc:   # noqa: BLE001 (the trusted side restarts us on any doubt)
                ended["health"] = {"error": str(exc)[:500]}
            _reap(statuses)
            ctrl.send(json.dumps({"op": "ended", **ended}).encode())
            statuses.clear()
            child, memory_limit, over_memory, scratch, over_disk = None, 0, 0, "", ""


def _over_disk(scratch: str) -> str:
    """Under uid-drop the scratch folder is a plain folder on the host's disk: its total is
    watched (bubblewrap's /tmp is a tmpfs of the same size). "" or why the submission is killed."""
    try:
        used = confine.tree_bytes(scratch)
    except confine.OverBudget as exc:
        return f"it made {exc} in its scratch folder"
    if used > confine.SCRATCH_BYTES:
        return f"it wrote more than {confine.SCRATCH_BYTES >> 20} MiB to its scratch folder"
    return ""


# ---------------------------------------------------------------- the child: one submission


def _limit(op: dict) -> None:
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")   # under memory pressure, the submission goes first, not the worker
    except OSError:
        pass
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    fsize = op.get("max_file_bytes", 64 << 20)
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    if op.get("max_processes"):
        n = op["max_processes"]
        resource.setrlimit(resource.RLIMIT_NPROC, (n, n))


def _quiet() -> None:
    """Student output goes nowhere: a flood costs them time, not the grader memory."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


def _strip_magics(source: str) -> str:
    """IPython syntax has no meaning outside a kernel; graded code is plain Python."""
    if source.lstrip().startswith("%%"):
        return ""
    return "\n".join(
        "pass  # " + line if line.lstrip().startswith(("%", "!")) else line
        for line in source.splitlines()
    )


def _confine(scratch: str, memory_bytes: int = 0) -> str:
    """Everything the child gets before it runs a line of student code (see confine.py).
    -> whether the child has an IPC namespace of its own ("own", or why not)."""
    namespace = ""
    if LEVEL != "none":   # own IPC namespace where it can be made; ipc.clean afterwards anyway
        namespace = ipc.private_namespace(memory_bytes)
    if LEVEL == "uid-drop":
        confine.private_network()   # where root has the capability; the seccomp filter anyway
    os.chdir(scratch)
    os.environ.update(HOME=scratch, TMPDIR=scratch)
    tempfile.tempdir = scratch
    if LEVEL == "uid-drop":
        confine.drop_to(DROP_UID, DROP_GID)
        if landlock.enabled():
            landlock.restrict(*_landlock_paths(scratch))
    if LEVEL != "none":
        confine.load_filter()
    return namespace


def _landlock_paths(scratch: str) -> tuple[list[str], list[str]]:
    """What the uid-drop child may read, and write, under Landlock (see landlock.py)."""
    import sysconfig

    lib = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(confine.__file__))))
    python = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
              os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))),
              *(sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib"))}
    read_only = [*landlock.SYSTEM, *sorted(python), lib, "/proc", "/sys/devices/system/cpu",
                 *landlock.READ_ONLY_DEVICES]
    # The child's own clear_refs: sandbox/peak.py resets the peak resident set there before each
    # call. Writable by the student too, as before Landlock (issue 19's breach 5 moves the measure
    # out of the child); without it every peak under uid-drop read 0.
    return read_only, [scratch, os.devnull, f"/proc/{os.getpid()}/clear_refs"]


def _run_child(sock: socket.socket, framework: str, op: dict, scratch: str) -> None:
    os.setsid()
    _quiet()
    _limit(op)
    _confine(scratch, int(op.get("max_memory_bytes", 0)))
    tracer.remove(op.get("remove_builtins") or ())   # before any student code: see tracer.remove
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = main
    namespace, handles = main.__dict__, {}
    tracer.report_to(sock)   # each forbidden call is reported at once, out of the student's reach
    while True:
        try:
            header, arrays = protocol.recv(sock)
        except protocol.ProtocolError:
            return
        kind = header.get("op")
        if kind == "cell":
            protocol.send(sock, _run_cell(header, namespace))
        elif kind == "call":
            reply, out = calls.perform(header, arrays, namespace, handles, framework)
            protocol.send(sock, reply, out)
        else:
            return


def _run_cell(header: dict, namespace: dict) -> dict:
    """One cell, statement by statement: a top-level statement that reaches a removed built-in
    (tracer.remove: a comparison with F.scaled_dot_product_attention, as the chapter pages make)
    is skipped, and the cell goes on, so the definitions after it still exist. Nothing it would
    have computed exists; any other error ends the cell, as in a kernel."""
    import ast

    name = f"<code cell {header['index']}>"
    skipped = []
    try:
        tree = ast.parse(_strip_magics(header["source"]), name)
        future = any(isinstance(node, ast.ImportFrom) and node.module == "__future__" for node in tree.body)
        units = [tree] if future else [ast.Module([node], []) for node in tree.body]
        for unit in units:
            try:
                exec(compile(unit, name, "exec"), namespace)
            except tracer.Removed as exc:
                skipped.append(f"line {getattr(unit.body[0], 'lineno', 0)}: {exc}"[:300])
    except BaseException as exc:   # SystemExit and KeyboardInterrupt too: a cell cannot stop us
        return {"ok": False, "error": calls.error_text(exc)}
    return {"ok": True, "skipped": skipped} if skipped else {"ok": True}


if __name__ == "__main__":
    serve(sys.argv[1], socket.socket(fileno=int(sys.argv[2])))
