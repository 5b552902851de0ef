"""Several nodes: torchrun agents on this machine as nodes, each under its own `vaebench run`.
Every rank's record (and its Kineto traces) travels to global rank 0's node over the network,
not through a shared folder; node 0 writes the merged run of every rank; a rank that dies on
another node is named there; a node that never joins is named in one line.

These tests check what arrives, not a verdict on timings: with two nodes' agents, parents and
ranks on two cores beside the other test worker, any rank can really be the slow one (a CPU
hog beside this file made rank 0 the measurable straggler, its optimizer starved). The slow
rank's delay is a sleep, so its record must hold at least that much `data` wherever it was
measured; the straggler rule on such records is tested in tests/test_ranks.py, and the
two-node command names the slow rank 5 of 5 on a quiet machine (docs/results.md)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bench.measure.result import Result

ROOT = Path(__file__).resolve().parents[1]
DDP = ROOT / "examples" / "scripts" / "ddp_train.py"


def _free_port() -> int:
    """A free port for the job whose next port is free too (the gather listens there)."""
    while True:
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
        with socket.socket() as b:
            try:
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


def start_nodes(tmp_path: Path, nproc: int, *script_args: str, steps: int = 10,
                options: tuple[str, ...] = ("--tools", "none")) -> list[subprocess.Popen[str]]:
    """Two nodes of ``nproc`` ranks each, started together, each in its own session (as from
    its own terminal)."""
    port = _free_port()
    procs = []
    for node in (0, 1):
        torchrun = f"--nnodes 2 --node-rank {node} --master-addr 127.0.0.1 --master-port {port}"
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "bench", "run", "--nproc", str(nproc), "--steps", str(steps), "--warmup",
             "2", "--observe-windows", "0", *options, "--torchrun", torchrun, "--out",
             str(tmp_path / f"node{node}"), str(DDP), *script_args],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"}))  # the script's progress lines as they come
    return procs


def nodes(tmp_path: Path, nproc: int, *script_args: str, **kw) -> list[subprocess.CompletedProcess[str]]:
    """:func:`start_nodes`, run to their end; their outputs in node order."""
    procs = start_nodes(tmp_path, nproc, *script_args, **kw)
    return [subprocess.CompletedProcess(p.args, p.wait(timeout=240), p.communicate()[0], "") for p in procs]


def _median_data_ms(result: Result, name: str) -> float:
    import numpy as np

    return float(np.median([sum(t.parts.get("data", [0.0])) for t in result[name].samples])) * 1e3


@pytest.mark.slow
def test_two_nodes_of_two_ranks_in_one_folder_that_hta_reads(tmp_path: Path):
    """2 nodes x 2 ranks, global rank 3 (node 1, local rank 1) slow: node 0's run holds every
    rank, rank 3 with the slow data its node measured, and every rank's Kineto trace -- the ones
    of node 1 sent with their records, over the network -- so Holistic Trace Analysis loads all
    four ranks from one folder; the merged trace has one process a rank; node 1 keeps its own."""
    done = nodes(tmp_path, 2, "--slow-rank", "3", "--delay-ms", "30", steps=10,
                 options=("--tools", "kineto", "--profile-windows", "1", "--profile-steps", "2"))
    assert [p.returncode for p in done] == [0, 0], [p.stdout[-2000:] for p in done]
    out = tmp_path / "node0"
    merged = Result.load(out / "run.json")
    assert merged.measured == ["rank0", "rank1", "rank2", "rank3"]
    assert [(merged[n].process.node_rank, merged[n].process.local_rank) for n in merged.measured] == [
        (0, 0), (0, 1), (1, 0), (1, 1)]
    assert _median_data_ms(merged, "rank3") >= 30 > max(_median_data_ms(merged, f"rank{r}") for r in range(3))
    assert "(node 1, local rank 1)" in (out / "summary.md").read_text()
    local = Result.load(tmp_path / "node1" / "run.json")  # node 1: its own ranks, and where the rest is
    assert local.measured == ["rank2", "rank3"]
    said = "the merged run of all 4 ranks is written by the node of global rank 0 (127.0.0.1)"
    assert said in done[1].stdout
    traces = out / "tb" / DDP.name
    expected = [f"rank{r}.pt.trace.json" for r in range(4)]
    assert sorted(p.name for p in traces.glob("*.pt.trace.json")) == expected
    for r in range(4):
        assert f"tb/{DDP.name}/rank{r}.pt.trace.json" in merged[f"rank{r}"].artifacts
    chrome = json.loads((out / "ranks.trace.json").read_text())
    assert {e["pid"] for e in chrome["traceEvents"] if e.get("name") == "process_name"} == {0, 1, 2, 3}
    try:
        import hta.trace_analysis as hta
    except ImportError:  # nox -s tests installs it: in CI the test must not skip
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(
            "Holistic Trace Analysis is not installed: pip install HolisticTraceAnalysis")
    analysis = hta.TraceAnalysis(trace_dir=str(traces))
    assert sorted(analysis.t.traces) == [0, 1, 2, 3]
    assert {analysis.t.meta_data[r]["distributedInfo"]["world_size"] for r in range(4)} == {4}


@pytest.mark.slow
def test_a_rank_killed_on_node_1_is_named_on_node_0(tmp_path: Path):
    """Global rank 1 (node 1) crashes half-way: node 0's run names it with its node and keeps
    rank 0's steps; both nodes exit with the script's failure, not a usage error."""
    done = nodes(tmp_path, 1, "--die-rank", "1", "--die-at", "20", steps=40)
    assert done[0].returncode == 1 and done[1].returncode == 1, [p.stdout[-2000:] for p in done]
    merged = Result.load(tmp_path / "node0" / "run.json")
    assert merged["rank1"].status == "failed" and not merged["rank1"].samples
    assert "the rank died on node 1" in merged["rank1"].reason and merged["rank1"].process.node_rank == 1
    assert len(merged["rank0"].samples) >= 15
    assert "rank1: the rank died on node 1" in done[0].stdout
    assert "the node of global rank 0 was told" in done[1].stdout
    assert merged["rank0"].status == "failed"  # stopped by the lost connection, its steps kept
    assert not (tmp_path / "node1" / "run.json").exists()  # every rank of node 1 died: node 0 has the run


@pytest.mark.slow
def test_ctrl_c_on_node_0_keeps_what_every_node_measured(tmp_path: Path):
    """Ctrl-C in node 0's terminal, mid-run: rank 0 stops and writes what it measured; rank 1 (node
    1), blocked in its next all-reduce, fails as rank 0's process goes, and its record still
    reaches node 0 -- whose `vaebench run`, not rank 0, receives the records."""
    import signal

    procs = start_nodes(tmp_path, 1, "--epochs", "50", steps=3000)
    assert procs[0].stdout is not None
    for line in procs[0].stdout:  # rank 0's script prints every 20 steps: wait for some measured ones
        if "step 40 " in line:
            break
    os.killpg(procs[0].pid, signal.SIGINT)  # the whole foreground group, as a terminal's Ctrl-C
    for p in procs:
        p.communicate(timeout=120)
    merged = Result.load(tmp_path / "node0" / "run.json")
    assert "interrupted (Ctrl-C)" in merged["rank0"].reason and merged["rank0"].samples
    assert merged["rank1"].samples, merged["rank1"].reason  # node 1's steps, gathered to node 0
    assert merged["rank1"].process.node_rank == 1


def test_a_node_that_never_joins_is_named_in_one_line():
    from bench.ranks.launch import never_joined

    tail = ["torch.distributed.DistStoreError: Timed out after 9 seconds waiting for clients. "
            "1/2 clients joined.\n"]
    line = never_joined(["--nnodes", "2", "--node-rank", "0", "--master-addr", "127.0.0.1"], 1, tail)
    assert line.startswith("node 1 never joined (1 of 2 nodes joined): torchrun's rendezvous timed out "
                           "on node 0")
    assert "\n" not in line and "--rdzv-conf timeout=" in line
    three = never_joined(["--nnodes", "3", "--node-rank", "1"], 1, ["RendezvousTimeoutError\n"])
    assert three.startswith("not every one of nodes 0, 2 joined")
    assert never_joined([], 1, ["ModuleNotFoundError: x\n"]).startswith("no rank started: torchrun exited")
