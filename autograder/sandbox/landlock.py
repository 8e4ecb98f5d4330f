"""Linux Landlock: the uid-drop layer's filesystem wall, applied in the submission's child.

Without namespaces, a dropped uid still reads every world-readable file of the machine (a copy of
the solutions anywhere, another course's files). Landlock (Linux 5.13+, unprivileged, works in
Docker's default profile) lets a process give up, for itself and all it starts, every filesystem
access except the ones it lists. The child keeps:

- read (and execute) access to the system (/usr, /lib, /bin, /etc, ...), the interpreter and its
  packages, and the sandbox's own code (the copy of autograder/sandbox the worker runs from);
- read and write access to its own scratch folder, and to /dev/null;
- read access to /proc (its own status and memory maps) and /dev/urandom.

Nothing else: not /tmp, not /dev/shm, not the grader, not the other submissions. Where the ABI
has them (4+), TCP bind and connect are refused too; with 6+, signals and abstract Unix sockets
cannot reach outside the child's own processes.

Rights are handled per ABI version (a right an older kernel does not know makes the ruleset
invalid), and a path's rule only carries the rights that apply to it (a file takes no directory
rights). `status()` says whether the kernel has it; AUTOGRADER_NO_LANDLOCK=1 turns it off (tests).
"""
from __future__ import annotations

import ctypes
import os
import stat

CREATE_RULESET, ADD_RULE, RESTRICT_SELF = 444, 445, 446   # the same number on every architecture
CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH = 1
PR_SET_NO_NEW_PRIVS = 38

# access rights for files and folders (ABI 1), then one more per ABI
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR, MAKE_REG = 1 << 4, 1 << 5, 1 << 6, 1 << 7, 1 << 8
MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM = 1 << 9, 1 << 10, 1 << 11, 1 << 12
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15          # ABI 2, 3, 5
FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV   # all a non-folder may take
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1                   # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1         # ABI 6

READ = EXECUTE | READ_FILE | READ_DIR
SYSTEM = ("/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/etc", "/opt/conda")
READ_ONLY_DEVICES = ("/dev/urandom", "/dev/random", "/dev/zero")


class LandlockError(Exception):
    """The wall could not be built: the child must not run student code."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _syscall():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def abi() -> int:
    """The kernel's Landlock ABI version, 0 where it has none (or it is disabled at boot)."""
    libc = _syscall()
    version = libc.syscall(ctypes.c_long(CREATE_RULESET), None, ctypes.c_size_t(0),
                           ctypes.c_uint32(CREATE_RULESET_VERSION))
    return max(int(version), 0)


def status() -> str:
    """"on (ABI n)", or "off (why)": for every report and the terminal."""
    if os.environ.get("AUTOGRADER_NO_LANDLOCK") == "1":
        return "off (turned off by AUTOGRADER_NO_LANDLOCK=1)"
    version = abi()
    if not version:
        return "off (this kernel has no Landlock)"
    return f"on (ABI {version})"


def enabled() -> bool:
    return status().startswith("on")


def fs_rights(version: int) -> int:
    return FS_BY_ABI[max(v for v in FS_BY_ABI if v <= version)]


def restrict(read_only: list[str], read_write: list[str]) -> int:
    """Confine this process (and all it will start) to the given paths. Returns the ABI used.

    Paths that do not exist are skipped. Irreversible; sets no_new_privs, which it requires."""
    version = abi()
    if not version:
        raise LandlockError("this kernel has no Landlock")
    libc = _syscall()
    handled = fs_rights(version)
    attr = _RulesetAttr(handled, NET_BIND_TCP | NET_CONNECT_TCP if version >= 4 else 0,
                        SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if version >= 6 else 0)
    size = 8 if version < 4 else 16 if version < 6 else ctypes.sizeof(_RulesetAttr)
    ruleset = libc.syscall(ctypes.c_long(CREATE_RULESET), ctypes.byref(attr), ctypes.c_size_t(size),
                           ctypes.c_uint32(0))
    if ruleset < 0:
        raise LandlockError(f"landlock_create_ruleset: {os.strerror(ctypes.get_errno())}")
    try:
        for paths, rights in ((read_only, READ), (read_write, handled)):
            for path in paths:
                _allow(libc, int(ruleset), path, rights & handled)
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise LandlockError(f"prctl(NO_NEW_PRIVS): {os.strerror(ctypes.get_errno())}")
        if libc.syscall(ctypes.c_long(RESTRICT_SELF), ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            raise LandlockError(f"landlock_restrict_self: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(int(ruleset))
    return version


def _allow(libc, ruleset: int, path: str, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return   # absent here (no /lib32, no conda): nothing to allow
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            rights &= FILE_RIGHTS
        rule = _PathBeneath(rights, fd)
        if libc.syscall(ctypes.c_long(ADD_RULE), ctypes.c_int(ruleset), ctypes.c_int(RULE_PATH_BENEATH),
                        ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
            raise LandlockError(f"landlock_add_rule({path}): {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)
