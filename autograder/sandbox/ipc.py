"""Inter-process communication objects of one submission: its own namespace, and none left after it.

POSIX message queues, System V shared memory, queues and semaphores live in an IPC namespace, not
in a process: without care they outlive a submission, and the next one in the same worker finds
them. Two mechanisms, each enough alone where it works:
- `private_namespace()`, in the submission's child before it runs any code: a new IPC namespace
  (as root under uid-drop; inside bubblewrap, where the sandbox user has no capability, in a new
  user namespace of its own that maps only its uid, capabilities dropped again after it). The
  namespace, and all its objects, go away with the submission's last process;
- `clean(uid)`, in the worker after each submission: removes every object the submission could
  have left in the worker's namespace (`uid`: the dropped uid's; None: bubblewrap's sandbox, where
  all of them are): System V ones by IPC_RMID, POSIX queues by unlinking them from an mqueue
  filesystem (bubblewrap mounts one at /dev/mqueue; as root, a private mount in a helper).
Files in /dev/shm (POSIX shared memory, semaphores) are removed with the scratch folders
(confine.sweep, confine.wipe).
"""
from __future__ import annotations

import ctypes
import os
import tempfile

CLONE_NEWUSER, CLONE_NEWIPC, CLONE_NEWNS = 0x10000000, 0x08000000, 0x00020000
MS_REC, MS_PRIVATE = 0x4000, 1 << 18
IPC_RMID = 0
SYS_CAPSET = {"x86_64": 126, "aarch64": 91}
MQUEUE = "/dev/mqueue"
KINDS = {"shm": "shmid", "msg": "msqid", "sem": "semid"}


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _drop_capabilities() -> None:
    """capset(2) with empty sets: what a new user namespace gave this process, given back."""
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    number = SYS_CAPSET.get(os.uname().machine)
    if number is None:
        raise OSError("capset: unknown architecture")
    data = (Data * 2)()
    if _libc().syscall(number, ctypes.byref(Header(0x20080522, 0)), data) != 0:   # _LINUX_CAPABILITY_VERSION_3
        raise OSError(ctypes.get_errno(), "capset failed")


def _cap_namespace(memory_bytes: int) -> None:
    """The new namespace's own limits (ipc sysctls belong to the namespace): System V shared
    memory at most the submission's memory, and few queues and segments. Memory held in an
    unattached segment shows in no process's resident set; this is what bounds it."""
    pages = max(1, memory_bytes // os.sysconf("SC_PAGE_SIZE"))
    for name, value in (("kernel/shmmax", memory_bytes), ("kernel/shmall", pages), ("kernel/shmmni", 64),
                        ("kernel/msgmni", 16), ("kernel/msgmnb", 16384), ("fs/mqueue/queues_max", 16)):
        with open(f"/proc/sys/{name}", "w") as f:
            f.write(str(value))


def private_namespace(memory_bytes: int = 0) -> str:
    """A new IPC namespace for this process and all it starts -> "own" or why not (then `clean`
    is what protects the next submission). Before privileges are dropped and seccomp is loaded.
    `memory_bytes`: the submission's memory limit, the namespace's cap on System V shared memory."""
    libc = _libc()
    if os.geteuid() == 0 and libc.unshare(CLONE_NEWIPC) == 0:
        if memory_bytes:
            _cap_namespace(memory_bytes)
        return "own"
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWIPC) != 0:
        return f"unshare: {os.strerror(ctypes.get_errno())}"
    try:   # the same ids inside as outside, nothing else mapped: files keep their owner
        for name, text in (("uid_map", f"{uid} {uid} 1"), ("setgroups", "deny"), ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
        if memory_bytes:
            _cap_namespace(memory_bytes)
        _drop_capabilities()
    except OSError as exc:
        raise RuntimeError(f"new user namespace not set up: {exc}") from None   # no code runs half set up
    return "own"


def _sysv(uid: int | None) -> list[str]:
    libc = _libc()
    removed = []
    for kind, key in KINDS.items():
        try:
            with open(f"/proc/sysvipc/{kind}") as f:
                header = f.readline().split()
                rows = [dict(zip(header, line.split())) for line in f]
        except OSError:
            continue
        for row in rows:
            if uid is not None and str(uid) not in (row.get("uid"), row.get("cuid")):
                continue
            ident = int(row[key])
            done = (libc.shmctl(ident, IPC_RMID, None) if kind == "shm" else
                    libc.msgctl(ident, IPC_RMID, None) if kind == "msg" else libc.semctl(ident, 0, IPC_RMID))
            if done == 0:
                removed.append(f"{kind} {ident}")
    return removed


def _unlink_queues(folder: str, uid: int | None) -> list[str]:
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        try:
            if uid is None or entry.stat(follow_symlinks=False).st_uid == uid:
                os.unlink(entry.path)
                removed.append(f"mqueue {entry.name}")
        except OSError:
            continue
    return removed


def _is_mqueue(path: str) -> bool:
    try:
        with open("/proc/self/mounts") as f:
            return any(line.split()[1:3] == [path, "mqueue"] for line in f)
    except OSError:
        return False


def _queues_as_root(uid: int) -> list[str]:
    """No mqueue filesystem mounted: a helper mounts one in a private mount namespace of its own,
    unlinks the uid's queues there and exits (the host's mounts are never touched)."""
    folder = tempfile.mkdtemp(prefix="autograder-mqueue-")   # root's, 0700; a mount point in the helper only
    read, write = os.pipe()
    helper = os.fork()
    if helper == 0:
        os.close(read)
        try:
            libc = _libc()
            names = []
            if (libc.unshare(CLONE_NEWNS) == 0 and libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) == 0
                    and libc.mount(b"mqueue", folder.encode(), b"mqueue", 0, None) == 0):
                names = _unlink_queues(folder, uid)
            os.write(write, "\n".join(names).encode()[:60000])
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        names = f.read().decode().split("\n")
    os.waitpid(helper, 0)
    os.rmdir(folder)
    return [n for n in names if n]


def clean(uid: int | None, own_namespace: bool = False) -> list[str]:
    """After a submission's processes are gone: remove the IPC objects it may have left in the
    worker's namespace (`uid`'s; None: all, in bubblewrap's sandbox) -> what was removed.
    `own_namespace`: the submission had a namespace of its own (gone with it), so the host's POSIX
    queues need no helper of ours (System V ones and a mounted /dev/mqueue are still looked at)."""
    removed = _sysv(uid)
    if _is_mqueue(MQUEUE):
        removed += _unlink_queues(MQUEUE, uid)
    elif uid is not None and os.geteuid() == 0 and not own_namespace:
        removed += _queues_as_root(uid)
    return removed
