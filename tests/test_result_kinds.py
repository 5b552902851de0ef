"""The typed Result: each kind round-trips through run.json losslessly and re-renders identically
through `vaebench report`; a run.json of the previous format loads (or an unknown one is refused
in one line); renderers pick their sections by kind; one statistic decides what a change buys;
progress bars written to a log are lines, not frames."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.measure import derive
from bench.measure.clock import Timing
from bench.measure.result import SCHEMA, Breakdown, Footprint, Measurement, Process, Result, ToolTiming
from bench.measure.specs import Plan, ScriptSpec, VariantsSpec
from bench.render import summary, terminal
from plumbing.progress import LineWriter, bar
from tests.helpers import TEST_ENV, in_process, make_result, rounds

V1 = Path(__file__).parent / "data" / "run-v1"
V2 = Path(__file__).parent / "data" / "run-v2"


def _variants_result() -> Result:
    r = make_result({"a": [20, 21, 19, 20, 22], "b": [10, 11, 9, 10, 10]}, bound=[9.5, 10, 9, 9.8, 9.9])
    r.spec = VariantsSpec(workload="t:make", variants=("a", "b", "c"), device="cpu", batch_size=10, seed=1,
                          threads=2, data_dir="data", dataset="fake", limit=None, tools=("kineto",),
                          plan=Plan(rounds=5, epochs=1, epoch_variants=("a",)), ordered=True)
    r["a"].epochs = rounds([20])
    r["a"].counters = {"op_calls_per_step": 700.0}
    r["a"].footprint = Footprint(flops_per_step=5e8, max_rss_mb=700.0, breakdown=Breakdown(
        peak=5_000_000, rise=4_000_000, parts={"parameters": 5_000_000}))
    r["b"].reference, r["b"].first_step_s, r["a"].first_step_s = "a", 0.5, 0.02
    r["b"].profiles = {"kineto": ToolTiming(rounds([10] * 5), rounds([12] * 5))}
    r["b"].artifacts = ["tb/b/x.pt.trace.json"]
    r.measurements.insert(2, Measurement(name="c", status="skipped", reason="CUDA only"))
    r.orders = [["a", "b", "b:bound"]] * 5
    r.peak = {"flops": 2e11, "source": "measured"}
    r.partial = {"b/lines": "the lines pass raised ValueError: x"}
    return r


def _script_result() -> Result:
    def steps(ms: list[float]) -> list[Timing]:
        return [Timing(seconds=v / 1e3, steps=[v / 1e3], round=i, parts={
            "data": [v / 4e3], "forward": [v / 4e3], "backward": [v / 4e3], "other": [v / 4e3]})
            for i, v in enumerate(ms)]

    ranks = [Measurement(name=f"rank{i}", samples=steps([10 + i + (k % 3) * 0.1 for k in range(12)]),
                         parts=["data", "forward", "backward", "other"], batch_size=32,
                         description="python t.py",
                         footprint=Footprint(flops_per_step=1e8, max_rss_mb=500.0),
                         process=Process(rank=i, step_rule="optimizer", steps_seen=20, warmup=2, pid=100 + i,
                                         allreduce_ms=2.0 - i, stopped=True))
             for i in range(2)]
    died = "the rank died without writing its record"
    ranks.append(Measurement(name="rank2", status="failed", reason=died, process=Process(rank=2, error=died)))
    spec = ScriptSpec(command=("t.py", "--lr", "0.1"), warmup=2, steps=12, nproc=3)
    return Result(kind="script", spec=spec, machine=TEST_ENV, measurements=ranks,
                  peak={"flops": 2e11, "source": "measured"})


def _fit_result() -> Result:
    from bench.measure.result import Breakdown, OutOfMemory
    from bench.measure.specs import FitSpec

    def at(batch: int, peak: int, **notes) -> Measurement:
        parts = {"parameters": 100, "temporaries": peak - 100}
        oom = OutOfMemory(step=3) if batch > 64 else None
        return Measurement(name=f"batch {batch}", samples=[Timing(0.01, [0.01], round=0)], batch_size=batch,
                           notes={"batch": batch, **notes}, process=Process(oom=oom),
                           footprint=Footprint(breakdown=Breakdown(peak=peak, parts=parts, curve=[1.0, 2.0],
                                                                   phases=[(0, 1, "forward")])))
    return Result(kind="fit", spec=FitSpec(command=("t.py",)), machine=TEST_ENV,
                  measurements=[at(32, 420, capacity=1e4, capacity_source="t"), at(64, 740), at(128, 1380)])


@pytest.mark.parametrize("make", [_variants_result, _script_result, _fit_result],
                         ids=["variants", "script", "fit"])
def test_each_kind_round_trips_and_rerenders_identically(tmp_path: Path, make):
    r = make()
    first = tmp_path / "first"
    first.mkdir()
    path = r.save(first / "run.json")
    doc = json.loads(path.read_text())
    assert doc["schema"] == SCHEMA and doc["kind"] == r.kind
    again = Result.load(path)
    assert again.to_dict() == r.to_dict() and again.spec == r.spec and again.measurements == r.measurements
    # `vaebench report` renders the saved run; the copy it loads back renders the same bytes
    proc = in_process(main, ["report", path])
    assert proc.returncode == 0, proc.stderr
    second = tmp_path / "second"
    second.mkdir()
    (second / "run.json").write_text(path.read_text())
    assert in_process(main, ["report", second / "run.json"]).returncode == 0
    for name in ("summary.md", "summary.csv", "variants.csv", "README.md", "speedup.png"):
        if (first / name).exists() or r.kind != "fit":  # a fit run writes no variants table or figure
            if name == "speedup.png" and r.kind == "script":  # a script's processes are no alternatives
                assert not (first / name).exists() and (first / "breakdown.png").is_file()
                continue
            assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert terminal.text(again) == terminal.text(r)


def test_sections_are_chosen_by_kind():
    v, s = _variants_result(), _script_result()
    from bench.measure.result import KINDS
    from bench.render import html

    assert set(summary.SECTIONS) == set(terminal.SECTIONS) == set(html.SECTIONS) == set(KINDS) \
        == {"variants", "script", "try", "fit"}  # every kind has its sections in every renderer
    assert "## Variants" in summary.markdown(v) and "## Ranks" not in summary.markdown(v)
    md = summary.markdown(s)
    assert "## Ranks" in md and "## Variants" not in md and "Script: `python t.py --lr 0.1`, 3 ranks" in md
    assert "- `rank2` (failed): the rank died without writing its record; nothing of it was measured" in md
    assert "- `b/lines` (partial): the lines pass raised ValueError: x" in summary.markdown(v)


@pytest.mark.parametrize(("name", "kind", "names"), [
    ("profile", "variants", ["naive", "resident", "resident+fused"]),
    ("run", "script", ["mnist_classifier.py"]),
    ("ranks", "script", ["rank0", "rank1"]),
])
def test_a_run_json_of_the_previous_format_loads_and_rerenders(tmp_path: Path, name, kind, names):
    """Files written by vaebench.run/1 (the format before the typed Result), kept in tests/data."""
    path = tmp_path / "run.json"
    shutil.copy(V1 / f"{name}.json", path)
    r = Result.load(path)
    assert r.kind == kind and r.measured == names
    old = json.loads(path.read_text())
    for n in names:  # every raw sample came across
        assert [t.seconds for t in r[n].samples] == [t["seconds"] for t in old["rounds"][n]]
        assert r[n].footprint.flops_per_step == old["info"][n]["flops_per_step"]
        if old["info"][n].get("peak_bytes") is not None:  # the step's rise kept; no parts made up
            assert derive.peak_mb(r, n) == old["info"][n]["peak_bytes"] / 2**20
            assert derive.breakdown_mb(r, n) is None
    if kind == "variants":
        assert r.bound_of("resident+fused") == "resident+fused:bound" and r.ordered
        assert r.spec.plan.rounds == old["plan"]["rounds"] and r.spec.profile_windows == 5
    else:
        assert all(r[n].process.steps_seen == old["info"][n]["steps_seen"] for n in names)
    proc = in_process(main, ["report", path])
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "summary.md").read_text().startswith("# Summary")
    assert "Where the memory goes" not in (tmp_path / "summary.md").read_text()  # no parts were measured


@pytest.mark.parametrize("name", ["profile", "run", "ranks"])
def test_a_run_json_of_vaebench_run_2_loads_with_its_memory_in_one_record(tmp_path: Path, name):
    """Files written by vaebench.run/2 (HEAD 77c7186, this machine): the ranks measured were the
    spec's ``ranks``, now the spec says what was asked (``nproc``); a step's rise was
    ``footprint.peak_bytes``, the process's memory ``process.memory``: now one record."""
    path = tmp_path / "run.json"
    shutil.copy(V2 / f"{name}.json", path)
    old = json.loads(path.read_text())
    r = Result.load(path)
    assert [m.name for m in r.measurements] == [m["name"] for m in old["measurements"]]
    for m, was in zip(r.measurements, old["measurements"], strict=True):
        assert [t.seconds for t in m.samples] == [t["seconds"] for t in was["samples"]]
        if was["footprint"].get("peak_bytes") is not None:
            assert m.footprint.breakdown.rise == was["footprint"]["peak_bytes"]
            assert m.footprint.breakdown.peak == was["footprint"]["breakdown"]["peak"]
        elif m.footprint.breakdown is not None:  # a script's: its rise was never measured, not 0
            assert m.footprint.breakdown.rise is None and derive.peak_mb(r, m.name) is None
        if was.get("process"):
            assert m.footprint.max_rss_mb == was["process"]["memory"]["max_rss_mb"]
    if name == "ranks":
        assert old["spec"]["ranks"] == 2 and r.spec.nproc == 2
    elif r.kind == "script":
        assert r.spec.nproc == 0
    assert Result.from_dict(r.to_dict()).to_dict() == r.to_dict()  # saved as today's, losslessly
    proc = in_process(main, ["report", path])
    assert proc.returncode == 0, proc.stderr
    said = (tmp_path / "summary.md").read_text()
    assert ("2 ranks under torchrun" in said) == (name == "ranks")


