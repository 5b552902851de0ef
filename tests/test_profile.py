"""`python -m bench profile`: every artifact is valid for its real reader."""

from __future__ import annotations

import json
import pstats
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from bench import cli
from bench.writers.kineto import fix_categories
from bench.writers.summary import SUMMARY_COLUMNS

PIPELINES = ("naive", "batched")


def profile_args(data_root: Path, out: Path, pipelines=PIPELINES, *extra: str) -> list[str]:
    return ["profile", "--data-dir", str(data_root), "--out", str(out), "--steps", "3",
            "--warmup", "1", "--limit", "300", "--pipelines", ",".join(pipelines),
            "--no-progress", "--threads", "2", *extra]


@pytest.fixture(scope="module")
def reports(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reports")
    (out / "README.md").write_text("kept")
    assert cli.main(profile_args(data_root, out)) == 0
    return out


def test_cprofile_file_loads_and_shows_the_fetch(reports: Path):
    stats = pstats.Stats(str(reports / "naive.prof"))
    functions = {(Path(f).name, name) for f, _, name in stats.stats}
    assert ("pipelines.py", "__getitem__") in functions
    assert ("train.py", "train_step") in functions


def test_line_profiler_file_has_hits_on_the_fetch(reports: Path):
    from line_profiler import load_stats

    stats = load_stats(str(reports / "naive.lprof"))
    hits = {name: sum(h for _, h, _ in lines) for (_, _, name), lines in stats.timings.items()}
    assert hits.get("NaiveDataset.__getitem__", hits.get("__getitem__", 0)) >= 300  # 3 steps x 100
    text = (reports / "naive.lines.txt").read_text()
    assert "NaivePipeline._batches" in text and "train_step" in text
    assert "self.transform(image)" in text


def test_traces_are_valid_and_labelled_for_tensorboard(reports: Path):
    for name in PIPELINES:
        traces = list((reports / "tb" / name).glob("*.pt.trace.json"))
        assert len(traces) == 1
        events = json.loads(traces[0].read_text())["traceEvents"]
        names = {e.get("name") for e in events}
        assert sum(1 for n in names if str(n).startswith("ProfilerStep#")) >= 3
        assert {"forward", "backward", "optimizer"} <= names
        # host-side ranges; on CUDA each also has a GPU-side mirror (gpu_user_annotation), kept as is
        fetch = [e for e in events if str(e.get("name")).startswith("enumerate(DataLoader)#")
                 and e.get("cat") != "gpu_user_annotation"]
        assert fetch and all(e["cat"] == "cpu_op" for e in fetch)
        stray = [e for e in events if e.get("cat") == "user_annotation"
                 and not e["name"].startswith("ProfilerStep#")]
        assert not stray


def test_fix_categories_keeps_profiler_steps():
    trace = {"traceEvents": [
        {"name": "ProfilerStep#3", "cat": "user_annotation"},
        {"name": "enumerate(DataLoader)#X.__next__", "cat": "user_annotation"},
        {"name": "aten::mm", "cat": "cpu_op"},
    ]}
    assert fix_categories(trace) == 1
    assert [e["cat"] for e in trace["traceEvents"]] == ["user_annotation", "cpu_op", "cpu_op"]


def test_ops_tables(reports: Path):
    text = (reports / "naive.ops.txt").read_text()
    assert "Self CPU" in text and "aten::addmm" in text and "Input Shapes" in text


def test_summary_table_and_sentence(reports: Path):
    frame = pd.read_csv(reports / "summary.csv")
    assert list(frame.columns) == list(SUMMARY_COLUMNS)
    assert list(frame["pipeline"]) == list(PIPELINES)
    shares = frame[["data_share", "forward_share", "backward_share", "optimizer_share"]].sum(axis=1)
    assert ((shares > 0.8) & (shares <= 1.0001)).all()
    assert (frame["step_ms_median"] > 0).all() and (frame["steps"] == 3).all()
    assert frame.loc[0, "speedup_vs_naive"] == pytest.approx(1.0)
    assert (frame["threads"] == 2).all() and frame["cpu"].notna().all()
    md = (reports / "summary.md").read_text()
    assert "Fastest: `" in md and "`naive` spends" in md and "Made " in md
    assert "synthetic train (300 images" in md


def test_plots_are_images(reports: Path):
    for name in ("breakdown.png", "speedup.png"):
        with Image.open(reports / name) as image:
            assert image.size[0] > 400


def test_readme_and_nothing_else_is_left(reports: Path):
    assert (reports / "README.md").read_text() == "kept"
    assert not list(reports.parent.glob(f".{reports.name}.staging-*"))


def test_rerun_replaces_traces_of_that_pipeline(data_root: Path, tmp_path: Path):
    out = tmp_path / "r"
    assert cli.main(profile_args(data_root, out, ("batched",), "--tools", "kineto")) == 0
    first = {p.name for p in (out / "tb" / "batched").iterdir()}
    time.sleep(0.01)
    assert cli.main(profile_args(data_root, out, ("batched",), "--tools", "kineto")) == 0
    second = {p.name for p in (out / "tb" / "batched").iterdir()}
    assert len(second) == 1 and first != second


def test_failure_half_way_keeps_previous_reports(data_root: Path, tmp_path: Path, monkeypatch):
    out = tmp_path / "r"
    assert cli.main(profile_args(data_root, out, ("batched",), "--tools", "cprofile")) == 0
    before = (out / "summary.csv").read_bytes()
    real = cli.profile
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(cli, "profile", flaky)
    assert cli.main(profile_args(data_root, out, ("naive", "batched"), "--tools", "cprofile")) == 130
    assert (out / "summary.csv").read_bytes() == before
    assert not (out / "naive.prof").exists()
    assert not list(tmp_path.glob(".r.staging-*"))


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["--pipelines", "naive,fast"], "unknown pipeline 'fast'"),
        (["--tools", "cprofile,perf"], "unknown tool 'perf'"),
        (["--limit", "10"], "smaller than one batch"),
    ],
)
def test_bad_input(tmp_path: Path, args: list[str], phrase: str):
    proc = _bench("profile", "--out", str(tmp_path / "o"), *args)
    assert proc.returncode == 2 and phrase in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


