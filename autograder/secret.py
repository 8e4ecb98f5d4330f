"""The course secret: where every graded check's random inputs come from. Trusted side only.

The release (`python -m autograder release`) stores the public checks' inputs and expected values
in `course_checks/data/`, drawn from the chapter's public seed. If grading drew the same inputs, a
function that looks its inputs up in that store would pass every public check it covers without
computing anything. So grading draws every check's seed from a secret the release never holds,
combined with the batch seed (`--seed`), the student (the submission's name) and the check's name:
two students get different hidden inputs, and a regrade of one student (same secret, same name,
same `--seed`) draws the same ones again. Only checks whose inputs are fixed in their code (the
worked examples the notebook prints) repeat; `tests/test_hardening_inputs.py` bounds their share.

Where the secret comes from, first found:
1. `AUTOGRADER_SECRET` in the environment (any text);
2. the file named by `AUTOGRADER_SECRET_FILE`, else `$XDG_CONFIG_HOME/autograder/secret`
   (`~/.config/autograder/secret`): outside the repository, created on first use with 32 random
   bytes (hex), mode 0600. Keep it for as long as grades may be regraded; a new one draws new inputs.
The result records only a fingerprint (`fingerprint()`, results.json's "secret"), never the secret.
Gradescope: the zip carries a key derived from it for its chapter (export.py), and run_autograder
names the student by the submission's user ids (`AUTOGRADER_STUDENT`).
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

ENV, FILE_ENV = "AUTOGRADER_SECRET", "AUTOGRADER_SECRET_FILE"
STUDENT_ENV = "AUTOGRADER_STUDENT"   # who the one submission graded is (Gradescope: its user ids)
SEED_BITS = 31   # the check seeds' range, as runner.stable_seed's


def secret_file() -> Path:
    if os.environ.get(FILE_ENV):
        return Path(os.environ[FILE_ENV])
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "autograder" / "secret"


def course_secret() -> bytes:
    """The instructor's secret (bytes): from the environment, else from its file (made if missing)."""
    given = os.environ.get(ENV)
    if given:
        return given.encode()
    path = secret_file()
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        text = ""
    if not text:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fresh = secrets.token_hex(32)
        try:   # O_EXCL: two graders starting together agree on the first one's secret
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            text = path.read_text(encoding="ascii").strip()
        else:
            with os.fdopen(fd, "w", encoding="ascii") as file:
                file.write(fresh + "\n")
            text = fresh
    if not text:
        raise RuntimeError(f"the course secret file {path} is empty: delete it or set {ENV}")
    return text.encode()


ZIP_NAME = "course_secret"   # in a Gradescope zip, beside gradescope.json (export.py)


def derived(secret: bytes, purpose: str) -> str:
    """A key for one use (a chapter's Gradescope zip), from which the course secret cannot be found."""
    return hmac.new(secret, f"autograder derived key\0{purpose}".encode(), hashlib.sha256).hexdigest()


def gradescope_student(metadata_path: Path) -> str:
    """Who a Gradescope submission is: its users' ids (a group's, sorted), from submission_metadata.json;
    the same on every resubmission. '' when the file says nothing usable."""
    import json

    try:
        users = json.loads(metadata_path.read_text(encoding="utf-8")).get("users") or []
        ids = sorted(str(u["id"]) for u in users if isinstance(u, dict) and u.get("id") is not None)
    except (OSError, ValueError, AttributeError, TypeError):
        return ""
    return "gradescope:" + ",".join(ids) if ids else ""


def student_of(submission: str) -> str:
    """Whose inputs a submission gets: its name (a batch's DIR/<name>/), or, where every submission
    has the same name (Gradescope's one "submission"), the identity run_autograder sets."""
    return os.environ.get(STUDENT_ENV) or submission


def fingerprint(secret: bytes) -> str:
    """A short public name of the secret (which secret graded this), from which it cannot be found."""
    return hmac.new(secret, b"autograder fingerprint", hashlib.sha256).hexdigest()[:12]


def check_seed(secret: bytes, batch_seed: int, student: str, check: str) -> int:
    """A check's seed for one student: unpredictable without the secret, the same on a regrade."""
    message = f"{batch_seed}\0{student}\0{check}".encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") % (1 << SEED_BITS)