def test_an_unknown_format_is_refused_in_one_line(tmp_path: Path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"schema": "vaebench.run/9", "kind": "variants"}))
    proc = in_process(main, ["report", path])
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "'vaebench.run/9'" in proc.stderr and "vaebench.run/3" in proc.stderr


def _pairs() -> tuple[list[float], list[float]]:
    """Paired rounds on a drifting machine where a change saves ~0.3 ms of ~10: the ratio's paired
    bootstrap holds 1, while a separate bootstrap of the paired differences excludes 0 (the
    report before the typed Result printed both: "unchanged" beside "-0.34 (-0.46 to -0.19)")."""
    rng = np.random.default_rng(3)
    base = 10 * (1 + 0.3 * rng.standard_normal(30)).clip(0.5)
    ref = base * (1 + 0.02 * rng.standard_normal(30))
    own = ref - 0.3 + 0.2 * rng.standard_normal(30)
    return list(ref), list(own)


def test_what_a_change_buys_says_one_thing():
    ref, own = _pairs()
    r = make_result({"ref": ref, "own": own})
    r["own"].reference = "ref"
    (change,) = derive.changes(r)
    # the interval holds 1 and reaches beyond +-5%: not measurable ("noisy"), never "unchanged"
    assert change.verdict == "noisy" and change.speedup.low < 1 < change.speedup.high
    added = change.added_s
    assert added is not None and added.low < 0 < added.high  # the same interval, in ms: it holds 0
    # the ms column is the speedup's interval read in ms of the reference's median step
    ref_ms = float(np.median(ref))
    assert added.low * 1e3 == pytest.approx(ref_ms * (1 / change.speedup.high - 1))
    assert added.high * 1e3 == pytest.approx(ref_ms * (1 / change.speedup.low - 1))
    section = summary.markdown(r).split("## What each change buys", 1)[1]
    row = next(line for line in section.splitlines() if line.startswith("| own "))
    assert "| noisy " in row and "to +" in row  # its ms interval runs from a saving to a cost


