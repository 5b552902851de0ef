"""`vaebench run --nproc N`: one capture per torchrun rank, merged -- the skew, the straggler
wherever its extra time lies, a rank that dies, and ranks on several nodes gathered to node 0."""

from __future__ import annotations

import json
import subprocess
import sys
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
    for rank in (0, 1):  # one trace per rank, with what Holistic Trace Analysis needs
        trace = json.loads((out / "tb" / "ddp_train.py" / f"rank{rank}.pt.trace.json").read_text())
        assert trace["distributedInfo"]["rank"] == rank and trace["distributedInfo"]["world_size"] == 2


@pytest.mark.slow
def test_a_rank_that_dies_is_named_and_the_others_are_kept(tmp_path: Path, capsys):
    out = tmp_path / "out"
    code = run("--nproc", "2", "--steps", "40", "--warmup", "3", "--tools", "none", "--out", str(out),
               str(SCRIPTS / "ddp_train.py"), "--die-rank", "1", "--die-at", "25")
    assert code != 0
    err = capsys.readouterr().err
    assert "rank1: the rank died without writing its record; nothing of it was measured" in err
    result = Result.load(out / "run.json")
    assert result["rank1"].status == "failed" and len(result["rank0"].samples) >= 20
    assert result["rank0"].status == "failed"  # stopped by torchrun, or by the lost connection


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

    from bench.measure.skew import stragglers

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
    from bench.measure.skew import own_work, stragglers
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


@pytest.mark.slow
def test_two_nodes_gather_every_rank_on_node_0(tmp_path: Path):
    """Two torchrun agents on this machine as two nodes, one rank each, each under its own
    `vaebench run`: node 0's run holds both ranks (rank 1's record came over the network, not
    through a shared folder), node 1's its own rank and says where the merged run is."""
    import socket

    with socket.socket() as s:  # a free port for the job (the gather takes the next one)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for node in (0, 1):
        torchrun = f"--nnodes 2 --node-rank {node} --master-addr 127.0.0.1 --master-port {port}"
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "bench", "run", "--nproc", "1", "--steps", "10", "--warmup", "2",
             "--tools", "none", "--observe-windows", "0", "--torchrun", torchrun, "--out",
             str(tmp_path / f"node{node}"), str(SCRIPTS / "ddp_train.py")],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    merged = Result.load(tmp_path / "node0" / "run.json")
    assert merged.measured == ["rank0", "rank1"]
    assert all(len(merged[n].samples) == 10 for n in merged.measured)
    assert [merged[n].process.node_rank for n in merged.measured] == [0, 1]
    assert "(node 1, local rank 0)" in (tmp_path / "node0" / "summary.md").read_text()
    local = Result.load(tmp_path / "node1" / "run.json")
    assert local.measured == ["rank1"]
    assert "the merged run of all 2 ranks is written by the node of global rank 0" in outputs[1]
