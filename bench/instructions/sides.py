"""Counting a base commit and the work tree side by side, for ``regress``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.options import WorkloadChoice

INSTRUCTIONS_LIMIT = 2000  # samples the counting workload loads: counts do not depend on it, start-up does


def count_sides(choice: WorkloadChoice, roots: dict[str, Path], stage: Path) -> dict[str, Path]:
    """Count instructions on both sides at once (callgrind is single-threaded; the counts do not
    depend on what else runs). Returns the count file of each side; raises UsageError.

    Both processes see paths of equal length -- each side's tree through a symlink ``a`` or
    ``b`` in one folder, its output as ``a.json`` or ``b.json`` -- because counts depend on the
    memory layout, which depends on the lengths of the strings a process holds: with the base
    in a temporary worktree and the candidate in the clone, an unchanged fetch moved by up to
    0.74%; with equal lengths the counts are equal to the instruction.
    """
    from bench.errors import UsageError

    procs = {}
    links = Path(tempfile.mkdtemp(prefix="vaebench-instructions-"))
    for (side, root), letter in zip(roots.items(), "ab", strict=True):
        # `instructions` was `cost` until this release: a base from before the rename counts too
        command = "cost" if (root / "bench" / "cost.py").is_file() else "instructions"
        counters = ("instructions/count.py", "measure/instructions.py")  # today's, and before 0.2
        if not any((root / "bench" / f).is_file() for f in counters):
            raise UsageError(f"the {side} ({root}) cannot count instructions: pick a newer --base, "
                             "or pass --no-instructions")
        link = links / letter
        link.symlink_to(root.resolve(), target_is_directory=True)
        path = links / f"{letter}.json"
        workload = choice.workload  # a file path is read in this side's tree, through the link
        if ".py:" in workload and not Path(workload).is_absolute():
            workload = str(link / workload)
        cmd = [sys.executable, "-m", "bench", command, "--no-progress", "--workload", workload,
               "--data-dir", str(choice.data_dir.resolve()), "--limit", str(INSTRUCTIONS_LIMIT),
               "--json", str(path), *(["--variants", ",".join(choice.variants)] if choice.variants else []),
               *choice.data_options("--")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(link), os.environ.get("PYTHONPATH", "")])}
        # cwd: the links' folder, the same for both (a cwd through a link would resolve to the
        # tree's real path, whose length differs)
        procs[side] = (path, subprocess.Popen(cmd, cwd=links, env=env, stdout=subprocess.PIPE,
                                              stderr=subprocess.STDOUT, text=True))
    out = {}
    try:
        for side, (path, proc) in procs.items():
            text, _ = proc.communicate()
            if proc.returncode != 0 or not path.is_file():
                tail = "\n".join(text.splitlines()[-6:])
                raise UsageError(f"counting instructions of the {side} failed (exit "
                                 f"{proc.returncode}):\n{tail}")
            out[side] = stage / f"{side}-instructions.json"
            shutil.move(path, out[side])
    finally:
        for _, proc in procs.values():
            if proc.poll() is None:
                proc.kill()
        shutil.rmtree(links, ignore_errors=True)
    return out