def test_a_measurable_change_excludes_zero_in_both_columns():
    r = make_result({"ref": [10.0 + 0.1 * (i % 3) for i in range(12)],
                     "own": [8.0 + 0.1 * (i % 3) for i in range(12)]})
    r["own"].reference = "ref"
    (change,) = derive.changes(r)
    assert change.verdict == "faster" and change.added_s.high < 0


def test_progress_in_a_log_is_a_line_per_stage_not_frames():
    log = io.StringIO()  # not a terminal: CI, a pipe, nohup
    b = bar(stream=log, total=5000, desc="measuring", unit="step")
    for _ in range(5000):
        b.update()
    b.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and 1 <= len(lines) <= 3 and lines[-1].startswith("measuring: 100%")

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    live = Terminal()
    b = bar(stream=live, total=50, desc="measuring", mininterval=0, miniters=1)
    for _ in range(50):
        b.update()
    b.close()
    assert live.getvalue().count("\r") > 10  # on a terminal the bar redraws itself


def test_the_line_writer_drops_repeated_frames():
    out = io.StringIO()
    w = LineWriter(out)
    w.write("\rstage 1/3")
    w.write("\rstage 1/3")
    w.write("\rstage 3/3\n")
    assert out.getvalue() == "stage 1/3\nstage 3/3\n"
