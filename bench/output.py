"""The output folder's life, the same for every command that writes a run (``profile``, ``run``,
``report``, ``regress``): made fresh and checked writable, locked against a second run, written
into a staging folder beside it and moved into place only when complete, rendered from the
Result, and removed again when a run ends having published nothing.

A run that fails or is interrupted half-way then leaves the previous reports untouched, and a
re-run replaces a pipeline's trace folder whole (TensorBoard must not mix stale and new traces).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.errors import UsageError
from plumbing.files import out_lock

if TYPE_CHECKING:
    from bench.measure.result import Result


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


def move_into(stage: Path, out: Path) -> list[Path]:
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


@contextmanager
def fresh_out(out: Path) -> Iterator[None]:
    """Create ``out`` for a run; when the run ends without publishing anything (bad input, nothing
    measured, Ctrl-C), leave no trace: a folder this run made is removed, and a folder that was
    there keeps what it held."""
    existed = out.is_dir()
    try:
        check_writable_dir(out)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        yield
    except BaseException:
        if not existed and not (out / "run.json").exists():  # nothing of this run was published
            shutil.rmtree(out, ignore_errors=True)
        raise


@dataclass
class Output:
    """An output folder being written: ``stage`` is where a run writes; :meth:`publish` renders
    the Result there and moves everything into ``out``."""

    out: Path
    stage: Path

    def publish(self, result: Result, *, rerender: bool = False) -> list[Path]:
        """run.json (unless re-rendering), every renderer, then the move into ``out``; the files an
        earlier run there listed and this one did not write are removed. A full disk is one line."""
        from bench.render import render_all

        previous = previous_artifacts(self.out / "run.json")
        try:
            written = [] if rerender else [result.save(self.stage / "run.json")]
            written += render_all(result, self.stage, self.out, rerender=rerender)
            moved = move_into(self.stage, self.out)
        except OSError as exc:
            raise UsageError(f"cannot write the reports into {self.out} ({exc.strerror or exc}); "
                             "free some space or pass another --out (the earlier reports there "
                             "were left as they were)") from None
        if not rerender:
            remove_stale(self.out, previous, result.artifacts)
        remove_unwritten(self.out, [p.name for p in written])
        return moved or written


@contextmanager
def writing(out: Path, *, fresh: bool = True, lock: bool = True) -> Iterator[Output]:
    """The whole life of an output folder around one run (see the module's docstring)."""
    if not fresh:
        try:
            check_writable_dir(out)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    with (fresh_out(out) if fresh else nullcontext()), (out_lock(out) if lock else nullcontext()), \
            staging(out) as stage:
        yield Output(out, stage)


def remove_unwritten(out: Path, written: list[str]) -> None:
    """The renderers' files in ``out`` that this rendering did not write (a figure an earlier
    run drew and this one has no figure for): removed, so no report mixes two runs."""
    from bench.render import OWNED, readme

    for name in set(OWNED) - set(written):
        path = out / name
        if name == "README.md" and not readme.is_ours(path):
            continue  # a user's own README in the folder: never ours to remove
        path.unlink(missing_ok=True)


def previous_artifacts(run_json: Path) -> list[str]:
    """The profiler files an earlier run in the same folder wrote (none if there is no readable run)."""
    from bench.measure.result import Result, ResultError

    try:
        return Result.load(run_json).artifacts
    except ResultError:
        return []
