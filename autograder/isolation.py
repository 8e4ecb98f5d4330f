"""Which isolation the grader can give student code here, and the preparations the second layer needs.

Three levels, named in every report and on the terminal:

    bubblewrap  bwrap works: the worker lives in its own namespaces (no network, no view of the
                grader's files, own PID space), read-only system, uid nobody; each submission's
                child also gets confine.py's seccomp filter and a private scratch folder.
    uid-drop    no working bwrap (often: user namespaces forbidden, as in Docker or Gradescope)
                and the grader is root: the worker stays root, each submission's child drops to a
                dedicated unprivileged uid (64000 and up, one per worker) with no network
                (seccomp, and an empty network namespace where the capability exists); the
                grader's files are made unreachable for that uid, Landlock (where the kernel has
                it; sandbox/landlock.py) closes every other file but the system, Python and the
                submission's scratch folder, and after each submission every process of the uid
                is killed and its files removed, as that uid (confine.sweep).
    none        only with --unsafe-no-sandbox: the submission runs as the grader's own user.

AUTOGRADER_NO_BWRAP=1 makes bubblewrap unavailable (the tests and an instructor who wants the
second layer use it); AUTOGRADER_NO_LANDLOCK=1 turns Landlock off (the tests of the layer without it).
"""
from __future__ import annotations

import fcntl
import grp
import os
import pwd
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from functools import lru_cache
from pathlib import Path

BUBBLEWRAP, UID_DROP, NONE = "bubblewrap", "uid-drop", "none"
REPO = Path(__file__).resolve().parents[1]
FIRST_UID, UID_COUNT = 64000, 1000
OFF_WARNING = ("isolation off (--unsafe-no-sandbox): the submission ran as the grader's own user, "
               "with the grader's files, the other submissions and the network in view")
INSTALL_HINT = (
    "Install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap). If it is installed but cannot "
    "run, user namespaces are forbidden here (Docker's default profile, Gradescope): run the grader "
    "as root to get the second layer (uid-drop). To grade anyway, with no isolation at all, pass "
    "--unsafe-no-sandbox.")


class Unavailable(Exception):
    """No isolation level that the options allow works here; the message says what to do."""


