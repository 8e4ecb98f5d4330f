"""Issue 19, the process/resource breaches (4, 5, 8, 9): what a submission's own process measures or
reports never decides a grade. Each test is an attack a student can write; each failed on the
grader before this change (run with PYTHONPATH pointing at an older checkout to see it)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from autograder import grade, scan, workers
from autograder.session import Runner
from autograder.workers import Limits, Sandbox

pytestmark = [pytest.mark.xdist_group("sandbox"), pytest.mark.slow]
NO_WALL = "uid-drop-without-landlock"   # the uid-drop layer where the kernel has no Landlock
LAYERS = [workers.ISOLATED, workers.UID_DROP, NO_WALL]
X = (np.ones((2, 3), np.float32),)


@pytest.fixture(scope="module", params=LAYERS)
def box(request):
    level = workers.UID_DROP if request.param == NO_WALL else request.param
    if level == workers.UID_DROP:
        request.getfixturevalue("python_reachable")
    limits = grade.submission_limits("02_principles")
    limits.call_seconds, limits.memory_bytes, limits.submission_memory_bytes = 20, 4 << 30, 768 << 20
    saved = os.environ.get("AUTOGRADER_NO_LANDLOCK")
    if request.param == NO_WALL:
        os.environ["AUTOGRADER_NO_LANDLOCK"] = "1"   # read at each (re)start of the worker
    sandbox = Sandbox("torch", limits, level)
    sandbox.layer = request.param
    yield sandbox
    sandbox.close()
    if saved is None:
        os.environ.pop("AUTOGRADER_NO_LANDLOCK", None)
    else:
        os.environ["AUTOGRADER_NO_LANDLOCK"] = saved


def run(box, *sources) -> Runner:
    runner = Runner(box, list(enumerate(sources)))
    runner.run_cells()
    assert all(o.ok for o in runner.outcomes), runner.outcomes
    return runner


# ---------------------------------------------------------------- breach 4: forbidden built-ins

DISARM = '''
import inspect
import torch
import torch.nn.functional as F

def attention(q, k, v):
    name = "".join(chr(c) for c in [115, 99, 97, 108, 101, 100]) + "_dot_product_attention"
    found = dict(inspect.getmembers(F))[name]          # found without naming it
    spy = getattr(found, "__glo" + "bals__", {})       # the tracer's module, behind its wrapper
    if "_channel" in spy:
        spy["_channel"] = None                         # reports off
        spy["_report"] = lambda shown: None
        for original in spy["_ORIGINALS"]:
            if getattr(original, "__name__", "") == name:
                found = original                       # the original, past the wrapper
    return found(torch.as_tensor(q), torch.as_tensor(k), torch.as_tensor(v)).numpy()
'''


COMPARED = '''
q = torch.ones(1, 2, 3, 4)
reference = F.scaled_dot_product_attention(q, q, q)   # outside any exercise, as the chapter pages do
def after(x):
    return x + 1
'''


def test_a_disarmed_tracer_does_not_let_a_forbidden_built_in_compute(box):
    runner = run(box, DISARM, COMPARED)
    q = np.random.default_rng(0).normal(size=(2, 4, 8)).astype(np.float32)
    reply = runner.call("attention", (q, q, q), {})
    after = runner.call("after", X, {})
    missing = runner.call("reference", X, {})
    runner.close()
    # before: status ok, the right numbers, no built-in reported (7/7 uncharged)
    assert reply.status == "error" and "not available in graded exercises" in reply.error, reply
    # a comparison with the built-in in a cell is skipped, and the cell goes on
    assert after.status == "ok" and np.all(after.value == 2), after
    assert missing.status == "missing", missing


def test_autograd_and_own_job_through_getattr_are_charged_and_unknown_names_noted():
    cells = [(0, "import torch\n"
                 "def attention_backward(x, dout):\n"
                 "    t = x.clone(); getattr(t, 'requires_grad_')(True)\n"
                 "    out = (t * t).sum(); getattr(out, 'backward')(); return t.grad\n"
                 "def logsumexp(x):\n    return getattr(x, 'logsumexp')(-1)\n"
                 "def softmax_jacobian(x):\n    name = input()\n    return getattr(x, name)()\n")]
    found = scan.scan(cells, ["attention_backward", "logsumexp", "softmax_jacobian"],
                      no_autograd=("attention_backward", "softmax_jacobian"), own_job=(("logsumexp", ("logsumexp",)),))
    assert {"requires_grad", "Tensor.backward"} <= set(found.charged.get("attention_backward", ())), found
    assert "logsumexp" in found.charged.get("logsumexp", ()), found
    assert any("computed at run time" in note and "softmax_jacobian" in note for note in found.notes), found.notes
    members = scan.scan([(0, DISARM)], ["attention"])
    assert any("inspect.getmembers" in note for note in members.notes), members.notes


REACH = {
    "torch": '''
import gc, inspect, torch, torch.nn.functional as F, torch._decomp
t, u = torch.ones(2, 4, 8), torch.ones(1, 2, 4, 8)   # (batch, heads, tokens, features)
flash = [f for op, f in torch._decomp.decomposition_table.items() if "flash_attention_for_cpu" in str(op)][0]
reach = {
    "F": lambda: F.scaled_dot_product_attention(u, u, u),
    "getmembers": lambda: dict(inspect.getmembers(F))["scaled_dot_product_attention"](u, u, u),
    "C": lambda: torch._C._nn.scaled_dot_product_attention(u, u, u),
    "aten": lambda: torch.ops.aten.scaled_dot_product_attention.default(u, u, u),
    "jit op": lambda: torch._C._jit_get_operation("aten::scaled_dot_product_attention")[0](u, u, u),
    "kernel": lambda: torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(u, u, u),
    "decomposition": lambda: flash(u, u, u),
    "class": lambda: torch.nn.MultiheadAttention(8, 2, batch_first=True)(t, t, t, need_weights=False),
    "functional": lambda: F.multi_head_attention_forward(t, t, t, 8, 2, torch.ones(24, 8), None, None, None,
                                                         False, 0.0, torch.ones(8, 8), None),
    "originals": lambda: [o for o in __import__("autograder.sandbox.tracer", fromlist=["x"])._ORIGINALS
                          if getattr(o, "__name__", "") == "scaled_dot_product_attention"][0](u, u, u),
}
still = [torch.softmax(t, -1), torch.nn.Linear(8, 2)(t), t @ t.transpose(-1, -2)]
''',
    "tf": '''
import gc, inspect, keras, numpy as np
q, u = np.ones((2, 4, 8), np.float32), np.ones((1, 4, 2, 8), np.float32)   # u: (batch, tokens, heads, features)
reach = {
    "ops": lambda: keras.ops.dot_product_attention(u, u, u),
    "getmembers": lambda: dict(inspect.getmembers(keras.ops))["dot_product_attention"](u, u, u),
    "backend": lambda: keras.src.backend.tensorflow.nn.dot_product_attention(u, u, u),
    "gc": lambda: [o for o in gc.get_objects() if callable(o) and getattr(o, "__name__", "") == "dot_product_attention"
                   and getattr(o, "__module__", "").startswith("keras")][-1](u, u, u),
    "layer": lambda: keras.layers.MultiHeadAttention(2, 4)(q, q),
    "attention layer": lambda: keras.layers.Attention()([q, q]),
    "torch imported later": lambda: __import__("torch").nn.functional.scaled_dot_product_attention(
        *[__import__("torch").ones(1, 2, 4, 8)] * 3),
}
still = [keras.ops.softmax(q), keras.layers.Dense(3)(q)]
''',
}
PROBE = '''
import sys
from autograder import chapters
from autograder.sandbox import tracer
tracer.install(sys.argv[1])
record = chapters.chapter("02_principles")
removed = tracer.remove((*record.forbidden.torch, *record.forbidden.tf))
exec(sys.argv[2])
computed = []
for name, attempt in reach.items():
    try:
        attempt()
        computed.append(name)
    except tracer.Removed:
        pass
    except Exception as exc:   # a Keras layer wraps the error in its own text
        if "not available in graded exercises" not in str(exc):
            computed.append(f"{name}: {type(exc).__name__} {exc}"[:300])
print(removed, computed)
'''


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_removed_built_ins_compute_through_no_path(framework):
    """tracer.remove, alone: every way to a forbidden built-in the red team and this test know of
    raises; the framework's other functions still compute."""
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent.parent),
                                                                   os.environ.get("PYTHONPATH", "")]))}
    done = subprocess.run([sys.executable, "-c", PROBE, framework, REACH[framework]], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    removed, computed = done.stdout.strip().splitlines()[-1].split(" ", 1)
    assert int(removed) > 0 and computed == "[]", done.stdout[-3000:]


# ---------------------------------------------------------------- breach 5: the call's peak memory

CLEAR_REFS = '''
import numpy as np
def whole(x):
    scores = np.ones((8192, 8192), np.float32)   # 256 MiB
    total = float(scores.sum())
    del scores
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                             # the process's own peak, reset
    return x * 0 + total
'''
FORKED = '''
import os
import numpy as np
def whole(x):
    pid = os.fork()
    if pid == 0:                                  # the work, in a process of its own
        scores = np.ones((8192, 8192), np.float32)
        scores.sum()
        os._exit(0)
    os.waitpid(pid, 0)
    return x * 2
'''


def test_the_peak_memory_of_a_call_is_measured_outside_the_students_process(box):
    runner = run(box, CLEAR_REFS)
    reply = runner.call("whole", X, {})
    runner.close()
    assert reply.status == "ok", reply
    assert reply.peak_bytes > 200 << 20, reply.peak_bytes   # before: a few MiB (VmHWM reset by the call)


LATER = "\ndef fine(x):\n    return x + 1\n"


def test_a_graded_call_that_starts_a_process_is_not_graded(box):
    runner = run(box, FORKED + LATER + "import subprocess\nhelper = subprocess.Popen(['sleep', '30'])\n")
    reply = runner.call("whole", X, {})
    fine = runner.call("fine", X, {})   # the helper started by a cell, before any call, is no fork of a call
    runner.close()
    # before: status ok and a peak of a few MiB, the 256 MiB matrix built in the forked child
    assert reply.status == "error" and "started a process during a graded call" in reply.error, reply
    assert fine.status == "ok" and np.all(fine.value == 2), fine


# ---------------------------------------------------------------- breach 8: shared memory

SHARED = '''
import mmap
def hold(x):
    global kept
    kept = mmap.mmap(-1, 1 << 30, flags=mmap.MAP_SHARED)     # 1 GiB of shared memory
    for i in range(0, 1 << 30, 4096):
        kept[i] = 1
    import time
    time.sleep(3)
    return x
'''
SHM_FILE = '''
import os
def hold(x):
    for n in range(32):                                      # tmpfs files: memory, in no mapping
        with open(f"/dev/shm/hoard{n}", "wb") as f:           # (each below the 64 MiB file limit)
            for _ in range(32):
                f.write(b"x" * (1 << 20))
    import time
    time.sleep(3)
    return x
'''
MEMFD = '''
import os
def hold(x):
    global kept
    kept = [os.memfd_create(f"hoard{n}") for n in range(32)]   # shared memory only descriptors hold
    for fd in kept:                                            # (each below the 64 MiB file limit)
        for _ in range(32):
            os.write(fd, b"x" * (1 << 20))
    import time
    time.sleep(3)
    return x
'''


@pytest.mark.parametrize("attack", [SHARED, SHM_FILE, MEMFD], ids=["mmap", "dev_shm", "memfd"])
def test_shared_memory_counts_against_the_submissions_memory_limit(box, attack):
    runner = run(box, attack)
    reply = runner.call("hold", X, {})
    runner.close()
    # 1 GiB against a 768 MiB limit; before: status ok, nothing counted but anonymous memory
    assert reply.status != "ok", reply
    if attack is MEMFD:
        allowed = ("Operation not permitted", "memory limit")   # seccomp refuses memfd_create
    elif attack is SHM_FILE and box.layer == workers.ISOLATED:
        allowed = ("memory limit", "No space left")   # bubblewrap's /dev/shm is capped at the limit
    elif attack is SHM_FILE and box.layer == workers.UID_DROP and box.landlock.startswith("on"):
        allowed = ("Permission denied",)              # Landlock: the host's /dev/shm is out of reach
    else:
        allowed = ("memory limit",)                   # counted, and killed
    assert any(text in reply.error for text in allowed), reply


# ---------------------------------------------------------------- breach 9: IPC outlives a submission

PLANT_IPC = '''
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.mq_open.restype = ctypes.c_int
fd = libc.mq_open(b"/proc-leak", os.O_CREAT | os.O_RDWR, 0o666, None)   # Landlock refuses it (a file
assert fd >= 0 or ctypes.get_errno() == 13, os.strerror(ctypes.get_errno())  # made in the mqueue fs)
assert libc.msgget(0x5EC2E7, 0o1666) >= 0           # IPC_CREAT | 0666
assert libc.shmget(0x5EC2E8, 4096, 0o1666) >= 0
'''
FIND_IPC = '''
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
def found(x):
    return x * 0 + (libc.mq_open(b"/proc-leak", os.O_RDWR, 0, None) >= 0) * 1 \\
        + (libc.msgget(0x5EC2E7, 0o666) >= 0) * 10 + (libc.shmget(0x5EC2E8, 0, 0o666) >= 0) * 100
'''


def test_no_ipc_object_of_one_submission_reaches_the_next(box):
    run(box, PLANT_IPC).close()
    runner = run(box, FIND_IPC)
    reply = runner.call("found", X, {})
    runner.close()
    assert reply.status == "ok" and float(reply.value.max()) == 0, reply   # before: 111 (all three found)


CAPS = '''
def caps(x):
    values = [int(open(f"/proc/sys/kernel/{name}").read()) for name in ("msgmni", "shmmax")]
    return x * 0 + x.new_tensor(values)
'''


def test_each_submission_has_an_ipc_namespace_of_its_own_with_its_own_caps(box):
    runner = run(box, CAPS)
    reply = runner.call("caps", (np.zeros(2, np.float32),), {})
    runner.close()
    # the host's (and bubblewrap's shared) namespace has 32000 queues and unbounded segments
    assert reply.status == "ok" and reply.value.tolist() == [16, 768 << 20], reply
