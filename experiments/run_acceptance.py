"""The acceptance measurements of `vaebench run` (their figures: docs/results.md):

    python experiments/run_acceptance.py overhead   # vae train alone vs under `vaebench run`, alternating
    python experiments/run_acceptance.py straggler  # DDP, 2 ranks: a 20 ms slow rank named 5/5, none 5/5
    python experiments/run_acceptance.py nodes      # 2 nodes x 1 rank, localhost: rank 1 named 5/5, none 5/5
    python experiments/run_acceptance.py backward   # DDP, rank 1 slow inside backward: named 5/5, none 5/5
    python experiments/run_acceptance.py breakdown  # `run` vs `profile` on naive and optimized
    python experiments/run_acceptance.py ratio      # naive/optimized: `run --compare` vs `profile`

Each prints what it measured; nothing here is part of the package.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def _epoch_seconds(text: str) -> float:
    found = re.findall(r"epoch 1/1 .*?([\d.]+) s ", text)
    if not found:
        raise SystemExit(f"no epoch time in the output:\n{text[-2000:]}")
    return float(found[-1])


def overhead(pairs: int = 10) -> None:
    from bench.measure import stats

    train = ["-m", "vae", "train", "--epochs", "1"]
    alone, observed = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(pairs):
            for side in ("alone", "observed") if i % 2 == 0 else ("observed", "alone"):
                out = Path(tmp) / f"{side}{i}"
                run = [PY, "-m", "bench", "run", "--tools", "none", "--steps", "0", "--out", str(out / "run")]
                cmd = [PY] if side == "alone" else run
                cmd = [*cmd, *train, "--out", str(out / "train")]
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
                seconds = _epoch_seconds(proc.stderr + proc.stdout)
                (alone if side == "alone" else observed).append(seconds)
                print(f"pair {i + 1} {side}: epoch {seconds:.2f} s", flush=True)
    r = stats.ratio(observed, alone)
    print(f"epoch time under `vaebench run --tools none --steps 0` / alone: {r.text(3)}")


def _one_node(runs: int, flags: tuple[str, str], part: str) -> None:
    """DDP, 2 ranks on one node: rank 1 slowed by 20 ms through ``flags`` (rank, delay), then
    not at all; counts the runs that say what they should (rank 1 and ``part``; no straggler)."""
    for delay in (20, 0):
        right = 0
        for i in range(runs):
            with tempfile.TemporaryDirectory() as tmp:
                subprocess.run([PY, "-m", "bench", "run", "--nproc", "2", "--steps", "40", "--warmup", "5",
                                "--tools", "none", "--out", tmp, "examples/scripts/ddp_train.py",
                                flags[0], "1", flags[1], str(delay)],
                               capture_output=True, text=True, cwd=ROOT, check=True)
                summary = (Path(tmp) / "summary.md").read_text()
                right += (("**Straggler: `rank1`**" in summary and f"`{part}` part" in summary) if delay
                          else "No straggler" in summary)
                print(f"{flags[1]} {delay}, run {i + 1}: {_straggler_line(summary)}", flush=True)
        said = f"rank1 named with `{part}`" if delay else "no straggler"
        print(f"{flags[1]} {delay}: {said} in {right} of {runs} runs")


def straggler(runs: int = 5) -> None:
    """Rank 1 loads 20 ms slower, then not."""
    _one_node(runs, ("--slow-rank", "--delay-ms"), "data")


def _straggler_line(summary: str) -> str:
    return next((x for x in summary.splitlines() if "Straggler" in x or "No straggler" in x), "")


def _node(node: int, port: int, out: str, delay: float) -> subprocess.Popen[str]:
    torchrun = f"--nnodes 2 --node-rank {node} --master-addr 127.0.0.1 --master-port {port}"
    return subprocess.Popen([PY, "-m", "bench", "run", "--nproc", "1", "--steps", "40", "--warmup", "5",
                             "--tools", "none", "--torchrun", torchrun, "--out", out,
                             "examples/scripts/ddp_train.py", "--slow-rank", "1", "--delay-ms", str(delay)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def nodes(runs: int = 5) -> None:
    """The issue's command: two torchrun agents on this machine as two nodes, one rank each,
    each under its own `vaebench run`; rank 1 (on node 1) loads 20 ms slower, then not at all."""
    import socket

    for delay in (20, 0):
        named = 0
        for i in range(runs):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            with tempfile.TemporaryDirectory() as tmp:
                procs = [_node(node, port, f"{tmp}/node{node}", delay) for node in (0, 1)]
                outputs = [p.communicate()[0] for p in procs]
                codes = [p.returncode for p in procs]
                summary = (Path(tmp) / "node0" / "summary.md").read_text()
                pointed = "is written by the node of global rank 0" in outputs[1]
                hit = ("**Straggler: `rank1`**" in summary and "`data` part" in summary) if delay else (
                    "No straggler" in summary)
                named += hit and codes == [0, 0] and pointed
                print(f"delay {delay} ms, run {i + 1}: exit codes {codes}, node 1 points at node 0: "
                      f"{pointed}; {_straggler_line(summary)}", flush=True)
        said = "rank1 named with `data`" if delay else "no straggler"
        print(f"delay {delay} ms: {said}, both nodes exit 0, in {named} of {runs} runs")


def backward(runs: int = 5) -> None:
    """Rank 1 burns 20 ms inside a custom autograd function's backward, then not."""
    _one_node(runs, ("--slow-backward-rank", "--backward-delay-ms"), "backward")


