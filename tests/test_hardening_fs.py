"""Issue 19, the filesystem breaches: each test here failed on the grader before the fix.

1. the clean-up after a submission ran as root over paths a student could change: it now runs as
   the dropped uid, by descriptors, so what the uid cannot remove stays (and is locked away);
2. a 1,500-level tree made the recursive clean-up raise RecursionError and stopped the batch;
3. a symbolic link to the master was graded as the student's work (batch and Gradescope);
4. a full disk while writing reports stopped the batch;
5. under uid-drop, student code could read any world-readable file (a planted copy of the
   solutions): Landlock now walls it in, and every report says whether it was on.
"""
from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest

import test_grading_gallery as gallery
from autograder import batch, inside_gradescope, parse
from autograder.results import SubmissionResult
from autograder.sandbox import confine, landlock

UID = 64977   # not one the grader hands out first (64000 up), never a real account here
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="the uid-drop layer's clean-up runs as root")


def _world_writable(tmp_path: Path) -> Path:
    """A folder like /tmp: 1777, root's, reachable by the uid."""
    ww = Path(tempfile.mkdtemp(prefix="fs-ww-", dir="/var/tmp"))
    ww.chmod(0o1777)
    return ww


def _own(path: Path, uid: int = UID) -> None:
    os.chown(path, uid, uid, follow_symlinks=False)


@root_only
def test_breach1_cleanup_has_only_the_uids_own_power(tmp_path):
    """A uid-owned folder holding a root-owned folder and file: root would delete them all (and a
    swapped-in link would take root anywhere); the uid itself cannot, so they stay, and the
    folder is locked away from the uid (root's, mode 0) and reported."""
    ww = _world_writable(tmp_path)
    mine = ww / "mine"
    mine.mkdir()
    (mine / "junk").write_text("x")
    _own(mine)
    _own(mine / "junk")
    roots = mine / "roots"
    roots.mkdir(mode=0o755)
    (roots / "keep").write_text("root's")
    victim = Path(tempfile.mkdtemp(prefix="fs-victim-", dir="/var/tmp"))
    victim.chmod(0o755)
    (victim / "file").write_text("root's")
    os.symlink(victim, mine / "link")
    os.chown(mine / "link", UID, UID, follow_symlinks=False)
    try:
        report = confine.sweep(UID, UID, roots=[str(ww)])
        assert (roots / "keep").read_text() == "root's"       # the uid could not, so nobody did
        assert (victim / "file").exists() and stat.S_IMODE(victim.stat().st_mode) == 0o755
        assert not (mine / "junk").exists() and not (mine / "link").is_symlink()
        st = mine.stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0), "the leftover is still the uid's"
        assert report["left"] and str(mine) in report["locked"]
        assert "could not all be removed" in confine.describe_left(report)
        assert stat.S_IMODE(ww.stat().st_mode) == 0o1777
    finally:
        confine.remove_tree(str(ww))
        confine.remove_tree(str(victim))


@root_only
def test_breach1_the_cleaner_is_the_uid_not_root(tmp_path):
    """Whatever the students swap, the process that deletes has the uid's ids (checked from a file
    it leaves: the sweep removes the uid's files, so a marker the uid cannot remove names it)."""
    ww = _world_writable(tmp_path)
    probe = ww / "probe"
    probe.mkdir()
    _own(probe)
    guard = probe / "guard"   # root's, not writable by the uid: its content cannot be removed
    guard.mkdir()
    (guard / "f").write_text("x")
    try:
        confine.sweep(UID, UID, roots=[str(ww)])
        assert (guard / "f").exists(), "the clean-up had root's power inside the student's folder"
    finally:
        confine.remove_tree(str(ww))


@root_only
@root_only
def test_the_wipe_never_crosses_into_a_mounted_file_system(tmp_path):
    """Under bubblewrap, a Python that lives under /tmp is bound read-only inside the /tmp tmpfs:
    the wipe of /tmp must leave that mount (and the folders holding it) alone, not fail on it
    (a clone in /tmp/fresh failed every bubblewrap worker this way)."""
    top = tmp_path / "tmp"
    top.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(top)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        inner = top / "clone" / ".venv"
        inner.mkdir(parents=True)
        (top / "clone" / "student.txt").write_text("left behind")
        (top / "junk").mkdir()
        (top / "junk" / "f").write_text("x")
        keep = tmp_path / "python"
        keep.mkdir()
        (keep / "etc").write_text("the interpreter's file")
        subprocess.run(["mount", "--bind", "-o", "ro", str(keep), str(inner)], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(inner)], check=True)
        try:
            fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
            try:
                confine.empty_dir(fd, confine.Budget())
            finally:
                os.close(fd)
            assert (inner / "etc").read_text() == "the interpreter's file"
            assert sorted(p.name for p in top.iterdir()) == ["clone"]          # junk is gone
            assert sorted(p.name for p in (top / "clone").iterdir()) == [".venv"]   # the holder stays
        finally:
            subprocess.run(["umount", str(inner)])
    finally:
        subprocess.run(["umount", str(top)])


