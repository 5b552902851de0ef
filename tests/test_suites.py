"""The benchmark suites (not collected by `nox -s tests`) run, skip visibly, and feed the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def run_suites(data_root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pytest", "bench/suites", "-p", "no:cacheprovider", "-rs",
           "--vb-data-dir", str(data_root), "--vb-limit", "300", "--vb-epoch-limit", "200",
           "--vb-quick", "--vb-threads", "2", *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_suites_are_not_collected_by_the_tests_command():
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert "bench/suites" not in proc.stdout and "tests/" in proc.stdout


@pytest.mark.slow
def test_every_benchmark_runs_once_as_a_smoke_test(data_root: Path):
    proc = run_suites(data_root, "--benchmark-disable")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "failed" not in proc.stdout.splitlines()[-1]
    if torch.cuda.is_available():  # every rung and the host-to-device copy run
        assert "skipped" not in proc.stdout.splitlines()[-1]
    else:  # the GPU-only ones are skipped with their reason, never dropped silently
        assert "pinned: needs CUDA" in proc.stdout and "no CUDA device here" in proc.stdout


@pytest.mark.slow
def test_report_from_a_real_run(data_root: Path, tmp_path: Path):
    out = tmp_path / "reports"
    out.mkdir()
    json_path = tmp_path / "run.json"
    proc = run_suites(data_root, "-k", "step or compute_bound or efficiency", f"--benchmark-json={json_path}")
    assert proc.returncode == 0, proc.stdout[-3000:]
    doc = json.loads(json_path.read_text())
    step = [b for b in doc["benchmarks"] if b["group"] == "step"]
    assert {b["params"]["pipeline"] for b in step} >= {"naive", "tensor", "batched", "resident"}
    for b in step:
        assert len(b["stats"]["data"]) == b["stats"]["rounds"] == 10
        info = b["extra_info"]
        assert info["threads"] == 2 and info["device"] in ("cpu", "cuda") and "synthetic" in info["dataset"]
        assert info["op_calls_per_step"] > 100 and info["python_calls_per_step"] > 100
    (out / "summary.md").write_text("# Profile summary\n\nkept\n")
    report = subprocess.run([sys.executable, "-m", "bench", "report", "--json", str(json_path),
                             "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    text = (out / "summary.md").read_text()
    assert "kept" in text and "## Benchmarks" in text and "Efficiency of `optimized`: " in text
    assert "| naive" in text and (out / "bench.png").stat().st_size > 1000
    # Running the report twice replaces its section instead of appending a second one.
    subprocess.run([sys.executable, "-m", "bench", "report", "--json", str(json_path), "--out",
                    str(out)], cwd=ROOT, check=True, capture_output=True, timeout=300)
    assert (out / "summary.md").read_text().count("## Benchmarks") == 1


def test_report_without_runs_says_what_to_do(tmp_path: Path):
    proc = subprocess.run([sys.executable, "-m", "bench", "report", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "nox -s bench" in proc.stderr


@pytest.mark.slow
def test_a_crashing_benchmark_does_not_lose_the_others(data_root: Path, tmp_path: Path):
    plugin = tmp_path / "break_tensor.py"
    plugin.write_text(
        "from vae import pipelines\n"
        "class Broken(pipelines.TensorPipeline):\n"
        "    def _batches(self):\n"
        "        raise RuntimeError('deliberately broken for the test')\n"
        "        yield\n"
        "def pytest_configure(config):\n"
        "    pipelines.PIPELINES['tensor'] = Broken\n"
    )
    json_path = tmp_path / "run.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "bench/suites", "-p", "no:cacheprovider", "-p", "break_tensor",
         "-k", "fetch", "--vb-data-dir", str(data_root), "--vb-limit", "300", "--vb-quick",
         f"--benchmark-json={json_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 1, proc.stdout[-2000:]
    names = {b["name"] for b in json.loads(json_path.read_text())["benchmarks"]}
    expected = {"test_fetch[naive]", "test_fetch[batched]", "test_fetch[resident]"}
    if torch.cuda.is_available():
        expected.add("test_fetch[pinned]")
    assert names == expected  # all but the broken `tensor`
