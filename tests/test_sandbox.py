"""The execute stage against hostile code: what a submission can do to the grader, and can't."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest

from autograder import isolation, session, workers
from autograder.session import Runner
from autograder.workers import ISOLATED, Limits, Sandbox

pytestmark = [pytest.mark.xdist_group("sandbox"), pytest.mark.slow]
X = (np.ones((2, 3), np.float32),)


@pytest.fixture(scope="module")
def sandbox():
    box = Sandbox("torch", Limits(call_seconds=3, cell_seconds=5, memory_bytes=1536 << 20, max_processes=32))
    yield box
    box.close()


def run(sandbox, *sources):
    runner = Runner(sandbox, list(enumerate(sources)))
    runner.run_cells()
    return runner


def test_the_machine_has_bubblewrap_and_uses_it(sandbox):
    # make test installs bubblewrap, so the isolated path is the one under test.
    assert sandbox.isolation == ISOLATED


def test_sandbox_sees_no_solutions_no_checks_no_network(sandbox):
    runner = run(sandbox, "import os, socket\n"
                 "def probe(x):\n"
                 "    seen = [os.path.exists(p) for p in (%r, %r, %r)]\n"
                 "    try:\n"
                 "        socket.create_connection(('127.0.0.1', 22), timeout=1); seen.append(True)\n"
                 "    except OSError:\n"
                 "        seen.append(False)\n"
                 "    return x * 0 + float(sum(seen)), os.getuid()" % (
                     str(workers.SANDBOX_SRC.parent.parent / "solutions"),
                     str(workers.SANDBOX_SRC.parent / "checks"), str(workers.SANDBOX_SRC.parent.parent / "Makefile")))
    reply = runner.call("probe", X, {})
    runner.close()
    assert reply.status == "ok", reply.error
    visible, uid = reply.value
    assert visible.sum() == 0          # none of the paths exist, and no connection was made
    assert uid == 65534


def test_os_exit_in_a_cell_costs_that_cell_only(sandbox):
    runner = run(sandbox, "import torch, os\ndef f(x):\n    return x * 2", "os._exit(0)",
                 "def g(x):\n    return x + 1", "import sys\nsys.exit(0)", "def h(x):\n    return x - 1")
    oks = [o.ok for o in runner.outcomes]
    assert oks == [True, False, True, False, True]
    assert "exited with status 0" in runner.outcomes[1].error
    assert "SystemExit" in runner.outcomes[3].error
    for name, want in (("f", 2.0), ("g", 2.0), ("h", 0.0)):
        reply = runner.call(name, X, {})
        assert reply.status == "ok" and np.all(reply.value == want), (name, reply)
    runner.close()


@pytest.mark.parametrize("body, why", [
    ("while True: pass", "timed out"),
    ("while True: print('y' * 100000)", "timed out"),
    ("import os\n    while True:\n        try: os.fork()\n        except OSError: pass", ""),
    ("import os\n    os._exit(3)", "exited with status 3"),
    ("import os, signal\n    os.kill(os.getpid(), signal.SIGSEGV)", "SIGSEGV"),
])
def test_a_hostile_call_dies_alone_and_the_next_call_works(sandbox, body, why):
    runner = run(sandbox, "import torch\ndef ok(x):\n    return x * 2", f"def bad(x):\n    {body}")
    reply = runner.call("bad", X, {})
    assert reply.status == "died"
    assert why in reply.error
    again = runner.call("ok", X, {})
    assert again.status == "ok" and np.all(again.value == 2.0), again
    runner.close()


def test_a_memory_bomb_is_killed_for_memory_not_time():
    # Near the cap the kernel reclaims the worker's file pages before it kills, hence the long limit.
    box = Sandbox("torch", Limits(call_seconds=30, memory_bytes=1536 << 20))
    try:
        runner = run(box, "import numpy as np\ndef bad(x):\n    a = []\n"
                     "    while True: a.append(np.ones(50_000_000))", "def ok(x):\n    return x * 2")
        reply = runner.call("bad", X, {})
        assert reply.status == "died" and "memory limit" in reply.error, reply
        assert runner.call("ok", X, {}).status == "ok"
        runner.close()
    finally:
        box.close()


def _host_processes(pattern: str) -> str:
    return subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True).stdout


def test_everything_the_submission_started_is_killed_when_it_ends(sandbox):
    marker = "sleep 987"
    runner = run(sandbox, "import subprocess\n"
                 f"subprocess.Popen({marker.split()!r}, start_new_session=True)\n"
                 f"subprocess.Popen(['sh', '-c', 'setsid {marker} &'])")
    assert all(o.ok for o in runner.outcomes)
    assert marker in _host_processes(marker)
    runner.close()
    assert marker not in _host_processes(marker)


def test_a_reply_that_is_not_plain_data_is_refused():
    head = {"status": "ok", "result": {"kind": "single", "items": [{"a": "r0", "type": "torch.Tensor"}]}}
    assert session._read_reply(head, {}).status == "error"                 # the array is missing
    objects = {"r0": np.array([object()], dtype=object)}
    assert session._read_reply(head, objects).status == "error"
    assert session._read_reply({"status": "PASSED"}, {}).status == "error"


def test_with_isolation_off_or_no_cgroups_it_still_runs_with_rlimits(monkeypatch):
    monkeypatch.setattr(workers._Cgroup, "__init__", lambda self, limits: setattr(self, "dirs", []))
    # 20 s a call: the hog must reach the memory limit before the time limit; in one fresh run of
    # the whole suite (load up to 8) 10 s were not enough
    box = Sandbox("torch", Limits(call_seconds=20, submission_memory_bytes=1 << 30), workers.NONE)
    try:
        assert box.isolation == workers.NONE and not box.cgroup.dirs
        runner = run(box, "import torch\ndef f(x):\n    return x * 3", "def slow(x):\n    while True: pass",
                     "import numpy as np\ndef hog(x):\n    a = []\n    while True: a.append(np.ones(50_000_000))")
        assert runner.call("slow", X, {}).status == "died"
        hog = runner.call("hog", X, {})
        assert hog.status == "died" and "memory limit" in hog.error, hog   # the worker's watchdog
        assert runner.call("f", X, {}).value.sum() == 18
        runner.close()
    finally:
        box.close()


def test_require_sandbox_means_bubblewrap_or_nothing(monkeypatch):
    monkeypatch.setenv("AUTOGRADER_NO_BWRAP", "1")
    isolation.bubblewrap_problem.cache_clear()
    try:
        with pytest.raises(isolation.Unavailable, match="--require-sandbox"):
            isolation.choose(require_bubblewrap=True)
        with pytest.raises(workers.SandboxError, match="apt-get install bubblewrap"):
            monkeypatch.setattr(isolation, "uid_drop_problem", lambda: "not root")
            Sandbox("torch")
        assert isolation.choose(unsafe=True) == isolation.NONE
    finally:
        isolation.bubblewrap_problem.cache_clear()


def test_a_submission_cannot_chmod_the_hosts_device_nodes_or_the_shared_tmp(sandbox):
    # Under bubblewrap run as root, the sandbox user owns the host's /dev/null (bind-mounted).
    runner = run(sandbox, "import os\n"
                 "def probe(x):\n"
                 "    refused = 0\n"
                 "    for path, mode in (('/dev/null', 0o666), ('/tmp', 0o755), ('/', 0o755)):\n"
                 "        try:\n"
                 "            os.chmod(path, mode)\n"
                 "        except PermissionError:\n"
                 "            refused += 1\n"
                 "    return x * 0 + refused")
    reply = runner.call("probe", X, {})
    runner.close()
    assert reply.status == "ok" and np.all(reply.value == 3), reply


def test_a_worker_that_changed_is_replaced_before_the_next_submission(sandbox):
    runner = run(sandbox, "def f(x):\n    return x + 1")
    assert runner.call("f", X, {}).status == "ok"
    before, sandbox.baseline = sandbox.baseline, {"numbers": [0.0], "modes": {}}
    restarts = sandbox.restarts
    runner.close()   # health differs from the baseline: the worker is restarted
    assert sandbox.restarts == restarts + 1 and sandbox.baseline == before
