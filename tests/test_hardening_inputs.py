"""Issue 19, the breaches of the checks' inputs: each test here fails on the grader before the fix.

6. grading drew its inputs from the seed the release drew its stored ones from: a notebook that
   looked its inputs up in the release scored 25/66. Inputs now come from a course secret
   (autograder/secret.py) with the student and the check; only the worked examples repeat, and
   they carry at most MAX_FIXED_SHARE of a chapter's points;
7. a hidden check's inputs, kept by the submission, came back in a later public check's message:
   public checks now run first;
and the smaller gaps: inputs modified in place, an odd d_model that must raise ValueError, patches
that change the images' dtype, a NumPy array dressed as the framework's tensor.
"""
from __future__ import annotations

import copy
import json
import sys
import warnings
from pathlib import Path

import nbformat
import numpy as np
import pytest

import lookup_attack
from autograder import chapters, notebooks, secret
from autograder.checks.api import FIXED_POINTS, MAX_FIXED_SHARE
from autograder.checks.runner import LocalBackend, run_checks
from autograder.grade import Options, Sandboxes, grade_one
from autograder.release import release_chapter
from autograder.release.template.replay import call_key
from autograder.results import points

CHAPTER = "02_principles"


# --- helpers ---------------------------------------------------------------------------------------

class Recording(LocalBackend):
    """A LocalBackend that writes down every call's inputs (as the release keys them), by check."""

    def __init__(self, namespace: dict, framework: str):
        super().__init__(namespace, framework)
        self.calls: dict[str, list[str]] = {}

    def request(self, request, args, kwargs, seconds=None):
        frame = sys._getframe(1)
        while frame is not None and not frame.f_code.co_name.startswith("test_"):
            frame = frame.f_back
        check = frame.f_code.co_name if frame is not None else "?"
        self.calls.setdefault(check, []).append(call_key(request.get("name", "?"), tuple(args), dict(kwargs)))
        return super().request(request, args, kwargs, seconds)


def _checks(slug, namespace, framework="torch", **options):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return run_checks(slug, LocalBackend(dict(namespace), framework), framework, **options)[0]


def _notebook_with(slug: str, framework: str, source: str, folder: Path, name: str, student=False) -> Path:
    """The chapter's master (or the untouched student notebook) with a last cell `source`."""
    path = notebooks.student_path(slug, framework) if student else notebooks.master_path(slug, framework)
    nb = copy.deepcopy(nbformat.read(path, as_version=4))
    nb.cells.append(nbformat.v4.new_code_cell(source))
    out = folder / f"{name}.ipynb"
    nbformat.write(nb, out)
    return out


def _grade(paths: list[Path]):
    """Real grades (sandbox and all), in one set of workers."""
    boxes = Sandboxes(Options(timeout=240))
    try:
        return [grade_one(path, path.stem, boxes) for path in paths]
    finally:
        boxes.close()


def _by_exercise(result) -> dict[str, tuple[float, float]]:
    return {e: points([c for c in result.checks if c.exercise == e]) for e in result.exercises}


# --- breach 6: inputs from the course secret -------------------------------------------------------

