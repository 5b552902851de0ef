"""Write into a staging folder next to the target; move files into place only when complete.

A run that fails or is interrupted half-way then leaves the previous reports untouched, and a
re-run replaces a pipeline's trace folder whole (TensorBoard must not mix stale and new traces).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def check_writable_dir(out: Path) -> None:
    """Raise ValueError (naming the path and the fix) unless ``out`` can be made and written."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder: pass a folder path")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=f".{out.name}.probe-", dir=out.resolve().parent)
        os.rmdir(probe)
        (out / ".write-test").touch()
        (out / ".write-test").unlink()
    except OSError as exc:
        raise ValueError(f"cannot write to --out {out} ({exc.strerror or exc}): pass a writable "
                         "folder") from exc


@contextmanager
def staging(out: Path) -> Iterator[Path]:
    """A fresh folder beside ``out`` (same file system, so moves are renames); always removed."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.resolve().parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish(stage: Path, out: Path) -> list[Path]:
    """Move every file of ``stage`` into ``out``; a folder two levels down (tb/<run>) is replaced whole."""
    moved = []
    for item in sorted(stage.iterdir()):
        if item.is_dir():
            (out / item.name).mkdir(exist_ok=True)
            for sub in sorted(item.iterdir()):
                target = out / item.name / sub.name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
                os.replace(sub, target)
                moved.append(target)
        else:
            os.replace(item, out / item.name)
            moved.append(out / item.name)
    return moved


def remove_stale(out: Path, previous: list[str], current: list[str]) -> list[Path]:
    """Delete the files an earlier run listed (paths relative to ``out``) that this run did not
    write, and the folders they leave empty: a re-run replaces the run as a whole, so TensorBoard
    and snakeviz never show an earlier run's variants beside this one's."""
    root = out.resolve()
    removed = []
    for rel in sorted(set(previous) - set(current)):
        path = (root / rel).resolve()
        if root not in path.parents or not path.is_file():  # only files inside out, never beyond
            continue
        path.unlink()
        removed.append(path)
        parent = path.parent
        while parent != root and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
    return removed
