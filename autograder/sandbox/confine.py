"""Confinement of one submission's process, applied in the worker's forked child before any cell.

Both isolation levels use it (see autograder/isolation.py for how the level is chosen):
- "bubblewrap": the worker already lives in a sandbox (own namespaces, read-only system);
- "uid-drop": no namespaces, the worker is root, and the child drops to a dedicated unprivileged
  uid that owns nothing of the grader's.

In both, the child gets a seccomp filter (through libseccomp, the kernel's own library, by ctypes:
no Python binding is needed, and the one on PyPI has not been released since 2021) that refuses
- sockets other than AF_UNIX, and io_uring (which opens sockets without socket()): no network;
- ptrace and process_vm_readv/writev: no reading or writing of another process's memory;
- memfd_create: shared memory held by a descriptor, which the worker cannot always see;
- chmod and extended attributes: under bubblewrap run as root, the sandbox user is the owner of
  the host's /dev/null and of the sandbox's /tmp, and a chmod would break every later submission
  (or the host);
- keyrings, namespaces (unshare, setns, and clone with a namespace flag; clone3, whose flags no
  filter can read, answers "not implemented"), mounts, bpf, perf and userfaultfd: kernel state that
  outlives a process or serves exploits.

The worker itself is made non-dumpable, so /proc/<worker>/mem cannot be opened even by its uid.
`kill_uid` and `sweep` undo what a submission left behind under the dropped uid.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import resource
import select
import signal
import socket
import stat
import subprocess
import sys
import time

PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 4, 38
CLONE_NEWNET = 0x40000000
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_NE, SCMP_CMP_MASKED_EQ = 1, 7
# clone() flags that make a namespace: a process in a namespace of its own escapes the caps the
# child's own namespaces carry (ipc.private_namespace's limits on System V memory, for one)
CLONE_NAMESPACES = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000,
                    0x40000000)   # NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET
FCHMODAT2 = 452      # Linux 6.6, one number on every architecture; older libseccomp has no name for it
WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/lock")

# syscall name -> errno returned instead of running it
DENIED = {
    **dict.fromkeys(["io_uring_setup", "io_uring_enter", "io_uring_register"], errno.ENOSYS),
    **dict.fromkeys(["ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd"], errno.EPERM),
    **dict.fromkeys(["chmod", "fchmod", "fchmodat", "setxattr", "lsetxattr", "fsetxattr",
                     "removexattr", "lremovexattr", "fremovexattr"], errno.EPERM),
    # anonymous shared memory that no mapping need show and no folder holds (issue 19, breach 8)
    **dict.fromkeys(["memfd_create", "memfd_secret"], errno.EPERM),
    **dict.fromkeys(["add_key", "request_key", "keyctl", "unshare", "setns", "mount", "umount2",
                     "pivot_root", "bpf", "perf_event_open", "userfaultfd", "open_tree", "move_mount",
                     "fsopen", "fsmount", "fspick", "mount_setattr"], errno.EPERM),
}


class ConfineError(Exception):
    """The confinement could not be applied: the child must not run student code."""


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _libseccomp():
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError:
        raise ConfineError("libseccomp is missing (Debian/Ubuntu: apt-get install libseccomp2)") from None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


def _errno_action(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)   # SCMP_ACT_ERRNO(code)


def load_filter() -> None:
    """Install the seccomp filter on this process and everything it will start. Irreversible."""
    lib = _libseccomp()
    if _libc().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise ConfineError(f"prctl(NO_NEW_PRIVS) failed: {os.strerror(ctypes.get_errno())}")
    ctx = lib.seccomp_init(SCMP_ACT_ALLOW)   # other architectures' syscalls (int 0x80) are killed
    if not ctx:
        raise ConfineError("seccomp_init failed")
    try:
        rules = [(name, code, []) for name, code in DENIED.items()]
        rules.append(("socket", errno.EACCES, [_ArgCmp(0, SCMP_CMP_NE, socket.AF_UNIX, 0)]))
        rules += [("clone", errno.EPERM, [_ArgCmp(0, SCMP_CMP_MASKED_EQ, flag, flag)]) for flag in CLONE_NAMESPACES]
        # clone3 passes its flags in memory, where no filter can read them: "not implemented",
        # and the C library falls back to clone(), which the rules above see
        rules.append(("clone3", errno.ENOSYS, []))
        for name, code, conditions in rules:
            number = lib.seccomp_syscall_resolve_name(name.encode())
            if number < 0:
                continue   # not a syscall on this architecture
            array = (_ArgCmp * len(conditions))(*conditions) if conditions else None
            if lib.seccomp_rule_add_array(ctx, _errno_action(code), number, len(conditions), array) != 0:
                raise ConfineError(f"seccomp rule for {name} was refused")
        if lib.seccomp_syscall_resolve_name(b"fchmodat2") < 0:
            lib.seccomp_rule_add_array(ctx, _errno_action(errno.EPERM), FCHMODAT2, 0, None)
        if lib.seccomp_load(ctx) != 0:
            raise ConfineError("seccomp_load failed")
    finally:
        lib.seccomp_release(ctx)


def make_undumpable() -> None:
    """No /proc/<pid>/mem, no ptrace of this process by anyone without CAP_SYS_PTRACE."""
    _libc().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def private_network() -> bool:
    """An empty network namespace, where the capability exists (root outside Docker's default)."""
    if _libc().unshare(CLONE_NEWNET) == 0:
        return True
    return False


def drop_to(uid: int, gid: int) -> None:
    """Become `uid` for good: no supplementary groups, real, effective and saved ids all changed."""
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        raise ConfineError("could not drop privileges")


# ------------------------------------------------------------------ cleaning up after a uid


def pids_of(uid: int, exclude: int = 0) -> list[int]:
    """Live processes whose real, effective, saved or filesystem uid is `uid` (zombies aside)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == exclude:
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except (OSError, ValueError):
            continue
        if fields.get("State", "").strip()[:1] in ("Z", "X"):
            continue
        if str(uid) in fields.get("Uid", "").split():
            found.append(int(entry))
    return found


def kill_uid(uid: int, rounds: int = 500) -> bool:
    """Kill every process of `uid`, forks included; True when none is left.

    A helper that is `uid` itself calls kill(-1, SIGKILL): the kernel signals all of the uid's
    processes in one pass, which a fork bomb cannot outrun. Only for a single-threaded caller
    (the worker); the trusted side uses `kill_uid_by_pid`."""
    helper = os.fork()
    if helper == 0:
        code = 1
        try:
            os.setresuid(uid, uid, uid)
            me = os.getpid()
            for _ in range(rounds):
                os.kill(-1, signal.SIGKILL)
                if not pids_of(uid, exclude=me):
                    code = 0
                    break
                os.sched_yield()
        finally:
            os._exit(code)
    _, status = os.waitpid(helper, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def kill_uid_by_pid(uid: int, rounds: int = 200) -> bool:
    """The same without forking, for a caller that may have threads: root kills pid by pid."""
    for _ in range(rounds):
        pids = pids_of(uid)
        if not pids:
            return True
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.sched_yield()
    return not pids_of(uid)


# Bounds of one clean-up: a submission's leftovers cost the grader at most this much, and what
# is left beyond them is locked away from the uid (see `quarantine`) and reported, never a crash.
CLEAN_SECONDS, CLEAN_ENTRIES, CLEAN_DEPTH, WRITABLE_DEPTH = 30.0, 500_000, 10_000, 4
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


# A submission's scratch: at most this much on disk (a tmpfs of this size under bubblewrap; a
# watcher of the folder's total under uid-drop) and this many entries.
SCRATCH_BYTES, SCRATCH_ENTRIES = 512 << 20, 20_000


class OverBudget(Exception):
    """The clean-up ran out of time, entries or depth."""


class Budget:
    def __init__(self, seconds: float | None = None, entries: int | None = None, depth: int | None = None):
        self.deadline = time.monotonic() + (CLEAN_SECONDS if seconds is None else seconds)
        self.entries = CLEAN_ENTRIES if entries is None else entries
        self.depth = CLEAN_DEPTH if depth is None else depth
        self.seen = 0

    def tick(self) -> None:
        self.seen += 1
        if self.seen > self.entries:
            raise OverBudget(f"more than {self.entries} entries")
        if self.seen % 256 == 0 and time.monotonic() > self.deadline:
            raise OverBudget("out of time")


def _open_dir(name: str, parent: int) -> int:
    """Open the folder `name` in `parent` without following a link, and make it ours to empty."""
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=parent)
    except PermissionError:
        # a folder made with mode 0: its owner may open it once it has a mode. chmod follows a
        # link, but it runs as the folder's own uid (or on a folder root locked), and the open
        # that follows refuses a link
        os.chmod(name, 0o700, dir_fd=parent)
        fd = os.open(name, DIR_FLAGS, dir_fd=parent)
    try:
        os.fchmod(fd, 0o700)
    except OSError:
        pass
    return fd


def empty_dir(top: int, budget: Budget) -> int:
    """Remove everything inside the open folder `top`: by file descriptors only (unlinkat, openat
    with O_NOFOLLOW, scandir of a descriptor), iteratively, within `budget`. Returns the count
    removed; raises OverBudget or OSError with what is left still in place.

    Never crosses into another file system: a mount point inside `top` (under bubblewrap, the
    read-only binds of a Python that lives under /tmp sit inside the /tmp tmpfs) is left alone,
    and so are the folders that hold it."""
    top_dev = os.fstat(top).st_dev
    stack: list[list] = [[top, "", set()]]   # [fd, name, names left in place: mounts and their holders]
    removed = 0
    try:
        while stack:
            fd, _, kept = stack[-1]
            deeper = None
            with os.scandir(fd) as entries:
                for entry in entries:
                    if entry.name in kept:
                        continue
                    budget.tick()
                    try:
                        if entry.is_dir(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_dev != top_dev:
                            kept.add(entry.name)   # a mount point: not ours to empty
                            continue
                    except OSError:
                        pass
                    try:
                        os.unlink(entry.name, dir_fd=fd)
                        removed += 1
                        continue
                    except FileNotFoundError:
                        continue
                    except IsADirectoryError:
                        pass
                    if len(stack) >= budget.depth:
                        raise OverBudget(f"deeper than {budget.depth} levels")
                    deeper = [_open_dir(entry.name, fd), entry.name, set()]
                    break
            if deeper:
                stack.append(deeper)
                continue
            fd, name, kept = stack.pop()
            if stack:
                os.close(fd)
                if kept:   # emptied around a mount point: the folder itself stays
                    stack[-1][2].add(name)
                    continue
                os.rmdir(name, dir_fd=stack[-1][0])
                removed += 1
    finally:
        for frame in stack[1:]:
            os.close(frame[0])
    return removed


def tree_bytes(path: str, most_entries: int = SCRATCH_ENTRIES) -> int:
    """Disk space used by the folder `path` and all below it (allocated blocks, so a sparse file
    counts what it holds), by descriptors, never following a link. Raises OverBudget past
    `most_entries` entries. Only reads: safe as root on a student's folder."""
    total, seen = 0, 0
    try:
        stack = [os.open(path, DIR_FLAGS)]
    except OSError:
        return 0
    try:
        while stack:
            fd = stack.pop()
            try:
                with os.scandir(fd) as entries:
                    for entry in entries:
                        seen += 1
                        if seen > most_entries:
                            raise OverBudget(f"more than {most_entries} files")
                        try:
                            st = entry.stat(follow_symlinks=False)
                        except OSError:
                            continue
                        total += st.st_blocks * 512
                        if stat.S_ISDIR(st.st_mode):
                            try:
                                stack.append(os.open(entry.name, DIR_FLAGS, dir_fd=fd))
                            except OSError:
                                continue
            finally:
                os.close(fd)
    finally:
        for fd in stack:
            os.close(fd)
    return total


def remove_tree(path: str, budget: Budget | None = None) -> None:
    """Remove the folder `path` and all in it by descriptors; its parent is opened by path, so it
    must be a folder no student can write (the worker's own scratch base, /tmp itself)."""
    parent = os.open(os.path.dirname(os.path.abspath(path)) or "/", DIR_FLAGS)
    try:
        name = os.path.basename(os.path.abspath(path))
        fd = _open_dir(name, parent)
        try:
            empty_dir(fd, budget or Budget())
        finally:
            os.close(fd)
        os.rmdir(name, dir_fd=parent)
    except FileNotFoundError:
        pass
    finally:
        os.close(parent)


def _sweep_here(uid: int, roots, scratch: str, budget: Budget) -> dict:
    """Run AS `uid`: remove what it owns in world-writable folders (descended to WRITABLE_DEPTH)
    and everything in its scratch folder. Returns {"removed": n, "left": [[root, name, why]]}."""
    report = {"removed": 0, "left": []}

    def leave(root: str, name: str, why: str) -> None:
        if len(report["left"]) < 20:
            report["left"].append([root, name, why])

    def visit(fd: int, where: str, depth: int) -> None:
        with os.scandir(fd) as it:
            names = [e.name for e in it]
        for name in names:
            budget.tick()
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError:
                continue
            try:
                if st.st_uid == uid and not stat.S_ISDIR(st.st_mode):
                    os.unlink(name, dir_fd=fd)
                    report["removed"] += 1
                elif st.st_uid == uid:
                    child = _open_dir(name, fd)
                    try:
                        report["removed"] += empty_dir(child, budget)
                    finally:
                        os.close(child)
                    os.rmdir(name, dir_fd=fd)
                    report["removed"] += 1
                elif stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_IWOTH and depth < WRITABLE_DEPTH:
                    child = os.open(name, DIR_FLAGS, dir_fd=fd)
                    try:
                        visit(child, os.path.join(where, name), depth + 1)
                    finally:
                        os.close(child)
            except FileNotFoundError:
                continue
            except (OSError, OverBudget) as exc:
                leave(where, name, str(exc) if isinstance(exc, OverBudget) else exc.strerror or str(exc))
                if isinstance(exc, OverBudget) and "time" in str(exc):
                    raise

    for root in [*roots, *([scratch] if scratch else [])]:
        try:
            fd = os.open(root, DIR_FLAGS)
        except OSError:
            continue
        try:
            if root == scratch:
                report["removed"] += empty_dir(fd, budget)
            else:
                visit(fd, root, 0)
        except (OSError, OverBudget) as exc:
            leave(root, "", str(exc) if isinstance(exc, OverBudget) else exc.strerror or str(exc))
        finally:
            os.close(fd)
    return report


def _become(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    _become_limits()


def sweep(uid: int, gid: int | None = None, roots=WORLD_WRITABLE, scratch: str = "",
          seconds: float = CLEAN_SECONDS) -> dict:
    """Remove what `uid` left where anyone may write, and empty its `scratch` folder.

    The removal runs in a forked child that IS `uid` (it can touch nothing the uid could not), by
    descriptors, iteratively and within a budget; root only waits for it and then locks away what
    it could not remove (`quarantine`). Returns {"removed": n, "left": [[root, name, why]]}; never
    raises for what a submission left. For a single-threaded caller (the worker); the trusted side
    uses `sweep_in_subprocess`."""
    gid = uid if gid is None else gid
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read)
        code = 1
        try:
            _become(uid, gid)
            out = _sweep_here(uid, roots, scratch, Budget(seconds))
            os.write(write, json.dumps(out).encode()[:60000])
            code = 0
        except BaseException as exc:   # noqa: BLE001 (reported, never raised into the worker)
            try:
                os.write(write, json.dumps({"removed": 0, "left": [["", "", f"clean-up failed: {exc}"[:300]]]}).encode())
            except BaseException:   # noqa: BLE001
                pass
        finally:
            os._exit(code)
    os.close(write)
    data, end = b"", time.monotonic() + seconds + 10
    try:
        while time.monotonic() < end:
            ready, _, _ = select.select([read], [], [], max(0.0, end - time.monotonic()))
            if not ready:
                break
            chunk = os.read(read, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(read)
    try:
        os.kill(child, signal.SIGKILL)   # at its end (or stuck): ours, by its id
    except ProcessLookupError:
        pass
    os.waitpid(child, 0)
    return _finish(uid, roots, scratch, data)


def sweep_in_subprocess(uid: int, gid: int, lib: str, roots=WORLD_WRITABLE, scratch: str = "",
                        seconds: float = CLEAN_SECONDS) -> dict:
    """`sweep` for a caller that may have threads: a fresh interpreter started as `uid` (no fork
    of a threaded process), running this file from the sandbox's copy `lib`, which the uid can read."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from autograder.sandbox import confine as c;"
            " c._become_limits(); print(json.dumps(c._sweep_here(int(sys.argv[2]), json.loads(sys.argv[3]),"
            " sys.argv[4], c.Budget(float(sys.argv[5])))))")
    try:
        done = subprocess.run([sys.executable, "-I", "-c", code, lib, str(uid), json.dumps(list(roots)),
                               scratch, str(seconds)], user=uid, group=gid, extra_groups=[],
                              capture_output=True, timeout=seconds + 30, cwd="/", check=False)
        data = done.stdout
        if done.returncode != 0 and not data:
            data = json.dumps({"removed": 0, "left": [["", "", "clean-up failed: " +
                                                     done.stderr.decode(errors="replace")[-300:]]]}).encode()
    except (OSError, subprocess.SubprocessError) as exc:
        data = json.dumps({"removed": 0, "left": [["", "", f"clean-up failed: {exc}"[:300]]]}).encode()
    return _finish(uid, roots, scratch, data)


def _become_limits() -> None:
    """One descriptor per level of a deep tree: the soft limit up to the hard one."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _finish(uid: int, roots, scratch: str, data: bytes) -> dict:
    try:
        report = json.loads(data or b"null") or {"removed": 0, "left": [["", "", "the clean-up gave no answer (killed at its time limit?)"]]}
    except ValueError:
        report = {"removed": 0, "left": [["", "", "the clean-up's answer was unreadable"]]}
    # Whatever the uid could not remove is locked away from it, so the next submission does not
    # find it: the top-level folders it owns in each root (and the scratch folder), by descriptor.
    for root in [*roots, *([scratch] if scratch else [])]:
        if root == scratch:
            report["locked"] = report.get("locked", []) + quarantine(uid, os.path.dirname(scratch),
                                                                     [os.path.basename(scratch)], always=False)
        elif any(r == root for r, _, _ in report.get("left", [])):
            try:
                names = os.listdir(root)
            except OSError:
                continue
            report["locked"] = report.get("locked", []) + quarantine(uid, root, names)
    _remove_ipc(uid)
    return report


def quarantine(uid: int, root: str, names: list[str], always: bool = True) -> list[str]:
    """As root, strictly by descriptors: each folder `name` of `root` that `uid` owns becomes root's,
    mode 0, so the uid can no longer enter it. With always=False, only a folder that is not empty."""
    locked = []
    try:
        parent = os.open(root, DIR_FLAGS)
    except OSError:
        return locked
    try:
        for name in names:
            try:
                fd = os.open(name, DIR_FLAGS, dir_fd=parent)
            except OSError:
                continue
            try:
                st = os.fstat(fd)
                if st.st_uid != uid:
                    continue
                if not always:
                    with os.scandir(fd) as it:
                        if next(it, None) is None:
                            continue
                os.fchown(fd, 0, 0)
                os.fchmod(fd, 0)
                locked.append(os.path.join(root, name))
            except OSError:
                continue
            finally:
                os.close(fd)
    finally:
        os.close(parent)
    return locked


def describe_left(report: dict) -> str:
    """One line for the instructor and the terminal, or "" when everything was removed."""
    left = report.get("left") or []
    if not left:
        return ""
    shown = "; ".join(f"{os.path.join(r, n) if n else r or 'the clean-up'}: {why}" for r, n, why in left[:3])
    locked = report.get("locked") or []
    tail = f" (locked away from the student's uid: {', '.join(locked[:3])})" if locked else ""
    return (f"the submission's files could not all be removed after it ran: {shown}{tail}; "
            "the next submission gets a fresh scratch folder")


def _remove_ipc(uid: int) -> None:
    """System V shared memory, queues and semaphores outlive processes: remove the uid's (ipc.py's
    removal, the one the worker runs after each submission)."""
    from autograder.sandbox import ipc

    ipc._sysv(uid)


def wipe(folder: str, mode: int) -> None:
    """Empty a folder the worker owns (bubblewrap's /tmp, /dev/shm) and give it back its mode.
    Inside bubblewrap the worker and the submission are one uid; descriptors and a budget anyway."""
    os.chmod(folder, mode)
    fd = os.open(folder, DIR_FLAGS)
    try:
        empty_dir(fd, Budget())
    finally:
        os.close(fd)