def test_breach2_a_1500_level_tree_is_removed_without_recursion(tmp_path):
    ww = _world_writable(tmp_path)
    top = ww / "deep"
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(1500):   # deeper than any path: built by descriptors
        os.mkdir("d", dir_fd=fd)
        os.chown("d", UID, UID, dir_fd=fd)
        nxt = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nxt
    os.close(fd)
    _own(top)
    try:
        report = confine.sweep(UID, UID, roots=[str(ww)])
        assert not top.exists() and not report["left"], report
    finally:
        confine.remove_tree(str(ww))


@root_only
def test_breach2_what_cannot_be_cleaned_is_reported_not_raised(tmp_path):
    ww = _world_writable(tmp_path)
    wide = ww / "wide"
    wide.mkdir()
    for i in range(300):
        (wide / str(i)).write_text("")
        _own(wide / str(i))
    _own(wide)
    original = confine.CLEAN_ENTRIES
    try:
        confine.CLEAN_ENTRIES = 100   # the budget: a submission's leftovers cost at most this
        report = confine.sweep(UID, UID, roots=[str(ww)])
        assert report["left"] and "more than 100 entries" in confine.describe_left(report)
        assert wide.stat().st_uid == 0
    finally:
        confine.CLEAN_ENTRIES = original
        confine.remove_tree(str(ww))


DEEP_TREE = '''
import os
fd = os.open(".", os.O_RDONLY)
for _ in range(1500):
    os.mkdir("d", dir_fd=fd)
    nxt = os.open("d", os.O_RDONLY, dir_fd=fd)
    os.close(fd)
    fd = nxt
'''


@root_only
@pytest.mark.slow
def test_breach2_a_deep_tree_does_not_stop_the_batch(python_reachable, tmp_path):
    """Under uid-drop, a submission leaves 1,500 levels in its scratch folder; the next students
    are graded as usual (before: a RecursionError, every later one a grader problem)."""
    folder, out = tmp_path / "class", tmp_path / "out"
    folder.mkdir()
    nbformat.write(gallery.with_cell(gallery.untouched("torch"), DEEP_TREE), folder / "a_deep.ipynb")
    nbformat.write(gallery.master("torch"), folder / "b_master.ipynb")
    run = _grade(folder, out, {})
    assert run.returncode == 0, run.stderr[-3000:]
    deep, master = gallery.result_of(out, "a_deep"), gallery.result_of(out, "b_master")
    assert deep["error"] is None and master["error"] is None, (deep["error"], master["error"])
    assert sum(c["score"] for c in master["checks"]) == sum(c["max_score"] for c in master["checks"]) > 0


def test_breach3_a_link_is_never_read_as_the_students_notebook(tmp_path):
    masters = tmp_path / "masters"
    masters.mkdir()
    nbformat.write(gallery.master("torch"), masters / "master.ipynb")
    cls = tmp_path / "class"
    (cls / "alice").mkdir(parents=True)
    os.symlink(masters / "master.ipynb", cls / "alice" / "exercises_torch.ipynb")
    os.symlink(masters, cls / "bob")
    found = dict(batch.discover([cls]))
    assert cls / "alice" / "exercises_torch.ipynb" in found and cls / "bob" in found
    assert not any(p.is_relative_to(cls / "bob") and p != cls / "bob" for p in found)
    for path in found:
        with pytest.raises(parse.BadSubmission, match="is a symbolic link; hand in the notebook itself"):
            parse.load(path)
    with pytest.raises(OSError):
        parse.digest_of(cls / "alice" / "exercises_torch.ipynb")


def test_breach3_gradescope_never_selects_a_link(tmp_path):
    nbformat.write(gallery.master("torch"), tmp_path / "master.ipynb")
    submission = tmp_path / "submission"
    submission.mkdir()
    os.symlink(tmp_path / "master.ipynb", submission / "exercises_torch.ipynb")
    course = json.loads((tmp_path / "master.ipynb").read_text())["metadata"]["course"]
    chosen, message = inside_gradescope.select_notebook(submission, course["chapter"], course["framework"])
    assert chosen is None and "is a symbolic link; hand in the notebook itself" in message
    (submission / "exercises_torch.ipynb").unlink()
    (submission / "folder").symlink_to(tmp_path)
    chosen, message = inside_gradescope.select_notebook(submission, course["chapter"], course["framework"])
    assert chosen is None and "folder is a symbolic link" in message