@pytest.fixture(scope="module")
def released(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("release")
    release_chapter(chapters.chapter(CHAPTER), out)
    return out


def test_breach6_the_releases_stored_answers_earn_at_most_the_worked_examples(released, tmp_path):
    """The untouched notebook, its functions answering from the release's store: graded for real, it
    earns at most the fixed share (it earned 25 of 66 before), and only from worked examples."""
    source = lookup_attack.attack_source(released, CHAPTER, "torch")
    assert len(lookup_attack.stored_names(released, CHAPTER)) >= 10   # the store holds most exercises
    [result] = _grade([_notebook_with(CHAPTER, "torch", source, tmp_path, "lookup", student=True)])
    assert not result.error, result.error
    score, total = result.score, result.max_score
    assert total == sum(d.points for d in chapters.chapter(CHAPTER).declared_checks())
    assert score <= MAX_FIXED_SHARE * total, f"{score} of {total} from stored answers"
    earned = [c for c in result.checks if c.score > 0]
    assert all(c.max_score == FIXED_POINTS for c in earned), [c.name for c in earned if c.max_score != FIXED_POINTS]
    assert len(earned) >= 5   # the attack did run: the worked examples pass


def test_breach6_the_same_attack_in_the_students_own_check_still_passes_there(released):
    """The release's stored values are the public seed's: a student's own check() sees them (the
    attack is no bug of the lookup), the grader's secret inputs do not."""
    namespace = dict(notebooks.load_namespace(notebooks.master_path(CHAPTER, "torch")))
    exec(lookup_attack.attack_source(released, CHAPTER, "torch"), namespace)
    public = _checks(CHAPTER, namespace, public_only=True, seed=chapters.chapter(CHAPTER).seed)
    # (a check that compares two of the student's own calls, or calls the oracle otherwise, is missed)
    assert len([c for c in public if c.passed]) >= 0.8 * len(public), [c.name for c in public if not c.passed]
    graded = _checks(CHAPTER, namespace, public_only=True, secret_key=b"another course", student="amara")
    total = sum(d.points for d in chapters.chapter(CHAPTER).declared_checks())
    assert sum(c.score for c in graded) <= MAX_FIXED_SHARE * total
    assert sum(c.score for c in public) > 3 * sum(c.score for c in graded)


def _inputs(slug, framework, namespace, **options) -> dict[str, list[str]]:
    backend = Recording(dict(namespace), framework)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        run_checks(slug, backend, framework, **options)
    return backend.calls


def test_breach6_inputs_follow_secret_student_and_seed_and_repeat_on_a_regrade():
    """Two students, two secrets, two --seed values: different inputs for every check that is not
    fixed; the same secret, student and seed again: the same inputs, for every check."""
    namespace = notebooks.load_namespace(notebooks.master_path(CHAPTER, "torch"))
    options = dict(exercise="masked_softmax", secret_key=b"course secret", student="amara", seed=0)
    first = _inputs(CHAPTER, "torch", namespace, **options)
    assert first == _inputs(CHAPTER, "torch", namespace, **options)        # a regrade
    for change in ({"student": "bruno"}, {"secret_key": b"another secret"}, {"seed": 1}):
        other = _inputs(CHAPTER, "torch", namespace, **{**options, **change})
        assert set(other) == set(first)
        changed = {check for check, calls in first.items() if calls != other[check]}
        _only_fixed_repeat(first, changed)
    public_seed = _inputs(CHAPTER, "torch", namespace, exercise="masked_softmax", seed=chapters.chapter(CHAPTER).seed)
    _only_fixed_repeat(first, {check for check, calls in first.items() if calls != public_seed[check]})


def _only_fixed_repeat(checks, changed: set[str]) -> None:
    """Public checks repeat their inputs only if declared fixed; hidden ones only if their inputs
    are written in their code (edge cases such as huge scores), never most of them."""
    declared = {d.function: d for d in chapters.chapter(CHAPTER).declared_checks()}
    fixed = _fixed_of(CHAPTER)
    for check in checks:
        if declared[check].public:
            assert (check in changed) != (check in fixed), check
    hidden = [check for check in checks if not declared[check].public]
    assert len([c for c in hidden if c in changed]) > len(hidden) / 2, (hidden, changed)


def _fixed_of(slug: str) -> set[str]:
    module = chapters.chapter(slug).load_checks()
    return {name for name, func in vars(module).items() if name.startswith("test_")
            and any(m.name == "fixed_inputs" for m in getattr(func, "pytestmark", []))}


@pytest.mark.parametrize("record", chapters.chapters_with_exercises(), ids=lambda r: r.slug)
def test_breach6_fixed_checks_are_exactly_the_public_ones_whose_inputs_never_change(record):
    """Measured, not declared: a public check whose inputs are the same under two secrets is declared
    fixed (and so carries FIXED_POINTS), and one declared fixed has such inputs. Together they hold
    at most MAX_FIXED_SHARE of the chapter's points, and every exercise keeps points elsewhere."""
    namespace = notebooks.load_namespace(record.master_path("torch"))
    runs = [_inputs(record.slug, "torch", namespace, public_only=True, secret_key=key, student="amara")
            for key in (b"one secret", b"another secret")]
    unchanged = {check for check, calls in runs[0].items() if calls == runs[1].get(check)}
    assert unchanged == _fixed_of(record.slug)
    declared = record.declared_checks()
    total = sum(d.points for d in declared)
    fixed = [d for d in declared if d.function in unchanged]
    assert all(d.public and d.points == FIXED_POINTS for d in fixed)
    assert sum(d.points for d in fixed) <= MAX_FIXED_SHARE * total
    for exercise in record.exercises:
        assert any(d.points > 0 and d.function not in unchanged for d in declared if d.exercise == exercise), exercise


def test_breach6_results_name_the_secret_by_fingerprint_only_and_a_regrade_draws_the_same(tmp_path, monkeypatch):
    """Graded for real twice under one name and once under another: the seeds recorded for the
    instructor repeat for the same student and differ for another; results hold the secret's
    fingerprint, never the secret."""
    monkeypatch.setenv(secret.ENV, "a secret no result may hold")
    path = _notebook_with(CHAPTER, "torch", "pass", tmp_path, "amara")
    again = tmp_path / "again"
    again.mkdir()
    (again / "amara.ipynb").write_bytes(path.read_bytes())
    (tmp_path / "bruno.ipynb").write_bytes(path.read_bytes())
    first, second, bruno = _grade([path, again / "amara.ipynb", tmp_path / "bruno.ipynb"])
    seeds = [[c.seed for c in r.checks if c.seed is not None] for r in (first, second, bruno)]
    assert seeds[0] and seeds[0] == seeds[1]
    assert all(a != b for a, b in zip(seeds[0], seeds[2]))
    assert first.score == first.max_score == bruno.score
    text = json.dumps(first.to_dict())
    assert first.secret == secret.fingerprint(b"a secret no result may hold") and first.secret in text
    assert "a secret no result may hold" not in text


def test_breach6_the_secret_file_is_made_once_private_and_shared(tmp_path, monkeypatch):
    monkeypatch.delenv(secret.ENV, raising=False)
    monkeypatch.setenv(secret.FILE_ENV, str(tmp_path / "config" / "secret"))
    made = secret.course_secret()
    assert len(made) == 64 and (tmp_path / "config" / "secret").stat().st_mode & 0o077 == 0
    assert secret.course_secret() == made   # the next grader reads the same one
    check = secret.check_seed(made, 0, "amara", "test_x")
    assert check == secret.check_seed(made, 0, "amara", "test_x") != secret.check_seed(made, 0, "bruno", "test_x")


# --- breach 7: no hidden input reaches a message students read ------------------------------------

HOARDER = '''
_SEEN = []
def _hoarding(real):
    def hoarded(*args, **kwargs):
        before = list(_SEEN[-6:])   # the latest inputs this process saw, in any check
        for a in args:
            if hasattr(a, "numpy"):
                _SEEN.append(a.numpy().round(5).ravel()[:6].tolist())
        if before:   # raised, so that this check's message shows them
            raise ValueError("LEAK " + repr(before))
        return real(*args, **kwargs)
    return hoarded
for _name in EXERCISES:
    globals()[_name] = _hoarding(globals()[_name])
'''


def _numbers(rows) -> set[str]:
    return {f"{v:.5g}" for row in rows for v in row if v != round(v) and abs(v) > 1e-2}


def test_breach7_hidden_inputs_never_reach_a_public_checks_message():
    """Every function keeps the inputs it gets and raises the latest ones at its next call. The public checks'
    messages (which students read in full) may show public inputs, never a hidden check's."""
    from test_feedback_leaks import _student_texts
    from autograder.results import SubmissionResult

    record = chapters.chapter(CHAPTER)
    namespace = dict(notebooks.load_namespace(record.master_path("torch")))
    namespace["EXERCISES"] = record.exercises
    exec(HOARDER, namespace)
    public = {d.function for d in record.declared_checks() if d.public}
    seen: dict[str, list] = {}

    class Watching(LocalBackend):
        def request(self, request, args, kwargs, seconds=None):
            frame = sys._getframe(1)
            while not frame.f_code.co_name.startswith("test_"):
                frame = frame.f_back
            rows = [np.asarray(a).round(5).ravel()[:6].tolist() for a in args if isinstance(a, np.ndarray)]
            seen.setdefault("public" if frame.f_code.co_name in public else "hidden", []).extend(rows)
            return super().request(request, args, kwargs, seconds)

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        checks, _ = run_checks(CHAPTER, Watching(namespace, "torch"), "torch", seed=3)
    result = SubmissionResult("hoarder", "hoarder.ipynb", CHAPTER, "torch", checks=checks,
                              exercises=list(record.exercises))
    texts = "\n".join(_student_texts(result).values())
    assert "LEAK" in texts   # the attack worked: its own public inputs came back
    hidden_only = _numbers(seen["hidden"]) - _numbers(seen["public"])
    assert len(hidden_only) > 20
    leaked = sorted(n for n in hidden_only if n in texts)
    assert not leaked, f"hidden inputs in the student's feedback: {leaked[:5]}"
    in_file_order = [d.function for d in record.declared_checks()]
    assert len(checks) == len(in_file_order)   # results come back in file order, whatever ran first
    assert [c.exercise for c in checks] == [d.exercise for d in record.declared_checks()]


# --- inputs are left unchanged ----------------------------------------------------------------------

IN_PLACE = {
    "torch": """
def masked_softmax(scores, mask=None):
    if mask is not None:
        scores.masked_fill_(~mask, float("-inf"))
    scores -= scores.max(-1, keepdim=True).values.nan_to_num(neginf=0.0)
    weights = scores.exp()
    total = weights.sum(-1, keepdim=True)
    return torch.where(total > 0, weights / total.clamp_min(1e-30), torch.zeros_like(weights))
""",
}

SPOILING = '''
def _spoiling(real):
    def spoiled(*args, **kwargs):
        result = real(*args, **kwargs)
        for a in [*args, *kwargs.values()]:
            if isinstance(a, torch.Tensor) and a.numel():
                if a.dtype == torch.bool:
                    a.logical_not_()
                else:
                    a.add_(1)
        return result
    return spoiled
for _name in EXERCISES:
    if not isinstance(globals()[_name], type):
        globals()[_name] = _spoiling(globals()[_name])
'''


def test_a_softmax_that_shifts_its_scores_in_place_loses_its_points():
    """`scores -= scores.max(...)`: right values, but the caller's scores are changed."""
    namespace = dict(notebooks.load_namespace(notebooks.master_path(CHAPTER, "torch")))
    exec(IN_PLACE["torch"], namespace)
    checks = [c for c in _checks(CHAPTER, namespace, exercise="masked_softmax", seed=3)]
    failed = [c for c in checks if not c.passed]
    assert failed and all("changed an input in place" in c.output.split("\n")[0] for c in failed)
    assert points(checks)[0] == 0, [c.name for c in checks if c.passed]


@pytest.mark.parametrize("slug", ["01_background", CHAPTER, "03_math", "06_efficiency"])
def test_every_check_that_hands_a_tensor_fails_a_function_that_changes_it(slug):
    """Each function of the reference, made to change its tensor arguments after computing the right
    result: every check that gave it a tensor fails, and says so on its first line."""
    record = chapters.chapter(slug)
    namespace = dict(notebooks.load_namespace(record.master_path("torch")))
    namespace["EXERCISES"] = record.exercises
    exec(SPOILING, namespace)
    backend = Recording(dict(namespace), "torch")
    handed: set[str] = set()
    original = backend.request

    def request(request, args, kwargs, seconds=None):
        if any(isinstance(a, np.ndarray) and a.size for a in [*args, *kwargs.values()]) and "handle" not in request:
            frame = sys._getframe(1)
            while not frame.f_code.co_name.startswith("test_"):
                frame = frame.f_back
            handed.add(frame.f_code.co_name)
        return original(request, args, kwargs, seconds)

    backend.request = request
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        checks, _ = run_checks(slug, backend, "torch", seed=3)
    by_function = dict(zip([d.function for d in record.declared_checks()], checks))
    assert len(handed) >= 5
    still = [name for name in handed if by_function[name].passed]
    assert not still, f"checks that miss the changed inputs: {still}"


# --- sinusoidal_positional_encoding: an odd d_model raises ValueError ------------------------------

NO_ODD_CHECK = {
    "torch": """
def sinusoidal_positional_encoding(num_positions, d_model):
    positions = torch.arange(num_positions, dtype=torch.float32).unsqueeze(-1)
    angles = positions / 10000.0 ** (torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)
    return torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).reshape(num_positions, -1)[:, :d_model]
""",
    "tf": """
def sinusoidal_positional_encoding(num_positions, d_model):
    positions = tf.range(num_positions, dtype=tf.float32)[:, None]
    angles = positions / 10000.0 ** (tf.range(0, d_model, 2, dtype=tf.float32) / d_model)
    return tf.reshape(tf.stack([tf.sin(angles), tf.cos(angles)], axis=-1), (num_positions, -1))[:, :d_model]
""",
}


@pytest.mark.parametrize("framework", ["torch", "tf"])
@pytest.mark.parametrize("raised", [None, "TypeError", "AssertionError"])
def test_an_odd_d_model_must_raise_value_error(framework, raised):
    """Right encodings for even d_model; for an odd one it returns a truncated encoding, or raises
    another error than the exercise's ValueError: one check fails, the others pass."""
    source = NO_ODD_CHECK[framework]
    if raised:
        source = source.replace("):\n", f"):\n    if d_model % 2:\n        raise {raised}('odd')\n", 1)
    namespace = dict(notebooks.load_namespace(notebooks.master_path("03_math", framework)))
    exec(source, namespace)
    checks = _checks("03_math", namespace, framework, exercise="sinusoidal_positional_encoding", seed=3)
    failed = [c.name for c in checks if not c.passed]
    assert failed == ["sinusoidal_positional_encoding: an odd d_model raises ValueError: the sines and cosines "
                      "come in pairs"], failed


# --- image_to_patches: the patches keep the images' dtype -------------------------------------------

CASTING = {
    "torch": """
def image_to_patches(images, patch_size):
    b, h, w, c = images.shape
    p = patch_size
    x = images.float().reshape(b, h // p, p, w // p, p, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // p) * (w // p), p * p * c)
""",
    "tf": """
def image_to_patches(images, patch_size):
    images = tf.cast(images, tf.float32)
    b, h, w, c = images.shape
    p = patch_size
    x = tf.transpose(tf.reshape(images, (b, h // p, p, w // p, p, c)), (0, 1, 3, 2, 4, 5))
    return tf.reshape(x, (b, (h // p) * (w // p), p * p * c))
""",
}


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_patches_that_cast_the_images_lose_the_dtype_check(framework):
    namespace = dict(notebooks.load_namespace(notebooks.master_path("05_applications", framework)))
    exec(CASTING[framework], namespace)
    checks = _checks("05_applications", namespace, framework, exercise="image_to_patches", seed=3)
    failed = [c for c in checks if not c.passed]
    assert [c.name.split(":")[0] for c in failed] == ["image_to_patches"]
    assert "expected dtype uint8" in failed[0].output.split("\n")[0]


# --- the framework's own tensors: a NumPy array dressed as one fails --------------------------------

DRESSED = {
    # TensorFlow's variable class rebound to NumPy's: the type test took the frameworks' attributes
    # at the time of the call, after the submission's code had run
    "tf": """
import numpy as _np
from tensorflow.python.ops import resource_variable_ops as _variables
_variables.BaseResourceVariable = _np.ndarray
def segment_mask(segment_ids):
    ids = _np.asarray(segment_ids)
    return (ids[..., :, None] == ids[..., None, :]) & (ids[..., :, None] >= 0) & (ids[..., None, :] >= 0)
""",
    # torch's base class and the conversions the grader used, rebound to pass NumPy through
    "torch": """
import numpy as _np
torch._C.TensorBase = _np.ndarray
for _method in ("detach", "cpu"):
    setattr(torch.Tensor, _method, lambda self: self)
torch.Tensor.as_subclass = lambda self, cls: self
_numpy = torch.Tensor.numpy
torch.Tensor.numpy = lambda self: self if isinstance(self, _np.ndarray) else _numpy(self)
def segment_mask(segment_ids):
    ids = _np.asarray(segment_ids)
    return (ids[..., :, None] == ids[..., None, :]) & (ids[..., :, None] >= 0) & (ids[..., None, :] >= 0)
""",
}


def test_a_numpy_array_dressed_as_a_tensor_earns_nothing_when_graded(tmp_path):
    """segment_mask computed and returned in NumPy, the frameworks' classes rebound so that the
    array passes for a tensor (6 of 6 points before): graded for real, it earns nothing."""
    paths = [_notebook_with(CHAPTER, fw, DRESSED[fw], tmp_path, f"dressed_{fw}") for fw in ("tf", "torch")]
    for result in _grade(paths):
        assert not result.error, result.error
        scores = _by_exercise(result)
        assert scores["segment_mask"][0] == 0, (result.framework, scores["segment_mask"])
        failed = [c for c in result.checks if c.exercise == "segment_mask"]
        assert all("the exercise asks for" in c.output for c in failed), [c.output[:200] for c in failed]


# --- Gradescope: the zip's own key, each student's own inputs ----------------------------------------

def test_the_gradescope_zip_carries_a_derived_key_and_names_students_by_their_ids(tmp_path, monkeypatch):
    import stat
    import zipfile

    from autograder import export

    monkeypatch.setenv(secret.ENV, "the instructor's secret")
    with zipfile.ZipFile(export.gradescope_zip(CHAPTER, "torch", tmp_path / "ch02.zip")) as archive:
        info = archive.getinfo(secret.ZIP_NAME)
        key = archive.read(info).decode().strip()
        everything = b"".join(archive.read(name) for name in archive.namelist())
    assert stat.S_IMODE(info.external_attr >> 16) == 0o600
    assert key == secret.derived(b"the instructor's secret", f"gradescope {CHAPTER}")
    assert key != secret.derived(b"the instructor's secret", "gradescope 03_math")
    assert b"the instructor's secret" not in everything
    metadata = tmp_path / "submission_metadata.json"
    metadata.write_text(json.dumps({"id": 91, "users": [{"id": 7, "name": "B"}, {"id": 3, "name": "A"}]}))
    assert secret.gradescope_student(metadata) == "gradescope:3,7"   # a group, in either order
    metadata.write_text("{not json")
    assert secret.gradescope_student(metadata) == ""
    monkeypatch.setenv(secret.STUDENT_ENV, "gradescope:3,7")
    assert secret.student_of("submission") == "gradescope:3,7"