@lru_cache(maxsize=1)
def bubblewrap_problem() -> str:
    """Why bubblewrap cannot be used here, or "" when it works."""
    if os.environ.get("AUTOGRADER_NO_BWRAP") == "1":
        return "bubblewrap is turned off (AUTOGRADER_NO_BWRAP=1)"
    exe = shutil.which("bwrap")
    if not exe:
        return "bubblewrap is not installed"
    from autograder.workers import bwrap_args, grader_lib

    probe = subprocess.run([exe, *bwrap_args(grader_lib()), sys.executable, "-I", "-c", "pass"],
                           capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        why = (probe.stderr.strip().splitlines() or ["no message"])[-1]
        return f"bubblewrap is installed but cannot run here ({why})"
    return ""


def _ancestors(path: Path) -> list[Path]:
    path = Path(os.path.realpath(path))
    return [*reversed(path.parents), path]


@lru_cache(maxsize=1)
def uid_drop_problem() -> str:
    """Why the second layer cannot be used here, or "": checked before any worker starts.

    The worker's self-test (sandbox/worker.py) then proves it as the dropped uid itself."""
    if os.geteuid() != 0:
        return "the second layer (uid-drop) needs the grader to run as root"
    from autograder.sandbox import confine

    try:
        confine._libseccomp()
    except confine.ConfineError as exc:
        return f"the second layer (uid-drop) cannot block the network: {exc}"
    needed = {Path(sys.executable), Path(sys.prefix), Path(sys.base_prefix),
              *(Path(sysconfig.get_paths()[k]) for k in ("stdlib", "purelib", "platlib"))}
    for target in sorted(needed):
        for folder in _ancestors(target):
            if folder.is_dir() and not folder.stat().st_mode & stat.S_IXOTH:
                return (f"the second layer (uid-drop) runs student code as an unprivileged uid, which "
                        f"cannot reach {folder} (mode {stat.filemode(folder.stat().st_mode)}), where "
                        f"Python lives ({target}). Fix: chmod o+x {folder}, or install Python "
                        "outside it (e.g. /usr/bin/python3 or /opt)")
    return ""


def choose(unsafe: bool = False, require_bubblewrap: bool = False) -> str:
    """The best level allowed here, or Unavailable with a message for the instructor."""
    why_not_bwrap = bubblewrap_problem()
    if not why_not_bwrap:
        return BUBBLEWRAP
    if require_bubblewrap:
        raise Unavailable(f"{why_not_bwrap}, and --require-sandbox was given. {INSTALL_HINT}")
    why_not_drop = uid_drop_problem()
    if not why_not_drop:
        return UID_DROP
    if unsafe:
        return NONE
    raise Unavailable(f"refusing to run student code without isolation: {why_not_bwrap}; "
                      f"{why_not_drop}. {INSTALL_HINT}")


def describe(level: str) -> str:
    """One line for the terminal."""
    return {
        BUBBLEWRAP: "isolation: bubblewrap (own namespaces, no network, no view of the grader's files)",
        UID_DROP: f"isolation: uid-drop ({bubblewrap_problem()}; student code runs as an unprivileged "
                  f"uid with no network, and the grader's files are closed to it; {wall_line()})",
        NONE: "isolation: NONE (--unsafe-no-sandbox): student code runs as you, with your files and "
              "the network in view",
    }[level]


def wall_line(status: str | None = None) -> str:
    """The uid-drop layer's filesystem wall, for the terminal and every report."""
    from autograder.sandbox import landlock

    status = status or landlock.status()
    if status.startswith("on"):
        return f"Landlock {status}: it reads only the system, Python and its own scratch folder"
    return (f"Landlock {status}: student code can read every world-readable file on this machine "
            "(keep no copy of the solutions readable by all)")


# ------------------------------------------------------------------------------ the second layer


def grader_paths() -> list[Path]:
    """What a submission must not read under uid-drop: the grader, masters, checks, oracle, tests."""
    return [REPO / name for name in ("autograder", "solutions", ".git", "tests")]


def protect(paths: list[Path]) -> list[str]:
    """Remove the "other" permission bits of the grader's folders and the given ones.

    The dropped uid has no groups and owns none of them, so it can then neither read nor write
    them. Root (the grader) is not affected. Returns the folders as strings for the self-test."""
    done = []
    for path in [*grader_paths(), *paths]:
        try:
            mode = path.stat().st_mode
            if mode & 0o007:
                path.chmod(stat.S_IMODE(mode) & ~0o007)
            done.append(str(path))
        except OSError:
            continue
    return done


def _taken(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        pass
    try:
        grp.getgrgid(uid)
        return True
    except KeyError:
        return False


class DroppedUid:
    """A uid (and gid of the same number) for one worker, held by a lock file while it lives.

    Two workers (--jobs 2, or two frameworks) never share one: killing "every process of the uid"
    after a submission must not touch another worker's submission."""

    def __init__(self):
        from autograder.sandbox import confine

        # Root-owned, never a student's: a link or folder planted at the name in /tmp is refused,
        # not followed (os.chown on a planted link would hand root's chown to the student).
        base = "/run" if os.access("/run", os.W_OK) and os.path.isdir("/run") else tempfile.gettempdir()
        parent = os.open(base, confine.DIR_FLAGS)
        try:
            try:
                os.mkdir("autograder-uids", 0o700, dir_fd=parent)
            except FileExistsError:
                pass
            locks = os.open("autograder-uids", confine.DIR_FLAGS, dir_fd=parent)
        finally:
            os.close(parent)
        st = os.fstat(locks)
        if st.st_uid != 0 or stat.S_IMODE(st.st_mode) & 0o077:
            os.close(locks)
            raise Unavailable(f"{base}/autograder-uids is not root's own folder (mode "
                              f"{stat.filemode(st.st_mode)}, uid {st.st_uid}): remove it and run again")
        try:
            for uid in range(FIRST_UID, FIRST_UID + UID_COUNT):
                if _taken(uid):
                    continue
                fd = os.open(str(uid), os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                             dir_fd=locks)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                self.uid = self.gid = uid
                self._lock = fd
                self.scratch = ""
                self.clean()   # whatever a crashed run left under this uid
                self.scratch = tempfile.mkdtemp(prefix=f"autograder-{uid}-")
                os.chmod(self.scratch, 0o711)   # the uid may enter its own folder, not list the others
                return
        finally:
            os.close(locks)
        raise Unavailable(f"no free uid in {FIRST_UID}..{FIRST_UID + UID_COUNT - 1} for the second layer")

    def clean(self) -> dict:
        """Kill the uid's processes and remove its files as the uid itself (confine.sweep); what
        is left is locked away from it and reported in the returned {"removed", "left", "locked"}."""
        from autograder.sandbox import confine
        from autograder.workers import grader_lib

        confine.kill_uid_by_pid(self.uid)
        return confine.sweep_in_subprocess(self.uid, self.gid, grader_lib())

    def release(self) -> None:
        from autograder.sandbox import confine

        self.clean()
        try:
            # root's own folder, by descriptors: what is left in it was locked away from the uid
            confine.remove_tree(self.scratch)
        except (OSError, confine.OverBudget):
            pass
        os.close(self._lock)
