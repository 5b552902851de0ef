"""`bench regress` plumbing on a tiny suite: worktree, interleaving, merge, table, exit codes.

No verdict on real timings is asserted here (that would flake); verdicts are unit-tested on
synthetic samples in test_compare.py. The injected slowdown lands in the benchmark that is
measured, and the exact counters prove it took effect.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import cli
from bench.regress.worktree import merge_processes

ROOT = Path(__file__).resolve().parents[1]


def _repo(tmp_path: Path) -> Path:
    """A throwaway git repository holding this project's code, one commit."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("plumbing", "vae", "bench", "tests", "examples", "experiments", "pyproject.toml"):
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


@pytest.mark.slow
def test_regress_runs_both_sides_interleaved_and_compares(tmp_path: Path, data_root: Path, monkeypatch,
                                                          capsys):
    from bench.regress.worktree import run_regress

    repo = _repo(tmp_path)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("PYTHONPATH", str(repo / "experiments"))  # slow_variant, for the candidate
    monkeypatch.setenv("VB_EXTRA_COPIES", "20")
    from bench.commands.regress import spec_from

    args = cli.build_parser().parse_args([
        "regress", "--base", "HEAD", "--processes", "2", "--alpha", "0.2", "--select", "step",
        "--variants", "resident", "--data-dir", str(data_root), "--limit", "300", "--out", "out",
        "--no-instructions"])
    code = run_regress(spec_from(args), candidate_extra=["-p", "slow_variant"])
    stdout = capsys.readouterr().out
    # The timing verdict of 2 processes a side on a shared 2-core machine may honestly be any of
    # slower / unchanged / noisy (verdicts are unit-tested on fixed samples in test_compare.py);
    # what must hold is that the exit code is the one the headline states.
    headline = {1: "REGRESSION", 3: "NO VERDICT", 0: "No regression"}[code]
    assert headline in stdout, stdout
    assert "test_step[resident]" in stdout and "ratio" in stdout
    # the injection took effect where it is measured: 20 more clones per step (3 operators each:
    # aten::clone, empty_like, copy_), counted exactly
    base_ops, cand_ops = (json.loads((repo / "out" / f"{side}.json").read_text())["benchmarks"][0]
                          ["extra_info"]["op_calls_per_step"] for side in ("base", "candidate"))
    assert cand_ops == pytest.approx(base_ops + 3 * 20), (base_ops, cand_ops)
    assert "op_calls" in stdout
    out = repo / "out"
    assert sorted(p.name for p in out.glob("base-*.json")) == [f"base-{i}.json" for i in range(2)]
    merged = json.loads((out / "candidate.json").read_text())["benchmarks"]
    assert [len(b["stats"]["data"]) for b in merged] == [2]
    table = (out / "regress.md").read_text()
    assert "| benchmark" in table
    assert "Instruction counts: not taken (--no-instructions)" in table  # said, not silently dropped
    worktrees = subprocess.run(["git", "worktree", "list"], cwd=repo, capture_output=True, text=True)
    assert len(worktrees.stdout.strip().splitlines()) == 1, "the base worktree was not removed"


def test_unknown_base_is_a_clear_error(tmp_path: Path, monkeypatch, capsys):
    repo = _repo(tmp_path)
    monkeypatch.chdir(repo)
    assert cli.main(["regress", "--base", "no-such-branch"]) == 2
    err = capsys.readouterr().err
    assert "no-such-branch" in err and "Traceback" not in err


def test_old_names_still_work_for_one_release_and_say_their_new_name(capsys):
    parse = cli.build_parser().parse_args
    args = parse(["regress", "--rounds", "9", "--no-cost", "--count-threshold", "0.02"])
    assert (args.processes, args.instructions, args.instructions_threshold) == (9, False, 0.02)
    err = capsys.readouterr().err
    for old, new in (("--rounds", "--processes"), ("--no-cost", "--no-instructions"),
                     ("--count-threshold", "--instructions-threshold")):
        assert f"warning: {old} is deprecated and goes in the next release; use {new}" in err
    assert "--candidate-pytest-args" not in cli.build_parser()._subparsers._group_actions[0] \
        .choices["regress"].format_help()  # an experiment's hook is not a user option


def test_too_few_rounds_is_a_clear_error(tmp_path: Path, monkeypatch, capsys):
    repo = _repo(tmp_path)
    monkeypatch.chdir(repo)
    assert cli.main(["regress", "--base", "HEAD", "--processes", "2"]) == 2
    assert "at least 5 per side" in capsys.readouterr().err


def test_outside_a_git_repository(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["regress"]) == 2
    assert "not inside a git repository" in capsys.readouterr().err


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


def test_out_that_is_a_file_is_exit_2(tmp_path: Path, monkeypatch, capsys):
    repo = _repo(tmp_path)
    monkeypatch.chdir(repo)
    (repo / "taken").write_text("")
    assert cli.main(["regress", "--base", "HEAD", "--out", "taken"]) == 2
    assert "is a file" in capsys.readouterr().err


def test_interrupted_regress_keeps_the_earlier_files(tmp_path: Path, monkeypatch, capsys):
    from bench.regress import worktree

    repo = _repo(tmp_path)
    monkeypatch.chdir(repo)
    out = repo / "out"
    out.mkdir()
    (out / "base-0.json").write_text("earlier")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(worktree, "_run_side", interrupted)
    assert cli.main(["regress", "--base", "HEAD", "--out", "out", "--no-instructions"]) == 130
    assert (out / "base-0.json").read_text() == "earlier"
    assert "left as they were" in capsys.readouterr().err
    assert not list(repo.glob(".out.staging-*"))


