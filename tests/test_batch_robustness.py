"""One notebook cannot kill the batch or lose results (issue 14).

Each attack is a submission the grader must survive: the failure stays in that submission as a
one-line error and the rest of the batch is graded. A rerun regrades what changed and what failed
for the grader's own reasons, and nothing else. The trusted side's memory stays bounded whatever a
reply claims, and no file name reaches the grader's own files.
"""
from __future__ import annotations

import base64
import copy
import csv
import io
import json
import os
import time
import tracemalloc
import zipfile
from pathlib import Path

import nbformat
import numpy as np
import pytest

from autograder import batch, notebooks, parse, report
from autograder.batch import discover, grade_batch
from autograder.grade import Options
from autograder.results import SubmissionResult
from autograder.sandbox import protocol

CHAPTER = "02_principles"


def untouched(fw: str = "torch"):
    return nbformat.read(notebooks.student_path(CHAPTER, fw), as_version=4)


def reference(fw: str = "torch"):
    return nbformat.read(notebooks.master_path(CHAPTER, fw), as_version=4)


def with_cell(nb, source: str, at: int = 2):
    nb = copy.deepcopy(nb)
    nb.cells.insert(at, nbformat.v4.new_code_cell(source))
    return nb


# --- the attacks -----------------------------------------------------------------------------------

DEEP_UNARY = "x = " + "-" * 100_000 + "1\n"             # the parser runs out of memory (MemoryError)
DEEP_SUM = "x = 1" + " + 1" * 100_000 + "\n"             # the AST is too deep to build (RecursionError)

DEEP_REPLY_FRAME = '''
import os, socket, struct
head = ("[" * 100000 + "]" * 100000).encode()
for fd in sorted(int(f) for f in os.listdir("/proc/self/fd")):
    try:
        s = socket.socket(fileno=os.dup(fd))
    except OSError:
        continue
    if s.type == socket.SOCK_STREAM:
        s.sendall(struct.pack(">IQ", len(head), 0) + head)   # the grader reads this as the cell's reply
'''


def deep_metadata_bytes() -> bytes:
    nb = json.loads(nbformat.writes(untouched()))
    text = json.dumps(nb)
    nested = "[" * 100_000 + "]" * 100_000
    return text.replace('"metadata": {', '"metadata": {"deep": ' + nested + ", ", 1).encode()


