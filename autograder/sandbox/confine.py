"""Confinement of one submission's process, applied in the worker's forked child before any cell.

Both isolation levels use it (see autograder/isolation.py for how the level is chosen):
- "bubblewrap": the worker already lives in a sandbox (own namespaces, read-only system);
- "uid-drop": no namespaces, the worker is root, and the child drops to a dedicated unprivileged
  uid that owns nothing of the grader's.

In both, the child gets a seccomp filter (through libseccomp, the kernel's own library, by ctypes:
no Python binding is needed, and the one on PyPI has not been released since 2021) that refuses
- sockets other than AF_UNIX, and io_uring (which opens sockets without socket()): no network;
- ptrace and process_vm_readv/writev: no reading or writing of another process's memory;
- chmod and extended attributes: under bubblewrap run as root, the sandbox user is the owner of
  the host's /dev/null and of the sandbox's /tmp, and a chmod would break every later submission
  (or the host);
- keyrings, namespaces, mounts, bpf, perf and userfaultfd: kernel state that outlives a process or
  serves exploits.

The worker itself is made non-dumpable, so /proc/<worker>/mem cannot be opened even by its uid.
`kill_uid` and `sweep` undo what a submission left behind under the dropped uid.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import shutil
import signal
import socket
import stat

PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 4, 38
CLONE_NEWNET = 0x40000000
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_NE = 1
FCHMODAT2 = 452      # Linux 6.6, one number on every architecture; older libseccomp has no name for it
WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/lock")

# syscall name -> errno returned instead of running it
DENIED = {
    **dict.fromkeys(["io_uring_setup", "io_uring_enter", "io_uring_register"], errno.ENOSYS),
    **dict.fromkeys(["ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd"], errno.EPERM),
    **dict.fromkeys(["chmod", "fchmod", "fchmodat", "setxattr", "lsetxattr", "fsetxattr",
                     "removexattr", "lremovexattr", "fremovexattr"], errno.EPERM),
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


def _remove(path: str) -> None:
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode):
        os.chmod(path, 0o700)   # a submission may have made its own folder unreadable
        shutil.rmtree(path, onerror=_unlock_and_retry)
    else:
        os.unlink(path)


def _unlock_and_retry(func, path, _exc) -> None:
    parent = os.path.dirname(path)
    try:
        os.chmod(parent, 0o700)
        if os.path.isdir(path) and not os.path.islink(path):
            os.chmod(path, 0o700)
            shutil.rmtree(path, ignore_errors=True)
        else:
            func(path)
    except OSError:
        pass


def sweep(uid: int, roots=WORLD_WRITABLE) -> list[str]:
    """Remove what `uid` left where anyone may write; returns what was removed.

    A uid without groups can only create files in world-writable folders, or in folders it owns
    (removed whole), so descending into world-writable folders finds everything."""
    removed = []

    def visit(folder: str) -> None:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_uid == uid:
                try:
                    _remove(entry.path)
                    removed.append(entry.path)
                except OSError:
                    pass
            elif stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_IWOTH:
                visit(entry.path)

    for root in roots:
        if os.path.isdir(root) and not os.path.islink(root):
            visit(root)
    _remove_ipc(uid)
    return removed


def _remove_ipc(uid: int) -> None:
    """System V shared memory, queues and semaphores outlive processes: remove the uid's."""
    libc = _libc()
    for kind, remove in (("shm", lambda i: libc.shmctl(i, 0, None)),
                         ("msg", lambda i: libc.msgctl(i, 0, None)),
                         ("sem", lambda i: libc.semctl(i, 0, 0))):
        try:
            with open(f"/proc/sysvipc/{kind}") as f:
                header = f.readline().split()
                rows = [dict(zip(header, line.split())) for line in f]
        except OSError:
            continue
        for row in rows:
            if row.get("uid") == str(uid) or row.get("cuid") == str(uid):
                remove(int(row["shmid" if kind == "shm" else "msqid" if kind == "msg" else "semid"]))


def wipe(folder: str, mode: int) -> None:
    """Empty a folder the worker owns (bubblewrap's /tmp, /dev/shm) and give it back its mode."""
    os.chmod(folder, mode)
    for entry in os.scandir(folder):
        _remove(entry.path)
