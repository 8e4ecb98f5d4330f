"""The peak memory of one call, measured in the process that makes it (see calls.py)."""
from __future__ import annotations

import os
import sys


class PeakMeter:
    """The rise of the process's memory during one call, at its highest, in bytes.

    Linux: writing 5 to /proc/self/clear_refs resets the peak resident set (VmHWM) to the current
    one; after the call, VmHWM minus the resident set before is the call's peak, whatever it freed
    since. /proc/self/* of a non-dumpable process belongs to root, so under the uid-drop level the
    child (which inherits the worker's non-dumpable flag) makes itself dumpable first: nothing
    but the submission's own processes runs under its uid, and ptrace stays refused by seccomp.
    Elsewhere (macOS, no /proc): the rise of ru_maxrss, exact when the call sets a new record for
    the process and otherwise a lower bound (what stayed resident after the call).

    TensorFlow with oneDNN (its default on x86 Linux) keeps large tensors in a pool that it never
    gives back, so a second 400 MB tensor raises no resident set: its allocator's own peak counts
    too (the larger of the two is reported; memory from both at once is undercounted)."""

    def __init__(self):
        self.exact = self._can_reset()
        _map_large_blocks()


    @staticmethod
    def _can_reset() -> bool:
        for attempt in range(2):
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
                return True
            except PermissionError:
                if attempt or sys.platform != "linux":
                    return False
                import ctypes

                ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)   # PR_SET_DUMPABLE: /proc/self becomes ours
            except OSError:
                return False
        return False

    def start(self, framework: str) -> tuple:
        """-> (resident bytes now, the process's record so far, TensorFlow's tensor bytes now)."""
        tensors = _tf_tensor_bytes(reset=True) if framework == "tf" else None
        if self.exact:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return _status_kib("VmRSS") * 1024, 0, tensors
        return _resident_bytes(), _max_rss_bytes(), tensors

    def stop(self, started: tuple) -> int:
        resident, record, tensors = started
        if self.exact:
            rise = _status_kib("VmHWM") * 1024 - resident
        else:
            now = _max_rss_bytes()
            rise = (now if now > record else _resident_bytes()) - resident
        if tensors is not None:
            peak = _tf_tensor_bytes(reset=False)
            rise = max(rise, peak - tensors if peak is not None else 0)
        return max(0, rise)


def _map_large_blocks() -> None:
    """glibc serves blocks of 1 MiB and more from their own mappings, given back on free, as the
    grader's workers do by environment (workers.ALLOCATOR_ENV). Left to itself glibc raises that
    threshold after the first large free and serves later blocks from a heap that fragments: in a
    student's kernel (check() measures there too) chapter 06's correct backward pass at n = 8192
    then rose by 222 MB (128 allowed) once the chapter's other checks had run. Setting the
    threshold also stops glibc moving it. Not glibc (macOS, musl): nothing to do."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20)   # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def _tf_tensor_bytes(reset: bool) -> int | None:
    """TensorFlow's CPU allocator: bytes in use now (after resetting its peak), or its peak."""
    tf = sys.modules.get("tensorflow")
    try:
        if reset:
            tf.config.experimental.reset_memory_stats("CPU:0")
            return tf.config.experimental.get_memory_info("CPU:0")["current"]
        return tf.config.experimental.get_memory_info("CPU:0")["peak"]
    except Exception:   # noqa: BLE001 (no TensorFlow, or one without allocator stats: RSS alone)
        return None


def _status_kib(field: str) -> int:
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(field.encode()):
                return int(line.split()[1])
    return 0


def _max_rss_bytes() -> int:
    try:
        import resource
    except ImportError:   # Windows: no measure
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024   # macOS counts bytes, Linux KiB


def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return _max_rss_bytes()   # no /proc: the record is the best known upper bound of "now"


_meter: PeakMeter | None = None


def meter() -> PeakMeter:
    global _meter
    if _meter is None:
        _meter = PeakMeter()
    return _meter


# --------------------------------------------------------------------------- the worker's watch

def _status_bytes(pid: int) -> tuple[int, int]:
    """(RssAnon, RssShmem) of one process, in bytes."""
    anon = shmem = 0
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"RssAnon:"):
                    anon = int(line.split()[1]) * 1024
                elif line.startswith(b"RssShmem:"):
                    shmem = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    return anon, shmem


def _memfd_bytes(pid: int, seen: set) -> int:
    """memfd files a process holds open: shared memory that no mapping (RssShmem) need show."""
    total = 0
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0
    for fd in fds[:4096]:
        path = f"/proc/{pid}/fd/{fd}"
        try:
            if not os.readlink(path).startswith("/memfd:"):
                continue
            st = os.stat(path)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


def tmpfs_used(path: str) -> int:
    """Bytes in use on a tmpfs mount of the sandbox's own (bubblewrap's /tmp and /dev/shm)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return 0
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def owned_bytes(uid: int, root: str = "/dev/shm", limit: int = 10_000) -> int:
    """Bytes of the files `uid` owns under `root` (a shared tmpfs: the uid-drop layer's /dev/shm),
    without following links; at most `limit` entries are looked at."""
    total, todo, looked = 0, [root], 0
    while todo and looked < limit:
        try:
            entries = list(os.scandir(todo.pop()))
        except OSError:
            continue
        for entry in entries:
            looked += 1
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_uid == uid:
                total += st.st_blocks * 512
            if entry.is_dir(follow_symlinks=False):
                todo.append(entry.path)
    return total


def _sysv_shm_bytes(uid: int | None) -> int:
    """System V shared memory segments (all in the sandbox's own IPC namespace, or the uid's)."""
    total = 0
    try:
        with open("/proc/sysvipc/shm") as f:
            header = f.readline().split()
            for line in f:
                row = dict(zip(header, line.split()))
                if uid is None or row.get("uid") == str(uid) or row.get("cuid") == str(uid):
                    total += int(row.get("rss", row.get("size", 0)))
    except (OSError, ValueError):
        pass
    return total


def submission_bytes(pids: list[int], uid: int | None = None, tmpfs=(), shared_roots=()) -> int:
    """What a submission holds in memory, as the worker watches it against the submission's limit:
    anonymous memory, plus shared memory however it is held: mapped (RssShmem), open memfds, files
    on a tmpfs (`tmpfs`: the sandbox's own mounts, counted whole; under
    uid-drop the files of `uid` under `shared_roots`, the host's tmpfs folders), System V segments
    (all of the sandbox's namespace, or the uid's; a submission's own IPC namespace caps its own,
    ipc.private_namespace). A tmpfs file or memfd that is also mapped counts twice: an exercise
    needs no shared memory, and an attack that splits its memory between the kinds is counted whole."""
    anon = shmem = 0
    seen: set = set()
    held = 0
    for pid in pids:
        a, s = _status_bytes(pid)
        anon, shmem = anon + a, shmem + s
        held += _memfd_bytes(pid, seen)
    held += sum(tmpfs_used(path) for path in tmpfs)
    if uid is not None:
        held += sum(owned_bytes(uid, root) for root in shared_roots)
    if tmpfs or uid is not None:
        held += _sysv_shm_bytes(None if tmpfs else uid)
    return anon + shmem + held