def breakdown() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        shares = {}
        for pipeline in ("naive", "optimized"):
            out = Path(tmp) / pipeline
            subprocess.run([PY, "-m", "bench", "run", "--tools", "none", "--steps", "200", "--out", str(out),
                            "-m", "vae", "train", "--pipeline", pipeline, "--epochs", "1",
                            "--out", str(Path(tmp) / f"train-{pipeline}")],
                           capture_output=True, text=True, cwd=ROOT, check=True)
            from bench.measure.result import Result

            steps = Result.load(out / "run.json")["vae"].samples
            total = sum(t.seconds for t in steps)
            shares[pipeline] = {p: sum(sum(t.parts.get(p, [0])) for t in steps) / total
                                for p in ("data", "forward", "backward", "optimizer", "other")}
            med = sorted(t.seconds for t in steps)[len(steps) // 2]
            print(f"run {pipeline}: median step {med * 1e3:.2f} ms, shares "
                  + ", ".join(f"{p} {s:.0%}" for p, s in shares[pipeline].items()), flush=True)
        out = Path(tmp) / "profile"
        subprocess.run([PY, "-m", "bench", "profile", "--variants", "naive,optimized", "--tools", "none",
                        "--epochs", "0", "--rounds", "100", "--no-counters", "--no-progress",
                        "--out", str(out)],
                       capture_output=True, text=True, cwd=ROOT, check=True)
        print((out / "summary.md").read_text())


def ratio() -> None:
    """naive / optimized step ratio: `vaebench run --compare` (alternating processes of the
    training CLI) beside the engine's interleaved rounds, one after the other."""
    with tempfile.TemporaryDirectory() as tmp:
        sides = [f"-m vae train --pipeline {p} --epochs 1 --overwrite --out {tmp}/train-{p}"
                 for p in ("optimized", "naive")]
        proc = subprocess.run([PY, "-m", "bench", "run", "--compare", *sides, "--steps", "200",
                               "--out", str(Path(tmp) / "cmp")], capture_output=True, text=True, cwd=ROOT)
        print(proc.stdout.strip() or proc.stderr[-2000:], flush=True)
        out = Path(tmp) / "profile"
        subprocess.run([PY, "-m", "bench", "profile", "--variants", "naive,optimized", "--tools", "none",
                        "--epochs", "0", "--rounds", "200", "--no-counters", "--no-progress",
                        "--out", str(out)], capture_output=True, text=True, cwd=ROOT, check=True)
        print(next(x for x in (out / "summary.md").read_text().splitlines() if x.startswith("Fastest")))


if __name__ == "__main__":
    {"overhead": overhead, "straggler": straggler, "nodes": nodes, "backward": backward,
     "breakdown": breakdown, "ratio": ratio}[sys.argv[1]]()
