"""The acceptance measurements of `vaebench run` (their figures: docs/results.md):

    python experiments/run_acceptance.py overhead   # vae train alone vs under `vaebench run`, alternating
    python experiments/run_acceptance.py straggler  # DDP, 2 ranks: a 20 ms slow rank named 5/5, none 5/5
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


def straggler(runs: int = 5) -> None:
    for delay in (20, 0):
        named = 0
        for i in range(runs):
            with tempfile.TemporaryDirectory() as tmp:
                subprocess.run([PY, "-m", "bench", "run", "--nproc", "2", "--steps", "40", "--warmup", "5",
                                "--tools", "none", "--out", tmp, "examples/scripts/ddp_train.py",
                                "--slow-rank", "1", "--delay-ms", str(delay)],
                               capture_output=True, text=True, cwd=ROOT, check=True)
                summary = (Path(tmp) / "summary.md").read_text()
                line = next((x for x in summary.splitlines() if "Straggler" in x or "No straggler" in x), "")
                hit = "**Straggler: `rank1`**" in summary and "`data` part" in summary
                named += hit
                print(f"delay {delay} ms, run {i + 1}: {line}", flush=True)
        print(f"delay {delay} ms: rank1 named with `data` in {named} of {runs} runs")


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
    {"overhead": overhead, "straggler": straggler, "breakdown": breakdown, "ratio": ratio}[sys.argv[1]]()
