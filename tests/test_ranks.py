"""`vaebench run --nproc N`: one capture per torchrun rank, merged -- the skew, the straggler
wherever its extra time lies (data, backward, hand-called collectives), a rank that dies, the
ranks' clocks aligned and one trace of them all. Several nodes: tests/test_nodes.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import cli
from bench.measure.result import Result

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "examples" / "scripts"


def run(*argv: str) -> int:
    return cli.main(["run", *argv])


@pytest.mark.slow
def test_ddp_straggler_is_named_with_its_part(tmp_path: Path):
    """20 ms more inside rank 1's own backward (a custom autograd function), on a ~10 ms step: a
    gap no load can hide, and one that "the step without backward" could not see -- rank 0 waits
    for it inside its own backward. (The no-delay case names no straggler 5 of 5 on a quiet
    machine -- experiments/run_acceptance.py; on a loaded one a rank really can be slower, so it
    is not judged here. A slow rank's data loading: test_stragglers_from_the_ranks_own_work.)"""
    out = tmp_path / "out"
    assert run("--nproc", "2", "--steps", "30", "--warmup", "3", "--tools", "kineto",
               "--observe-windows", "0", "--profile-windows", "1", "--profile-steps", "2", "--out", str(out),
               str(SCRIPTS / "ddp_train.py"), "--slow-backward-rank", "1", "--backward-delay-ms", "20") == 0
    result = Result.load(out / "run.json")
    assert result.measured == ["rank0", "rank1"] and len(result["rank1"].samples) == 30
    summary = (out / "summary.md").read_text()
    assert "**Straggler: `rank1`**" in summary and "its `backward` part explains" in summary
    # DDP's own timing of the all-reduce: the fast rank waits there for the slow one's gradients
    assert result["rank0"].process.allreduce_ms > result["rank1"].process.allreduce_ms > 0
    assert "`rank0`'s all-reduce:" in summary
    # where the memory goes, per rank: DDP replicates the model, so each rank's parameters,
    # gradients and optimizer state are the same bytes; a row of the table each
    found = [result[f"rank{rank}"].footprint.breakdown for rank in (0, 1)]
    assert all(b is not None and sum(b.parts.values()) == b.peak for b in found)
    assert found[0].parts["parameters"] == found[1].parts["parameters"] > 0
    assert found[0].parts["optimizer state"] == found[1].parts["optimizer state"]
    assert "| rank0 " in summary.split("## Where the memory goes")[1] and "| rank1 " in summary
    for rank in (0, 1):  # one trace per rank, with what Holistic Trace Analysis needs
        trace = json.loads((out / "tb" / "ddp_train.py" / f"rank{rank}.pt.trace.json").read_text())
        assert trace["distributedInfo"]["rank"] == rank and trace["distributedInfo"]["world_size"] == 2


def test_a_rank_that_dies_is_named_and_the_others_are_kept(tmp_path: Path, caplog):
    """One node, rank 1 died without a record (its process ended inside the script): it is named
    as died, rank 0's steps are kept. The real death under torchrun, its record sent from another
    node: tests/test_nodes.py (the same collect, on each node)."""
    from bench.ranks.gather import STARTED
    from bench.ranks.launch import collect
    from bench.ranks.records import DIED, save_record
    from tests.helpers import make_result

    rank0 = make_result({"rank0": [10.0] * 25})["rank0"]
    save_record(rank0, tmp_path / "rank0.json")
    (tmp_path / STARTED).mkdir()
    here = {r: {"rank": r, "local_rank": r, "node_rank": 0, "host": "box", "world_size": 2} for r in (0, 1)}
    found = collect(tmp_path, 1, nproc=2, torchrun=[], tail=[], ran_here=here)
    assert [m.name for m in found] == ["rank0", "rank1"]
    assert len(found[0].samples) == 25 and found[1].status == "failed" and not found[1].samples
    assert found[1].reason == DIED and "on node" not in found[1].reason  # one node: no node to name
    assert "rank 1: the rank died without writing its record, or its node never sent it" in caplog.text
    assert not list(tmp_path.glob("rank*.json")) and not (tmp_path / STARTED).exists()  # left clean


def _rank_result(data_ms: dict[str, list[float]]):
    from bench.measure.clock import Timing
    from tests.helpers import make_result

    r = make_result({n: [10.0] * len(v) for n, v in data_ms.items()})
    for name, data in data_ms.items():
        # the same 30 ms step on every rank (they wait for each other): a slow rank's data is
        # long, and the others spend that time waiting in backward
        r[name].samples = [Timing(seconds=0.03, steps=[0.03], round=i, parts={
            "data": [d / 1e3], "forward": [0.005], "backward": [0.03 - 0.005 - 0.002 - d / 1e3],
            "optimizer": [0.002]}) for i, d in enumerate(data)]
    return r


def test_stragglers_from_the_ranks_own_work():
    import numpy as np

    from bench.ranks.skew import stragglers

    rng = np.random.default_rng(0)
    even = _rank_result({"rank0": list(2 + rng.random(30)), "rank1": list(2 + rng.random(30))})
    found, _ = stragglers(even)
    assert not any(s.named for s in found)
    slow = _rank_result({"rank0": list(2 + rng.random(30)), "rank1": list(20 + rng.random(30))})
    (s,) = stragglers(slow)[0]
    assert s.named and s.rank == "rank1" and s.part == "data" and s.explains > 0.9 and s.skew.low > 1
    # 1 ms more data a step, every step: measurable, but 3% of a 30 ms step -- a skew, not a straggler
    small = _rank_result({"rank0": list(2 + 0.01 * rng.random(30)), "rank1": list(3 + 0.01 * rng.random(30))})
    (s,) = stragglers(small)[0]
    assert s.skew.low > 1 and not s.named and s.gap_share == pytest.approx(1 / 30, rel=0.05)


def test_a_straggler_inside_backward_is_found_from_the_waits():
    """Both ranks step in 30 ms; rank 1 computes 20 ms more inside its backward, rank 0 waits 20 ms
    for it in the all-reduce (DDP's timing: 22 ms against 2 ms). The step without backward sees
    no difference; the step less the wait names rank 1, and its backward."""
    import numpy as np

    from bench.measure.clock import Timing
    from bench.measure.result import Process
    from bench.ranks.skew import own_work, stragglers
    from tests.helpers import make_result

    rng = np.random.default_rng(1)
    r = make_result({"rank0": [30.0] * 30, "rank1": [30.0] * 30})
    for name, reduce_ms in (("rank0", 22.0), ("rank1", 2.0)):
        r[name].samples = [Timing(seconds=0.03, steps=[0.03], round=i, parts={
            "data": [0.002], "forward": [0.004 + 0.0002 * rng.random()], "backward": [0.022],
            "optimizer": [0.002]}) for i in range(30)]
        r[name].process = Process(allreduce_ms=reduce_ms)
    (s,) = stragglers(r)[0]
    assert s.named and s.rank == "rank1" and s.part == "backward" and s.explains > 0.9
    assert own_work(r, "rank0") == pytest.approx(0.010, abs=1e-4)
    assert own_work(r, "rank1") == pytest.approx(0.030)
    for name in ("rank0", "rank1"):  # without DDP's timing: the old rule, which cannot see it
        r[name].process = None
    r.cache.clear()
    assert not any(s.named for s in stragglers(r)[0])


def _timelines(skew_s: float = 0.5, jitter_s: float = 50e-6, steps: int = 20):
    """Two ranks' timelines as their recorders keep them: rank 1 loads slowly and reaches the
    step's all_reduce 15 ms after rank 0; both leave it together. Rank 1's host clock is
    ``skew_s`` ahead of rank 0's and it started 0.2 s later; its ends jitter by ``jitter_s``."""
    import numpy as np

    from bench.measure.result import Process

    rng = np.random.default_rng(2)
    out = {}
    for name, origin, late, arrive in (("rank0", 1000.0, 0.0, 0.005), ("rank1", 1000.2 + skew_s, 0.2, 0.020)):
        steps_, spans, syncs = [], [], []
        for i in range(steps):
            s = i * 0.03 - late  # the same true moment on this rank's own relative clock
            leave = s + 0.022 + (rng.uniform(-jitter_s, jitter_s) if name == "rank1" else 0.0)
            steps_.append([i, s, s + 0.03])
            spans += [[i, "data", s, s + arrive - 0.001], [i, "collective:all_reduce", s + arrive, leave]]
            syncs.append([i, 0, leave])
        out[name] = Process(rank=int(name[4:]), timeline={"origin": origin, "steps": steps_, "spans": spans,
                                                          "syncs": syncs})
    return out


def test_ranks_clocks_are_aligned_on_the_collectives_ends():
    """Rank 1's clock 0.5 s ahead: its offset is found from the collectives' ends to within their
    jitter, and the residual stated is the jitter's."""
    from bench.ranks.align import align
    from tests.helpers import make_result

    r = make_result({"rank0": [30.0], "rank1": [30.0]})
    for name, process in _timelines().items():
        r[name].process = process
    a = align(r)
    assert a.reference == "rank0" and a.points == 20 and a.basis == "collective"
    assert a.offsets["rank0"] == pytest.approx(0.0, abs=1e-9)
    assert a.offsets["rank1"] == pytest.approx(-0.5, abs=60e-6)
    assert 0 < a.largest_s <= 100e-6 and a.typical_s <= a.p95_s <= a.largest_s
    assert "aligned on 20 collective ends" in a.text()
    r["rank1"].process.timeline = {}  # a rank without sync points: no alignment claimed
    r.cache.clear()
    assert align(r) is None


def test_merged_trace_puts_every_rank_on_one_clock_with_its_waits(tmp_path: Path):
    from bench.ranks import merged_trace
    from bench.ranks.align import align
    from tests.helpers import make_result

    r = make_result({"rank0": [30.0], "rank1": [30.0]})
    for name, process in _timelines().items():
        r[name].process = process
    (path,) = merged_trace.write(r, tmp_path)
    trace = json.loads(path.read_text())
    names = {e["pid"]: e["args"]["name"] for e in trace["traceEvents"] if e.get("name") == "process_name"}
    assert sorted(names) == [0, 1] and names[0].startswith("rank0") and names[1].startswith("rank1")
    spans = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    ends = {pid: [e["ts"] + e["dur"] for e in spans if e["pid"] == pid and e["name"] == "all_reduce"]
            for pid in (0, 1)}
    # the same collective ends at the same moment on the one clock, within the stated error
    error_us = align(r).largest_s * 1e6
    assert len(ends[0]) == len(ends[1]) == 20
    assert max(abs(a - b) for a, b in zip(ends[0], ends[1], strict=True)) <= error_us + 1
    waits = [e for e in spans if e["cat"] == "wait"]
    assert waits and {e["pid"] for e in waits} == {0}  # rank 0 waits for rank 1, never the reverse
    assert all(e["args"]["wait_ms"] == pytest.approx(15, abs=0.2) for e in waits)
    assert merged_trace.write(make_result({"solo": [1.0]}), tmp_path / "none") == []  # one process: no file


@pytest.mark.slow
def test_collectives_called_by_hand_name_the_slow_rank_and_draw_one_trace(tmp_path: Path):
    """No DDP: the script averages its gradients with `dist.all_reduce`. Rank 1 loads 20 ms
    slower; rank 0 waits for it inside the collectives, which are timed as their own part."""
    out = tmp_path / "out"
    assert run("--nproc", "2", "--steps", "20", "--warmup", "3", "--tools", "none", "--observe-windows", "0",
               "--out", str(out), str(SCRIPTS / "allreduce_by_hand.py"), "--slow-rank", "1",
               "--delay-ms", "20") == 0
    result = Result.load(out / "run.json")
    summary = (out / "summary.md").read_text()
    assert "**Straggler: `rank1`**" in summary and "its `data` part explains" in summary
    assert "the collectives the script calls (`collective`)" in summary
    collective = {n: sum(sum(t.parts["collective"]) for t in result[n].samples) for n in result.measured}
    assert collective["rank0"] > collective["rank1"] > 0  # the fast rank waits there
    assert "The ranks' clocks aligned on" in summary
    trace = json.loads((out / "ranks.trace.json").read_text())
    pids = {e["pid"] for e in trace["traceEvents"] if e.get("name") == "process_name"}
    assert pids == {0, 1}
    assert any(e.get("cat") == "wait" and e["pid"] == 0 for e in trace["traceEvents"])
