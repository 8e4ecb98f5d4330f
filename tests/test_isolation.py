"""Hostile submissions against each isolation level: bubblewrap, the uid-drop layer (bubblewrap made
unavailable with AUTOGRADER_NO_BWRAP=1, as root), and the Gradescope zip's own entry point.

None may gain a point, touch another submission's result, reach the network (a listener on
127.0.0.1 counts every contact), or change what a later submission sees. Without bubblewrap and
without root, `grade` refuses unless --unsafe-no-sandbox, and then every report says so.

The uid-drop layer runs student code as an unprivileged uid, which must reach the Python
installation: on this machine it lives under /root (mode 0700), so the session fixture
`python_reachable` (tests/conftest.py) adds o+x to the folders above it.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import nbformat
import pytest

import test_grading_gallery as gallery
from hostile_submissions import MARKER, WITNESS, attack_source
from autograder import export, workers

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("gallery")]
REPO = Path(__file__).resolve().parents[1]
LAYERS = {"bubblewrap": {}, "uid-drop": {"AUTOGRADER_NO_BWRAP": "1"}}


class Listener:
    """TCP and UDP on 127.0.0.1, recording every contact."""

    def __init__(self):
        self.contacts: list[str] = []
        self.tcp = socket.create_server(("127.0.0.1", 0))
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.ports = {"tcp": self.tcp.getsockname()[1], "udp": self.udp.getsockname()[1]}
        self.stopped = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        import select

        while not self.stopped:
            ready, _, _ = select.select([self.tcp, self.udp], [], [], 0.2)
            for s in ready:
                if s is self.tcp:
                    conn, peer = s.accept()
                    self.contacts.append(f"tcp from {peer}")
                    conn.close()
                else:
                    _, peer = s.recvfrom(100)
                    self.contacts.append(f"udp from {peer}")

    def close(self):
        self.stopped = True
        time.sleep(0.3)
        self.tcp.close()
        self.udp.close()


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


def attacked(name: str, base, **where):
    return gallery.with_cell(base, attack_source(name, **where), at=len(base.cells))


def write_class(folder: Path, out: Path, ports: dict) -> dict[str, str]:
    """Attacks, each followed by a witness in the same worker (--jobs 1, names sort in this order);
    returns name -> expected outcome ("zero" or "full")."""
    where = {"repo": str(REPO), "out": str(out), **ports}
    untouched, master = gallery.untouched("torch"), gallery.master("torch")
    witness = gallery.with_cell(master, WITNESS, at=len(master.cells))
    plan = {}
    for i, name in enumerate(["read_masters", "detached_rewriter", "network", "chmod_tmp", "plant_tmp",
                              "worker_memory"]):
        nbformat.write(attacked(name, untouched, **where), folder / f"{i:02d}a_{name}.ipynb")
        nbformat.write(witness, folder / f"{i:02d}b_witness.ipynb")
        plan[f"{i:02d}a_{name}"], plan[f"{i:02d}b_witness"] = "zero", "full"
    # The same attacks from a solved notebook must not cost its owner anything either.
    nbformat.write(attacked("worker_memory", master, **where), folder / "07a_solved_worker_memory.ipynb")
    nbformat.write(witness, folder / "07b_witness.ipynb")
    plan["07a_solved_worker_memory"], plan["07b_witness"] = "full", "full"
    return plan


def grade(folder: Path, out: Path, env: dict, *extra: str, jobs: str = "1", user: list[str] = ()):
    return subprocess.run([*user, sys.executable, "-m", "autograder", "grade", str(folder), "--out", str(out),
                           "--jobs", jobs, "--timeout", gallery.TIMEOUT, *extra],
                          capture_output=True, text=True, timeout=1500, env={**os.environ, **env})


def survivors() -> str:
    return subprocess.run(["pgrep", "-af", MARKER], capture_output=True, text=True).stdout


def snapshot(out: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def totals(result: dict) -> tuple[float, float]:
    return sum(c["score"] for c in result["checks"]), sum(c["max_score"] for c in result["checks"])


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_hostile_submissions_gain_nothing_and_touch_nothing(layer, python_reachable, listener, tmp_path):
    folder, out = tmp_path / "class", tmp_path / "out"
    folder.mkdir()
    plan = write_class(folder, out, listener.ports)
    run = grade(folder, out, LAYERS[layer])
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"isolation: {layer}" in run.stderr
    written = snapshot(out)
    time.sleep(1.5)   # a surviving rewriter loops every 0.1 s
    assert snapshot(out) == written, "a result changed after the grader finished"
    assert not survivors(), "a submission's process outlived it"
    assert not listener.contacts, listener.contacts
    wrong = {}
    for name, expect in plan.items():
        result = gallery.result_of(out, name)
        assert result["sandbox"] == layer and result["error"] is None, (name, result["error"])
        got, top = totals(result)
        public = json.loads((out / name / "results.json").read_text())
        assert public["score"] == got and "rewritten" not in public.get("output", "")
        wrong[name] = (got, top) if top == 0 or got != (0 if expect == "zero" else top) else None
    assert not {k: v for k, v in wrong.items() if v}


@pytest.fixture(scope="module")
def uid_drop_gallery(python_reachable, tmp_path_factory):
    """A --jobs 2 run under uid-drop with a fork bomb in it, for the cgroup checks below. (The whole
    gallery runs under uid-drop too, each outcome asserted: tests/test_grading_gallery.py.)"""
    names = ["fork_bomb_cell", "hanging_exercise", "reference_torch", "reference_tf"]
    folder, out = tmp_path_factory.mktemp("gallery"), tmp_path_factory.mktemp("grades")
    for name in names:
        nbformat.write(gallery.GALLERY[name][0](), folder / f"{name}.ipynb")
    run = grade(folder, out, {**LAYERS["uid-drop"], "AUTOGRADER_CGROUP_PREFIX": CGROUP_PREFIX}, jobs="2")
    assert run.returncode == 0, run.stderr[-3000:]
    assert not list(out.glob("*.json")) and not (folder / "results.json").exists()
    return out


# this module's own grader runs name their cgroups apart: other test files kill graders on purpose
# (a batch killed midway, a dead job), and what those leave is theirs, swept by the next grader
CGROUP_PREFIX = f"agtest{os.getpid()}"


def test_no_cgroup_is_left_behind_by_a_jobs_2_run(uid_drop_gallery):
    stale = [p for root in workers.CGROUP_ROOTS for p in root.glob(f"{CGROUP_PREFIX}-*-*")
             if not workers._alive(int(p.name.split("-")[1]))]
    assert not stale


def test_stale_cgroups_of_dead_graders_are_removed():
    roots = [r for r in workers.CGROUP_ROOTS if (r / "cgroup.procs").exists()]
    if not roots:
        pytest.skip("no cgroup hierarchy here")
    dead = subprocess.Popen(["true"])
    dead.wait()
    made = []
    for root in roots:
        try:
            (root / f"autograder-{dead.pid}-7").mkdir()
            made.append(root / f"autograder-{dead.pid}-7")
        except OSError:
            continue
    if not made:
        pytest.skip("cannot create cgroups here")
    workers.remove_stale_cgroups.cache_clear()
    removed = workers.remove_stale_cgroups()
    assert all(str(p) in removed and not p.exists() for p in made)


# --- the Gradescope zip's own entry point, bubblewrap unavailable as in Gradescope's containers ------

@pytest.fixture(scope="module")
def zipped(tmp_path_factory) -> Path:
    return export.gradescope_zip("02_principles", "torch", tmp_path_factory.mktemp("zip") / "a.zip")


@pytest.mark.parametrize("name, base", [("read_masters", "untouched"), ("detached_rewriter", "untouched"),
                                        ("network", "untouched"), ("worker_memory", "master")])
def test_the_gradescope_entry_point_without_bubblewrap(zipped, python_reachable, listener, tmp_path, name, base):
    root = tmp_path / "autograder"
    with zipfile.ZipFile(zipped) as archive:
        archive.extractall(root / "source")
    for script in ("run_autograder", "setup.sh"):
        (root / "source" / script).chmod(0o755)
    (root / "submission").mkdir()
    notebook = gallery.untouched("torch") if base == "untouched" else gallery.master("torch")
    where = {"repo": str(root / "source"), "out": str(root / "results"), **listener.ports}
    nbformat.write(attacked(name, notebook, **where), root / "submission" / "exercises_torch.ipynb")
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "AUTOGRADER_PYTHON": sys.executable,
           "AUTOGRADER_NO_BWRAP": "1"}
    env.pop("AUTOGRADER_GRADE_CMD", None)
    run = subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    written = (root / "results" / "results.json").read_text()
    time.sleep(1.5)
    assert (root / "results" / "results.json").read_text() == written
    results = json.loads(written)
    assert results["extra_data"]["sandbox"] == "uid-drop", results["output"]
    score, top = sum(t["score"] for t in results["tests"]), sum(t["max_score"] for t in results["tests"])
    assert top > 0 and score == (0 if base == "untouched" else top), (score, results["output"])
    assert not listener.contacts and not survivors()


# --- no bubblewrap, not root ---------------------------------------------------------------------

def test_without_isolation_a_non_root_grader_refuses_unless_told(python_reachable, tmp_path):
    """Run as nobody (setpriv), from a copy of the grader nobody can read (the repo's own package is
    closed to others once the uid-drop layer ran)."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root to switch to nobody")
    base = Path(tempfile.mkdtemp(prefix="autograder-nobody-"))
    try:
        base.chmod(0o755)
        for name in ("autograder", "solutions"):
            shutil.copytree(REPO / name, base / "repo" / name, ignore=shutil.ignore_patterns("__pycache__"))
        (base / "class").mkdir()
        nbformat.write(gallery.master("torch"), base / "class" / "reference.ipynb")
        subprocess.run(["chmod", "-R", "a+rX", str(base)], check=True)
        (base / "out").mkdir()
        os.chown(base / "out", 65534, 65534)
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        env = {"AUTOGRADER_NO_BWRAP": "1", "PYTHONPATH": str(base / "repo"), "HOME": str(base / "out")}
        refused = grade(base / "class", base / "out", env, user=nobody)
        assert refused.returncode == 2, refused.stderr[-2000:]
        assert "Traceback" not in refused.stderr
        for says in ("apt-get install bubblewrap", "user namespaces", "--unsafe-no-sandbox", "root"):
            assert says in refused.stderr.replace("\n", " "), says
        assert not list((base / "out").iterdir())

        ran = grade(base / "class", base / "out", env, "--unsafe-no-sandbox", user=nobody)
        assert ran.returncode == 0, ran.stderr[-2000:]
        assert "isolation: NONE" in ran.stderr and "isolation off" in ran.stderr
        result = json.loads((base / "out" / "reference" / "results.json").read_text())
        assert result["extra_data"]["sandbox"] == "none"
        assert "isolation off" in result["output"]
        assert "isolation off" in (base / "out" / "reference" / "feedback.md").read_text()
        assert result["score"] == sum(t["max_score"] for t in result["tests"]) > 0
    finally:
        shutil.rmtree(base, ignore_errors=True)
