"""The benchmark suites (not collected by `nox -s tests`): they run any workload, skip visibly,
record what a reader needs, and one crashing variant does not lose the others."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import BROKEN
from tests.helpers import write as write_file

ROOT = Path(__file__).resolve().parents[1]


def run_suites(*extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pytest", "bench/suites", "-p", "no:cacheprovider", "-rs",
           "--vb-quick", "--vb-threads", "1", *extra]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}  # its own session
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)


def test_suites_are_not_collected_by_the_tests_command():
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert config["testpaths"] == ["tests"]
    assert not (ROOT / "bench" / "suites" / "__init__.py").exists() or "suites" not in config["testpaths"]


@pytest.mark.slow
def test_builtin_suites_record_raw_rounds_counters_and_skips(data_root: Path, tmp_path: Path):
    from bench.commands.instructions import instructions_document
    from bench.instructions.count import Count, Counts

    json_path = tmp_path / "run.json"
    # Counts taken beforehand (as `nox -s bench` takes them, beside the timings) are read, checked
    # and saved beside the timings; callgrind itself is tested in test_instructions.py.
    counted = Counts({f"{per}[{v}]": Count(per, (1000, 1001), 10 if per == "fetch" else 1)
                      for v in ("naive", "resident") for per in ("fetch", "step")},
                     {"pinned": "needs CUDA"}, {"workload": "bench.workloads.ladder:make"})
    counts_path = tmp_path / "instructions.json"
    counts_path.write_text(json.dumps(instructions_document(counted)))
    proc = run_suites("--vb-data-dir", str(data_root), "--vb-limit", "300", "--vb-instructions",
                      str(counts_path), "--vb-variants", "naive,resident,pinned",
                      f"--benchmark-json={json_path}")
    assert proc.returncode == 0, proc.stdout[-3000:]
    saved = json.loads(json_path.read_text())["instructions"]  # the instruction tests ran on them
    assert saved["counts"]["step[resident]"]["repeats"] == [1000, 1001]
    if not torch.cuda.is_available():  # the GPU-only rung is skipped with its reason, never dropped
        assert "pinned: needs CUDA" in proc.stdout
    doc = json.loads(json_path.read_text())
    names = {b["name"] for b in doc["benchmarks"]}
    assert {"test_step[naive]", "test_step[resident]", "test_fetch[naive]", "test_fetch[resident]"} <= names
    for b in doc["benchmarks"]:
        assert len(b["stats"]["data"]) == b["stats"]["rounds"]
        info = b["extra_info"]
        assert info["threads"] == 1 and info["workload"] == "bench.workloads.ladder:make"
        assert "synthetic train (300 images" in info["data"]
        if b["group"] == "step":
            assert info["op_calls_per_step"] > 100 and info["python_calls_per_step"] > 100


@pytest.mark.slow
def test_a_user_workload_with_a_crashing_variant_keeps_the_others(tmp_path: Path):
    path = write_file(tmp_path, BROKEN, "mine.py")
    json_path = tmp_path / "run.json"
    proc = run_suites("--vb-workload", f"{path}:make", "-k", "step", f"--benchmark-json={json_path}")
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "shapes went wrong" in proc.stdout
    names = {b["name"] for b in json.loads(json_path.read_text())["benchmarks"]}
    assert names == {"test_step[good]"}


def test_a_bad_workload_option_is_a_usage_error(capsys):
    code = pytest.main([str(ROOT / "bench" / "suites"), "-p", "no:cacheprovider", "--vb-workload",
                        "no_such_pkg:make", "--collect-only", "-q"])  # a session of its own, in this process
    assert code == pytest.ExitCode.USAGE_ERROR and "cannot import 'no_such_pkg'" in capsys.readouterr().err
