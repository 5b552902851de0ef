"""`bench regress` plumbing on a tiny suite: worktree, interleaving, merge, table, exit codes.

No verdict on real timings is asserted here (that would flake); verdicts are unit-tested on
synthetic samples in test_compare.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.regress import merge_processes

ROOT = Path(__file__).resolve().parents[1]


def _repo(tmp_path: Path) -> Path:
    """A throwaway git repository holding this project's code, one commit."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("vae", "bench", "tests", "pyproject.toml"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, repo / name)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "base"]):
        subprocess.run(["git", *cmd], cwd=repo, check=True, env=env, capture_output=True)
    return repo


def _regress(repo: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench", "regress", *args], cwd=repo,
                          capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(repo), **(env or {})})


@pytest.mark.slow
def test_regress_runs_both_sides_interleaved_and_compares(tmp_path: Path, data_root: Path):
    repo = _repo(tmp_path)
    proc = _regress(repo, "--base", "HEAD", "--rounds", "5", "--select", "fetch and batched",
                    "--data-dir", str(data_root), "--limit", "300", "--out", "out",
                    "--candidate-pytest-args", "-p slow_variant",
                    env={"PYTHONPATH": f"{repo}{os.pathsep}{repo / 'tests'}"})
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    assert ("REGRESSION" in proc.stdout) == (proc.returncode == 1)
    assert "test_fetch[batched]" in proc.stdout and "ratio" in proc.stdout
    out = repo / "out"
    assert sorted(p.name for p in out.glob("base-*.json")) == [f"base-{i}.json" for i in range(5)]
    merged = json.loads((out / "candidate.json").read_text())["benchmarks"]
    assert [len(b["stats"]["data"]) for b in merged] == [5]
    assert "| benchmark" in (out / "regress.md").read_text()
    worktrees = subprocess.run(["git", "worktree", "list"], cwd=repo, capture_output=True, text=True)
    assert len(worktrees.stdout.strip().splitlines()) == 1, "the base worktree was not removed"


def test_unknown_base_is_a_clear_error(tmp_path: Path):
    repo = _repo(tmp_path)
    proc = _regress(repo, "--base", "no-such-branch")
    assert proc.returncode == 2 and "no-such-branch" in proc.stderr and "Traceback" not in proc.stderr


def test_too_few_rounds_is_a_clear_error(tmp_path: Path):
    repo = _repo(tmp_path)
    proc = _regress(repo, "--base", "HEAD", "--rounds", "2")
    assert proc.returncode == 2 and "at least 5" in proc.stderr


def test_merge_takes_one_median_per_process(tmp_path: Path):
    paths = []
    for i, rounds in enumerate(([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])):
        doc = {"benchmarks": [{"name": "t", "group": "g", "params": {}, "extra_info": {"k": 1},
                               "stats": {"data": rounds}}]}
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(doc))
    merged = json.loads(merge_processes(paths, tmp_path / "m.json").read_text())
    assert merged["benchmarks"][0]["stats"]["data"] == [2.0, 5.0]
    assert merged["benchmarks"][0]["extra_info"] == {"k": 1}