def npz_bomb(claimed_bytes: int, real_zeros: int, members: int = 1) -> bytes:
    """An .npz whose members each claim `claimed_bytes` of float32 and hold `real_zeros` bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for member in range(members):
            with z.open(f"r{member}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array_header_1_0(
                    f, {"descr": "<f4", "fortran_order": False, "shape": (claimed_bytes // 4,)})
                chunk = bytes(1 << 20)
                for start in range(0, real_zeros, len(chunk)):
                    f.write(chunk[: min(len(chunk), real_zeros - start)])
    return buf.getvalue()


def npz_bomb_cell() -> str:
    """Every reply with arrays now carries a 1 GiB bomb (a few hundred kB on the wire)."""
    blob = base64.b64encode(npz_bomb(1 << 30, 1 << 30)).decode()
    return (f'import base64, sys\nBOMB = base64.b64decode("{blob}")\n'
            'proto = sys.modules["autograder.sandbox.protocol"]\n'
            'proto.pack_arrays = lambda arrays: BOMB if arrays else b""\n')


# --- parse: deep structures are the student's one-line error ----------------------------------------

@pytest.mark.parametrize("source", [DEEP_UNARY, DEEP_SUM], ids=["memory", "recursion"])
def test_deeply_nested_source_is_a_one_line_error(tmp_path, source):
    path = tmp_path / "deep.ipynb"
    nbformat.write(with_cell(untouched(), source), path)
    with pytest.raises(parse.BadSubmission) as bad:
        parse.load(path)
    assert "nested too deeply" in str(bad.value) and "\n" not in str(bad.value)


def test_metadata_nested_100000_deep_is_a_one_line_error(tmp_path):
    path = tmp_path / "deep.ipynb"
    path.write_bytes(deep_metadata_bytes())
    with pytest.raises(parse.BadSubmission) as bad:
        parse.load(path)
    assert "nested too deeply" in str(bad.value)


def test_a_metadata_string_cannot_put_lines_or_control_characters_into_the_error(tmp_path):
    nb = reference()
    nb.metadata["course"]["chapter"] = "02\n\x1b[2J<b>" + "x" * 500
    path = tmp_path / "odd.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(parse.BadSubmission) as bad:
        parse.load(path)
    message = str(bad.value)
    assert "\n" not in message and "\x1b" not in message and len(message) < 200


# --- protocol: deep frames and inflating arrays -----------------------------------------------------

class _FakeSocket:
    def __init__(self, data: bytes):
        self.data = io.BytesIO(data)

    def recv(self, n: int) -> bytes:
        return self.data.read(n)


def _frame(head: bytes, blob: bytes = b"") -> bytes:
    return protocol._PREFIX.pack(len(head), len(blob)) + head + blob


def test_a_deeply_nested_reply_frame_is_a_protocol_error():
    with pytest.raises(protocol.ProtocolError):
        protocol.recv(_FakeSocket(_frame(("[" * 100_000 + "]" * 100_000).encode())))


def _peak_while(func) -> int:
    tracemalloc.start()
    try:
        func()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize("claimed, real", [(300 << 20, 300 << 20), (1 << 42, 1 << 10)],
                         ids=["inflates-300MB", "header-claims-4TB"])
def test_a_reply_cannot_inflate_the_grader(claimed, real):
    blob = npz_bomb(claimed, real)
    assert len(blob) < 2 << 20
    got = {}
    peak = _peak_while(lambda: got.update(frame=protocol.recv(_FakeSocket(_frame(b'{"status": "ok"}', blob)))))
    header, arrays = got["frame"]
    assert not arrays and "too large" in arrays.reason, arrays
    assert peak < 32 << 20, f"the grader allocated {peak >> 20} MB for a refused reply"


def test_arrays_within_the_caps_still_cross():
    arrays = {"r0": np.arange(12, dtype=np.float32).reshape(3, 4), "r1": np.ones(5, bool)}
    header, back = protocol.recv(_FakeSocket(_frame(b"{}", protocol.pack_arrays(arrays))))
    assert set(back) == {"r0", "r1"} and np.array_equal(back["r0"], arrays["r0"])


def test_the_total_of_many_arrays_is_capped_too():
    each = protocol.MAX_ARRAY_BYTES - (1 << 20)              # every array is under the per-array cap
    members = protocol.MAX_TOTAL_BYTES // each + 1
    blob = npz_bomb(each, each, members)
    _, arrays = protocol.recv(_FakeSocket(_frame(b"{}", blob)))
    assert not arrays and "too large" in arrays.reason


def test_text_arrays_do_not_cross():
    blob = protocol.pack_arrays({"r0": np.array(["LEAK hidden input 0.4331"])})
    with pytest.raises(protocol.ProtocolError):
        protocol.recv(_FakeSocket(_frame(b"{}", blob)))


# --- file names --------------------------------------------------------------------------------------

HOSTILE_NAMES = ["grades.csv.ipynb", "histogram.png.ipynb", "...ipynb", ".write-test.ipynb", ".ipynb",
                 "a\nb.ipynb", "a b.ipynb", "a_b.ipynb", "A_B.ipynb", "\u202eevil.ipynb", "José.ipynb",
                 "Jose\u0301.ipynb", "con.ipynb", "x" * 240 + ".ipynb"]


def test_every_hostile_name_gets_its_own_safe_folder(tmp_path):
    folder = tmp_path / "class"
    (folder / "sub").mkdir(parents=True)
    for name in HOSTILE_NAMES:
        (folder / name).write_bytes(b"")
    (folder / "sub" / "a_b.ipynb").write_bytes(b"")
    named = discover([folder])
    names = [n for _, n in named]
    assert len(named) == len(HOSTILE_NAMES) + 1
    assert len({n.casefold() for n in names}) == len(names), names
    for name in names:
        assert name.isascii() and name[0].isalnum() and len(name) <= 100, name
        assert all(ch.isalnum() or ch in "-_" for ch in name), name
        assert name.casefold() not in ("grades", "con", "histogram"), name
    assert discover([folder]) == named   # the same names on every run


def test_a_batch_of_hostile_names_finishes_and_reruns(tmp_path):
    folder, out = tmp_path / "class", tmp_path / "out"
    folder.mkdir()
    for name in HOSTILE_NAMES:
        (folder / name).write_bytes(b"{not a notebook")   # errors grade without a sandbox: fast
    first = grade_batch([folder], out, Options())
    assert len(first) == len(HOSTILE_NAMES) and all(r.error for r in first)
    assert (out / "grades.csv").is_file() and (out / "histogram.png").is_file()
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/result.json")}
    assert len(before) == len(HOSTILE_NAMES)
    second = grade_batch([folder], out, Options())
    assert [r.submission for r in second] == [r.submission for r in first]
    assert before == {p: p.stat().st_mtime_ns for p in out.glob("*/result.json")}
    rows = list(csv.DictReader((out / "grades.csv").open(newline="")))
    # one line per cell, for spreadsheets and LMS importers: a newline in a name becomes a space
    assert sorted(r["file"] for r in rows) == sorted(" ".join(str(folder / n).split()) for n in HOSTILE_NAMES)


# --- resuming: what is regraded ------------------------------------------------------------------------

def _mtimes(out: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/result.json")}


def test_a_grader_problem_and_a_changed_file_are_regraded_nothing_else(tmp_path, monkeypatch):
    folder, out = tmp_path / "class", tmp_path / "out"
    folder.mkdir()
    for name in ("broken", "changes", "steady"):
        (folder / f"{name}.ipynb").write_bytes(b"{broken json")
    real = parse.load

    def flaky(path, expect=None):
        if path.stem == "broken":
            raise OSError("the grader's disk hiccuped\nsecond line")
        return real(path, expect)

    monkeypatch.setattr(parse, "load", flaky)
    first = {r.submission: r for r in grade_batch([folder], out, Options())}
    assert first["broken"].grader_problem and "\n" not in first["broken"].error
    assert not first["steady"].grader_problem
    monkeypatch.undo()
    before = _mtimes(out)
    time.sleep(0.01)
    (folder / "changes.ipynb").write_bytes(b"[]")
    second = {r.submission: r for r in grade_batch([folder], out, Options())}
    after = _mtimes(out)
    regraded = {name for name in after if after[name] != before[name]}
    assert regraded == {"broken", "changes"}
    assert not second["broken"].grader_problem and "not valid JSON" in second["broken"].error
    assert "not an object" in second["changes"].error


def test_an_unexpected_exception_in_grading_is_that_submissions_one_line_error(tmp_path, monkeypatch):
    from autograder import grade

    path = tmp_path / "a.ipynb"
    nbformat.write(reference(), path)

    def explode(*args, **kwargs):
        raise RecursionError("maximum recursion depth exceeded\nwith a second line")

    monkeypatch.setattr(grade, "run_checks", explode)
    sandboxes = grade.Sandboxes(Options(timeout=60))
    try:
        result = grade.grade_one(path, "a", sandboxes)
    finally:
        sandboxes.close()
    assert result.error and "\n" not in result.error and "RecursionError" in result.error
    assert result.grader_problem and result.digest == parse.digest_of(path)


def killer(path: str, name: str) -> dict:
    """A trusted job that dies (as if the OOM killer chose it) whenever it grades 'dies-*'."""
    if Path(path).stem.startswith("dies"):
        os._exit(3)
    return batch._job(path, name)


def test_a_dead_job_costs_only_what_it_held_and_that_is_regraded(tmp_path, monkeypatch):
    folder, out = tmp_path / "class", tmp_path / "out"
    folder.mkdir()
    for i in range(5):
        (folder / f"ok{i}.ipynb").write_bytes(b"{broken json")
    (folder / "dies.ipynb").write_bytes(b"{broken json")
    monkeypatch.setattr(batch, "_job", killer)
    first = {r.submission: r for r in grade_batch([folder], out, Options(), jobs=2)}
    assert len(first) == 6
    assert all("not valid JSON" in first[f"ok{i}"].error for i in range(5))
    assert first["dies"].grader_problem and "died" in first["dies"].error
    monkeypatch.undo()
    before = _mtimes(out)
    second = {r.submission: r for r in grade_batch([folder], out, Options(), jobs=2)}
    after = _mtimes(out)
    assert {n for n in after if after[n] != before[n]} == {"dies"}
    assert not second["dies"].grader_problem and "not valid JSON" in second["dies"].error


# --- a class of 100, with one of each crash kind -------------------------------------------------------

def _crash_kinds() -> dict[str, object]:
    """file name -> notebook (or raw bytes) that once killed a batch or lost a result."""
    return {
        "deep_source_memory.ipynb": with_cell(untouched(), DEEP_UNARY),
        "deep_source_recursion.ipynb": with_cell(untouched(), DEEP_SUM),
        "deep_metadata.ipynb": deep_metadata_bytes(),
        "deep_reply_frame.ipynb": with_cell(reference(), DEEP_REPLY_FRAME, at=len(reference().cells)),
        "npz_bomb.ipynb": with_cell(reference(), npz_bomb_cell(), at=len(reference().cells)),
        "grades.csv.ipynb": reference(),
        "...ipynb": untouched(),
        ".write-test.ipynb": reference(),
        "dies.ipynb": reference(),          # its trusted job dies (see `killer`)
    }


# ~2 minutes on 2 cores: the gallery tier, so `make test-fast` leaves it to `make test`
@pytest.mark.slow
@pytest.mark.xdist_group("gallery")
def test_a_class_of_100_with_every_crash_kind_finishes_and_reruns_only_what_needs_it(tmp_path, monkeypatch):
    folder, out = tmp_path / "class", tmp_path / "out"
    folder.mkdir()
    crashes = _crash_kinds()
    for name, nb in crashes.items():
        (folder / name).write_bytes(nb if isinstance(nb, bytes) else nbformat.writes(nb).encode())
    honest = {f"student_{i:03d}.ipynb": (untouched() if i % 10 == 0 else reference("tf" if i % 45 == 1 else "torch"))
              for i in range(100 - len(crashes))}
    for name, nb in honest.items():
        nbformat.write(nb, folder / name)

    monkeypatch.setattr(batch, "_job", killer)
    started = time.monotonic()
    first = {Path(r.path).name: r for r in grade_batch([folder], out, Options(timeout=60), jobs=2)}
    took = time.monotonic() - started
    monkeypatch.undo()

    assert len(first) == 100 and (out / "grades.csv").is_file() and (out / "histogram.png").is_file()
    for name in ("deep_source_memory.ipynb", "deep_source_recursion.ipynb", "deep_metadata.ipynb"):
        assert "nested too deeply" in first[name].error and not first[name].grader_problem, name
    frame = first["deep_reply_frame.ipynb"]
    assert not frame.error and frame.checks[0].status == "failed"          # the cell that forged it
    assert all(c.passed for c in frame.checks[1:])                         # everything else still graded
    bomb = first["npz_bomb.ipynb"]
    assert not bomb.error and bomb.score == 0
    assert any("too large" in c.output for c in bomb.checks)
    for name in ("grades.csv.ipynb", ".write-test.ipynb"):
        assert not first[name].error and first[name].score == first[name].max_score > 0, name
    assert first["...ipynb"].max_score > 0 and first["...ipynb"].score == 0
    assert first["dies.ipynb"].grader_problem
    for name, result in first.items():
        if name in honest:
            assert not result.error and result.max_score > 0, (name, result.error)
            assert (result.score == 0) == name.endswith(("0.ipynb",)) and name in honest, name

    changed = folder / "student_005.ipynb"
    nbformat.write(untouched(), changed)
    before = _mtimes(out)
    second = {Path(r.path).name: r for r in grade_batch([folder], out, Options(timeout=60), jobs=2)}
    after = _mtimes(out)
    regraded = {name for name in after if after[name] != before[name]}
    names = {r.submission: Path(r.path).name for r in second.values()}
    assert {names[n] for n in regraded} == {"student_005.ipynb", "dies.ipynb"}
    assert second["student_005.ipynb"].score == 0 and not second["dies.ipynb"].error
    print(f"100 submissions graded in {took:.1f} s with --jobs 2")


def test_every_crash_kind_stays_in_its_submission_with_one_job(tmp_path):
    """--jobs 1 (the default) grades in the batch's own process: nothing may escape into it."""
    folder, out = tmp_path / "class", tmp_path / "out"
    folder.mkdir()
    crashes = {name: nb for name, nb in _crash_kinds().items() if name != "dies.ipynb"}
    for name, nb in crashes.items():
        (folder / name).write_bytes(nb if isinstance(nb, bytes) else nbformat.writes(nb).encode())
    results = {Path(r.path).name: r for r in grade_batch([folder], out, Options(timeout=60))}
    assert set(results) == set(crashes)
    assert not any(r.grader_problem for r in results.values())
    for result in results.values():
        assert result.error is None or "\n" not in result.error
    assert results["deep_reply_frame.ipynb"].score == results["deep_reply_frame.ipynb"].max_score > 0
    assert any("too large" in c.output for c in results["npz_bomb.ipynb"].checks)