def test_breach4_a_full_disk_costs_one_student_not_the_batch(tmp_path, monkeypatch):
    from autograder import report

    out = tmp_path / "out"
    out.mkdir()
    real = report.write_atomic

    def full_for_bob(path, data, mode=0o644):
        if "bob" in str(path) and Path(path).name == "feedback.html":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, data, mode)

    monkeypatch.setattr(report, "write_atomic", full_for_bob)
    results = {}
    for name in ("alice", "bob", "carol"):
        result = SubmissionResult(name, str(tmp_path / f"{name}.ipynb"))
        batch._write_reports(result, out)
        results[name] = result
    assert results["bob"].grader_problem and "reports not written: no space left on the disk" in results["bob"].error
    assert sorted(p.name for p in (out / "bob").iterdir()) == []   # nothing half-written
    assert (out / "alice" / "result.json").exists() and (out / "carol" / "result.json").exists()
    monkeypatch.setattr(report, "write_atomic", real)
    batch._write_batch_report(list(results.values()), out)
    assert "bob" in (out / "grades.csv").read_text()


def test_breach4_atomic_write_on_enospc_leaves_nothing(tmp_path, monkeypatch):
    from autograder.report import atomic

    (tmp_path / "r.json").write_text("old")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(OSError) as caught:
        atomic.write_atomic(tmp_path / "r.json", "new")
    assert atomic.why_not_written(caught.value) == "no space left on the disk"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"] and (tmp_path / "r.json").read_text() == "old"


def _grade(folder: Path, out: Path, env: dict):
    return subprocess.run([sys.executable, "-m", "autograder", "grade", str(folder), "--out", str(out),
                           "--timeout", gallery.TIMEOUT], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "AUTOGRADER_NO_BWRAP": "1", **env})


READ_PLANTED = '''
import json
try:
    cells = json.load(open({path!r}))
except OSError:
    cells = []
for source in cells:   # the master's cells, each on its own (one that fails costs only itself)
    try:
        exec(source)
    except Exception:
        pass
'''


@root_only
@pytest.mark.slow
@pytest.mark.skipif(not landlock.abi(), reason="this kernel has no Landlock")
@pytest.mark.parametrize("wall", ["on", "off"])
def test_breach5_a_planted_solutions_copy_is_out_of_reach_with_landlock(python_reachable, tmp_path, wall):
    """A world-readable copy of the solutions outside the grader's folders: with Landlock the
    submission cannot read it (the untouched notebook's score); without, it can (the layer's known
    hole, which every report then names)."""
    master = gallery.master("torch")
    planted = Path(tempfile.mkdtemp(prefix="fs-solutions-", dir="/var/tmp"))
    planted.chmod(0o755)
    copy = planted / "solutions.py"
    # the master's definitions (its demonstrations would use up the reading cell's time)
    copy.write_text(json.dumps([c.source for c in master.cells if c.cell_type == "code"
                                and c.source.lstrip().startswith(("def ", "import ", "from "))]))
    copy.chmod(0o644)
    folder, out = tmp_path / "class", tmp_path / "out"
    folder.mkdir()
    nbformat.write(gallery.with_cell(gallery.untouched("torch"), READ_PLANTED.format(path=str(copy))),
                   folder / "reader.ipynb")
    try:
        run = _grade(folder, out, {"AUTOGRADER_NO_LANDLOCK": "1"} if wall == "off" else {})
    finally:
        confine.remove_tree(str(planted))
    assert run.returncode == 0, run.stderr[-3000:]
    result = gallery.result_of(out, "reader")
    public = json.loads((out / "reader" / "results.json").read_text())
    got, top = (sum(c[k] for c in result["checks"]) for k in ("score", "max_score"))
    assert result["error"] is None and top > 0
    if wall == "on":
        assert got < top / 2, f"the submission read the planted solutions: {got}/{top}"
        assert public["extra_data"]["filesystem_wall"].startswith("Landlock on (ABI")
        assert "Landlock on" in run.stderr
    else:
        assert got > 0   # the hole the wall closes: without it the copy is read (the untouched notebook scores 0)
        assert public["extra_data"]["filesystem_wall"] == "Landlock off (turned off by AUTOGRADER_NO_LANDLOCK=1)"
        assert any("without a filesystem wall" in w for w in result["warnings"])
        assert "Landlock off" in run.stderr