def test_out_is_a_file(tmp_path: Path):
    (tmp_path / "f").write_text("")
    proc = _bench("profile", "--out", str(tmp_path / "f"))
    assert proc.returncode == 2 and "is a file" in proc.stderr and "Traceback" not in proc.stderr


def test_cuda_without_gpu(tmp_path: Path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = _bench("profile", "--device", "cuda", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_tensorboard_profiler_plugin_shows_dataloader_time(reports: Path):
    port = _free_port()
    tensorboard = Path(sys.executable).with_name("tensorboard")
    proc = subprocess.Popen([str(tensorboard), "--logdir", str(reports / "tb"), "--port", str(port),
                             "--host", "127.0.0.1"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/data/plugin/pytorch_profiler"
    try:
        deadline = time.monotonic() + 120
        runs: dict = {}
        while time.monotonic() < deadline:
            try:
                runs = _get(f"{base}/runs")
                if set(PIPELINES) <= set(runs["runs"]) and not runs["loading"]:
                    break
            except OSError:
                pass
            time.sleep(1)
        assert set(PIPELINES) <= set(runs.get("runs", [])), runs
        for run in PIPELINES:
            assert "Overview" in _get(f"{base}/views?run={run}")
            worker = _get(f"{base}/workers?run={run}&view=Overview")[0]
            span = _get(f"{base}/spans?run={run}&worker={worker}")[0]
            overview = _get(f"{base}/overview?run={run}&worker={worker}&span={span}")
            parts = {c["name"]: c["value"] for c in overview["performance"][0]["children"]}
            assert parts["DataLoader"] > 0, (run, parts)
            if run == "naive":
                assert "DataLoader" in overview["recommendations"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