def test_regress_judges_both_sides_counts_beside_the_timings(tmp_path: Path, monkeypatch, capsys):
    """The counting and timing processes are replaced by files; the merge, the verdict and the
    exit code are the real ones: more instructions fail the check even when the timings say
    nothing."""
    from bench.regress import worktree

    repo = _repo(tmp_path)
    monkeypatch.chdir(repo)
    monkeypatch.setattr("bench.instructions.count.missing_tool", lambda: None)
    times = [0.010, 0.0101, 0.0099, 0.0100, 0.0102, 0.0098, 0.0100]

    def side(root, json_path, args, extra):
        json_path.write_text(json.dumps({"benchmarks": [
            {"name": "test_step[resident]", "group": "step", "stats": {"data": times}}]}))

    def counted(args, roots, stage):
        out = {}
        for side_, n in (("base", 250_000_000), ("candidate", 256_000_000)):
            path = stage / f"{side_}-instructions.json"
            path.write_text(json.dumps({"benchmarks": [], "instructions": {"counts": {
                "step[resident]": {"per": "step", "instructions": n, "repeats": [n], "calls": 1,
                                   "functions": {"gemm (libtorch_cpu.so)": n // 2}}}}}))
            out[side_] = path
        return out

    monkeypatch.setattr(worktree, "_run_side", side)
    monkeypatch.setattr(worktree, "count_sides", counted)
    assert cli.main(["regress", "--base", "HEAD", "--out", "out", "--processes", "7"]) == 1
    printed = capsys.readouterr().out
    assert "REGRESSION: test_step[resident] slower (by instruction count" in printed and "+2.40%" in printed
    merged = json.loads((repo / "out" / "candidate.json").read_text())
    assert merged["instructions"]["counts"]["step[resident]"]["instructions"] == 256_000_000
    assert "SLOWER" in (repo / "out" / "regress.md").read_text()
    # the machine-readable verdict a CI job acts on
    verdict = json.loads((repo / "out" / "verdict.json").read_text())
    assert verdict["exit_code"] == 1 and verdict["headline"].startswith("REGRESSION: test_step[resident]")
    (row,) = verdict["benchmarks"]
    assert row["name"] == "test_step[resident]" and row["verdict"] == "slower" and row["regression"]
    assert row["timing"]["verdict"] == "unchanged" and row["instructions"]["verdict"] == "slower"
    page = (repo / "out" / "report.html").read_text()  # the same verdict on the run's page
    assert "exit 1: REGRESSION: test_step[resident]" in page and "by instruction count" in page


def test_regress_without_valgrind_says_the_counts_were_skipped(tmp_path: Path, monkeypatch, capsys):
    from bench.regress import worktree

    repo = _repo(tmp_path)
    monkeypatch.chdir(repo)
    monkeypatch.setattr("bench.instructions.count.missing_tool",
                        lambda: "valgrind not found on PATH: install Valgrind (apt-get install valgrind)")

    def side(root, json_path, args, extra):
        json_path.write_text(json.dumps({"benchmarks": [
            {"name": "test_step[resident]", "group": "step", "stats": {"data": [0.01] * 3 + [0.011] * 4}}]}))

    monkeypatch.setattr(worktree, "_run_side", side)
    code = cli.main(["regress", "--base", "HEAD", "--out", "out", "--processes", "7"])
    assert code == 0  # both sides the same fixed samples: unchanged, by timing alone
    captured = capsys.readouterr()
    assert "Instruction counts skipped: valgrind not found" in captured.err
    assert "the verdict falls back to the timings alone" in captured.err
    assert "apt-get install valgrind" in (repo / "out" / "regress.md").read_text()
    assert json.loads((repo / "out" / "verdict.json").read_text())["exit_code"] == code


def test_nox_regress_ends_with_regress_exit_code(tmp_path: Path):
    """nox turns a failing command into its own exit 1; the session re-raises regress's code.
    A real nox process (its venv skipped: the test's own Python runs bench) with a bad --base."""
    proc = subprocess.run([sys.executable, "-m", "nox", "-f", str(ROOT / "noxfile.py"), "-s", "regress",
                           "--no-venv", "--", "--base", "no-such-ref-anywhere", "--out", str(tmp_path / "o")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "bench regress exited 2: bad input" in proc.stdout + proc.stderr


@pytest.mark.parametrize("code", [1, 3])
def test_the_nox_session_passes_each_code_on(code: int, monkeypatch):
    import importlib.util

    import nox.command

    spec = importlib.util.spec_from_file_location("vb_noxfile", ROOT / "noxfile.py")
    noxfile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(noxfile)

    class Session:
        posargs = ()
        virtualenv = None

        def install(self, *args: str) -> None:
            pass

        def run(self, *args: str, **kw: object) -> None:
            raise nox.command.CommandFailed(f"exit {code}", return_code=code)

        def log(self, text: str) -> None:
            self.said = text

    with pytest.raises(SystemExit) as stopped:
        noxfile.regress.func(Session()) if hasattr(noxfile.regress, "func") else noxfile.regress(Session())
    assert stopped.value.code == code
