"""Another commit of the project, for a bench's side-by-side baseline: a detached git worktree
whose `gpo` is imported in place of this checkout's, in the processes run with `environment`."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def worktree(ref: str | None) -> Iterator[Path | None]:
    """A worktree of commit `ref` in a temporary folder, removed on exit (None: no baseline)."""
    if ref is None:
        yield None
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(path), ref], check=True)
        try:
            yield path
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], check=True)


def environment(code: Path | None) -> dict:
    """The environment of a process importing the project from `code` (None: this checkout)."""
    return dict(os.environ, PYTHONPATH=str(code)) if code else dict(os.environ)
