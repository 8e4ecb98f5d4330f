"""One record per chapter: what the grader, the release and the tests know about a chapter.

Adding a chapter with exercises means adding its record below, its masters
(`solutions/<slug>/exercises_<framework>.ipynb`), its checks (`autograder/checks/ch<slug>.py`) and its
oracle; every other place finds them through here. `tests/test_chapters.py` fails when a record and
the repository disagree (the masters' exercise cells, the checks' `@check` names, `_toc.yml`).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("torch", "tf")

@dataclass(frozen=True)
class Forbidden:
    """The built-ins no exercise of a chapter may call, per framework (qualified, as shown to students)."""

    torch: tuple[str, ...] = ()
    tf: tuple[str, ...] = ()

    def __getitem__(self, framework: str) -> tuple[str, ...]:
        _notebook_name(framework)   # rejects an unknown framework
        return getattr(self, framework)


def _attention_builtins() -> Forbidden:
    """The frameworks' ready-made attention, which the contract forbids inside any exercise that
    implements a mechanism ("No built-in for the exercise's own job").

    Read from the tracer's tables, never copied: the sandboxed worker sees only
    `autograder/sandbox/`, so the tables must live there, and the record names what they detect."""
    from autograder.sandbox import tracer

    names = sorted(tracer.KNOWN)
    return Forbidden(torch=tuple(n for n in names if tracer.family_of(n) == "torch"),
                     tf=tuple(n for n in names if tracer.family_of(n) == "keras"))


ATTENTION_BUILTINS = _attention_builtins()


@dataclass(frozen=True)
class Limits:
    """How much one graded submission of the chapter may use; a check may ask for less."""

    call_seconds: float = 20.0        # one call of a student's function: the chapter-02 functions take ms
    cell_seconds: float = 60.0        # one notebook cell, imports included (TensorFlow takes ~5 s)
    submission_seconds: float = 300.0 # the whole notebook and all its checks
    memory_mb: int = 2048             # the submission's own memory: small tensors only in chapter 02


@dataclass(frozen=True)
class Chapter:
    slug: str                                     # "02_principles": NN_name, as the folders are named
    title: str                                    # the first heading of chapters/<slug>/index.md
    exercises: tuple[str, ...] = ()               # in the masters' order: the CSV's columns
    forbidden: Forbidden = ATTENTION_BUILTINS     # forbidden[framework] -> qualified names
    # exercises that ask for gradients by hand: the scan charges them with any automatic
    # differentiation they reach (torch.autograd, .backward(), requires_grad, tf.GradientTape, ...)
    no_autograd: tuple[str, ...] = ()
    # exercises whose whole job one framework function already does (softmax, logsumexp, ...):
    # (exercise, names) pairs; the scan charges the exercise with any of these names it reaches, as
    # an attribute (`torch.softmax`, `x.softmax(-1)`, `tf.nn.softmax`) or an import from a framework
    own_job: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # exercises that may call the frameworks' attention built-ins (`forbidden`) because their job is
    # something else, e.g. training a whole model (chapter 05); the scan's other charges still apply
    builtins_allowed: tuple[str, ...] = ()
    limits: Limits = Limits()
    seed: int = 0                                 # base seed of the checks' random inputs

    @property
    def number(self) -> int:
        return int(self.slug[:2])

    @property
    def has_exercises(self) -> bool:
        return bool(self.exercises)

    def master_path(self, framework: str) -> Path:
        """The solved master notebook, with the solution markers."""
        return REPO_ROOT / "solutions" / self.slug / _notebook_name(framework)

    def student_path(self, framework: str) -> Path:
        """The student notebook generated from the master (`make exercises`)."""
        return REPO_ROOT / "chapters" / self.slug / _notebook_name(framework)

    @property
    def index_page(self) -> Path:
        return REPO_ROOT / "chapters" / self.slug / "index.md"

    @property
    def checks_module(self) -> str:
        return f"autograder.checks.ch{self.slug}"

    @property
    def checks_path(self) -> Path:
        return REPO_ROOT / "autograder" / "checks" / f"ch{self.slug}.py"

    @property
    def oracle_module(self) -> str:
        # `ch<slug>`, never the bare name: `oracle/math.py` or `oracle/code.py` would shadow the
        # standard library for any script run from inside the package.
        return f"autograder.oracle.ch{self.slug}"

    @property
    def oracle_path(self) -> Path:
        return REPO_ROOT / "autograder" / "oracle" / f"ch{self.slug}.py"

    def binding(self, framework: str) -> str:
        """The setup cell's lines that bind `check` to this assignment (checked by `assign`)."""
        _notebook_name(framework)
        return f'import autograder\ncheck = autograder.checker("{self.slug}", "{framework}")'

    def assignments(self) -> list[tuple[str, str]]:
        """(slug, framework) for each framework, when the chapter has exercises."""
        return [(self.slug, framework) for framework in FRAMEWORKS] if self.exercises else []

    def load_checks(self) -> ModuleType:
        return importlib.import_module(self.checks_module)

    def declared_checks(self) -> list[Declared]:
        """The checks its module declares with `@check`, in file order."""
        module = self.load_checks()
        found = []
        for name, func in vars(module).items():
            marks = {m.name: m for m in getattr(func, "pytestmark", [])} if callable(func) else {}
            if "exercise" in marks and name.startswith("test_"):
                points = marks["points"].args[0] if "points" in marks else 1.0
                found.append(Declared(name, marks["exercise"].args[0], float(points), "public" in marks,
                                      func.__code__.co_firstlineno))
        return sorted(found, key=lambda d: d.line)

    def load_oracle(self) -> ModuleType:
        return importlib.import_module(self.oracle_module)

    def audit(self) -> list[str]:
        """Where the repository disagrees with this record: one line each; empty when they agree."""
        if not self.exercises:
            strays = [p for p in (*map(self.master_path, FRAMEWORKS), self.checks_path) if p.exists()]
            return [f"{p.relative_to(REPO_ROOT)} exists, but the record of {self.slug} lists no exercises"
                    for p in strays]
        from autograder import notebooks

        problems = []
        for framework in FRAMEWORKS:
            path = self.master_path(framework)
            if not path.is_file():
                problems.append(f"{path.relative_to(REPO_ROOT)} is missing")
                continue
            nb = notebooks.read(path)
            in_master = tuple(notebooks.exercises(nb))
            if in_master != self.exercises:
                problems.append(f"{path.relative_to(REPO_ROOT)} defines {list(in_master)}, "
                                f"the record lists {list(self.exercises)}")
            course = dict(nb.metadata.get("course") or {})
            if course != {"chapter": self.slug, "framework": framework}:
                problems.append(f"{path.relative_to(REPO_ROOT)}: metadata.course is {course}")
        declared = self.declared_checks() if self.checks_path.is_file() else []
        checked = {d.exercise for d in declared}
        public = {d.exercise for d in declared if d.public}
        for name in self.exercises:
            if name not in checked:
                problems.append(f"{self.checks_module} has no @check for {name}")
            elif name not in public:
                problems.append(f"{self.checks_module} has no public check for {name}: check() would say nothing")
        problems += [f"{self.checks_module} checks {name}, which the record does not list"
                     for name in sorted(checked - set(self.exercises))]
        if not self.oracle_path.is_file():
            return problems + [f"{self.oracle_path.relative_to(REPO_ROOT)} is missing (the oracle of {self.slug})"]
        oracle = self.load_oracle()
        problems += [f"{self.oracle_module} has no function {name}"
                     for name in self.exercises if not callable(getattr(oracle, name, None))]
        return problems + self._audit_forbidden()

    def _audit_forbidden(self) -> list[str]:
        """A record may only forbid what the grader can see being called."""
        from autograder.sandbox import tracer

        return ([f"the record of {self.slug} forbids {name}, which the tracer and the scan do not detect"
                 for framework in FRAMEWORKS for name in self.forbidden[framework] if name not in tracer.KNOWN]
                + [f"the record of {self.slug} forbids autograd in {name}, which is not one of its exercises"
                   for name in self.no_autograd if name not in self.exercises]
                + [f"the record of {self.slug} forbids built-ins in {name}, which is not one of its exercises"
                   for name, _ in self.own_job if name not in self.exercises]
                + [f"the record of {self.slug} allows built-ins in {name}, which is not one of its exercises"
                   for name in self.builtins_allowed if name not in self.exercises])

    def charged(self, exercise: str, names) -> list[str]:
        """Of the built-ins the grader saw `exercise` reach, those it is charged with: every name
        but the tracer's attention built-ins this record does not forbid there (its `forbidden`
        narrowed, or the exercise in `builtins_allowed`). Own-job, autograd and forged names stay."""
        from autograder.sandbox import tracer

        forbidden = set() if exercise in self.builtins_allowed else {*self.forbidden.torch, *self.forbidden.tf}
        return sorted(n for n in names if n not in tracer.KNOWN or n in forbidden)


