"""Whole files or none: a batch killed midway never leaves a half-written report behind.

Write to a temporary file in the target's own directory (so the rename stays on one file system),
fsync it, then `os.replace` it over the target, which POSIX makes atomic. The directory is fsynced
too, so that after a power cut the new name is there, not just the new data. On any failure (a full
disk: ENOSPC at write, flush, fsync or close) the temporary file is removed and the target is left
as it was; callers decide what a missing report means (batch.py: that student is "not written").
"""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

TEMP_PREFIX = ".partial-"   # tests look for leftovers by this prefix


def write_atomic(path: Path, data: bytes | str, mode: int = 0o644) -> Path:
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMP_PREFIX}{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)   # mkstemp makes 0600; reports are meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        # KeyboardInterrupt included: the temp file must not outlive a failed write
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def remove_all(paths) -> list[str]:
    """Unlink each of `paths` that exists, for a set of files that could not all be written (a
    full disk): none of them stays to look complete. Returns what could not be removed."""
    stuck = []
    for path in paths:
        try:
            Path(path).unlink(missing_ok=True)
        except OSError:
            stuck.append(str(path))
    return stuck


def why_not_written(exc: OSError) -> str:
    """One line: "no space left on the disk" for ENOSPC and EDQUOT, else the system's words."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on the disk"
    return exc.strerror or str(exc)


def remove_durably(path: Path) -> None:
    """Unlink `path` if present and make the removal itself survive a crash."""
    path = Path(path)
    if path.exists():
        path.unlink()
        fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:   # some file systems do not allow opening a directory; the data is safe anyway
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
