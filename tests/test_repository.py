"""What a clone holds works in any folder: no tracked symbolic link points outside the repository.

A helper's worktree once linked `book/_static/mathjax` to the main tree's copy, and the link was
committed. In the main tree it looked fine; in a clone anywhere else it dangled, and the book was
built without MathJax or not at all.
"""
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def tracked_symlinks() -> list[str]:
    # mode 120000 is a symbolic link in git's index
    out = subprocess.run(["git", "ls-files", "-s"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [line.split("\t", 1)[1] for line in out.splitlines() if line.startswith("120000 ")]


def test_no_tracked_symlink_leaves_the_repository():
    for path in tracked_symlinks():
        target = os.readlink(ROOT / path)
        resolved = (ROOT / path).parent.joinpath(target).resolve()
        assert not os.path.isabs(target) and resolved.is_relative_to(ROOT), (path, target)