@dataclass(frozen=True)
class Declared:
    """One `@check` of a chapter's checks module, as declared (its pytest marks)."""

    function: str
    exercise: str
    points: float
    public: bool
    line: int


def _notebook_name(framework: str) -> str:
    if framework not in FRAMEWORKS:
        raise ValueError(f"unknown framework {framework!r} (expected one of {', '.join(FRAMEWORKS)})")
    return f"exercises_{framework}.ipynb"


_CHAPTERS = (
    Chapter("01_background", "Background: why attention", exercises=(
        "softmax",
        "nadaraya_watson",
        "attention_pool",
    ), own_job=(("softmax", ("softmax", "log_softmax", "Softmax")),), seed=1),
    Chapter("02_principles", "Principles of attention", exercises=(
        "dot_product_scores",
        "scaled_dot_product_scores",
        "additive_scores",
        "general_scores",
        "masked_softmax",
        "padding_mask",
        "causal_mask",
        "tree_mask",
        "scaled_dot_product_attention",
        "segment_mask",
        "decoder_masks",
        "bahdanau_step",
        "attention_pooling",
    )),
    Chapter("03_math", "The mathematics of attention", exercises=(
        "logsumexp",
        "softmax_jacobian",
        "attention_backward",
        "sinusoidal_positional_encoding",
        "attention_cost",
        "attention_entropy",
    ), no_autograd=("attention_backward", "softmax_jacobian"), own_job=(
        ("logsumexp", ("logsumexp", "reduce_logsumexp")),
        ("softmax_jacobian", ("jacobian", "batch_jacobian", "jacrev", "jacfwd")),
        ("attention_entropy", ("entropy", "Categorical")),
    )),
    Chapter("04_code", "Attention in code: layers and blocks", exercises=(
        "split_heads",
        "merge_heads",
        "MultiHeadAttention",
        "AdditiveAttention",
        "TransformerEncoderBlock",
        "TransformerDecoderBlock",
    ), seed=4),
    Chapter("05_applications", "Applications", exercises=(
        "image_to_patches",
        "target_attention",
        "train_aspect_sentiment",
    ),
        # its job is a trained model, not a mechanism: nn.MultiheadAttention or Keras' attention
        # layers are fair bricks there (chapters 02 and 04 graded the mechanisms themselves)
        builtins_allowed=("train_aspect_sentiment",),
        # train_aspect_sentiment trains a model in each of its four checks (~5 s each on 2 cores, each
        # check's own `seconds=60`): the whole notebook needs more than the default 300 s when the
        # grading machine is busy
        limits=Limits(submission_seconds=480.0), seed=5),
    Chapter("06_efficiency", "Efficient attention", exercises=(
        "merge_softmax_stats",
        "flash_attention",
        "sliding_window_mask",
        "linear_attention",
        "decode_step",
        "grouped_query_attention",
        "split_kv_decode",
        "paged_attention",
        "flash_attention_backward",
    ), limits=Limits(
        # flash_attention's memory check runs one long sequence (8192 tokens): a version that
        # materialises its 256 MiB score matrix holds about three of them at once (scores,
        # exponentials, weights; more in TensorFlow's pool), which must fit here so that the
        # check's own bound, not the worker's, fails it, with the message that says why.
        memory_mb=3072,
        # TensorFlow's eager loop over blocks takes a few seconds at that length on a busy CPU
        submission_seconds=600.0,
    ), no_autograd=("flash_attention_backward",), seed=6),
    Chapter("07_outlook", "Outlook"),
)
_BY_SLUG = {c.slug: c for c in _CHAPTERS}


def all_chapters() -> tuple[Chapter, ...]:
    """Every chapter of the book, in reading order."""
    return _CHAPTERS


def chapters_with_exercises() -> tuple[Chapter, ...]:
    return tuple(c for c in _CHAPTERS if c.exercises)


def chapter(slug: str) -> Chapter:
    """The record of `slug`; a LookupError that lists the known slugs otherwise."""
    try:
        return _BY_SLUG[slug]
    except (KeyError, TypeError):
        raise LookupError(f"no chapter {slug!r}; known: {', '.join(_BY_SLUG)}") from None


def assignments() -> list[tuple[str, str]]:
    """Every (chapter, framework) that can be graded, in book order: what `assign` generates, what
    `grade` accepts in metadata.course, what the release and the tests go through."""
    return [assignment for record in chapters_with_exercises() for assignment in record.assignments()]


def chapters_of(exercise: str) -> list[Chapter]:
    """The chapters that have an exercise of that name (normally one)."""
    return [c for c in _CHAPTERS if exercise in c.exercises]
