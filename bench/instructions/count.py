"""Exact CPU instruction counts of one fetch and one training step, under Valgrind's callgrind.

Timings on a shared machine move 10-30% between processes; the number of instructions a
piece of code executes does not (0.015% here, docs/results.md). So the regression gate backs its
timings with counts: a change in them is a change in the work, whatever the clock said.

How a count is taken (the method of CodSpeed and of PyTorch's own instruction-count
benchmarks, done directly rather than through ``torch.utils.benchmark.Timer.collect_callgrind``,
which starts ``python`` from PATH and instruments the whole torch import):

1. the child (``python -m bench.instructions.child --child``, :mod:`bench.instructions.child`) starts under
   ``valgrind --tool=callgrind --instr-atstart=no``: importing torch and building the variants
   run uninstrumented (~30 s instead of ~2 min), with one intra-op thread (OpenMP threads that
   spin while waiting would count instructions that are not work) and MKL held to its SSE4.2
   kernels (see ``MKL_ISA``);
2. it warms every variant up (``callgrind.WARM_STEPS`` steps), then says ``ready``; this process switches
   instrumentation on with ``callgrind_control -i on PID`` and answers ``go``;
3. every region -- one fetch, or one step on an already fetched batch -- is bracketed by
   ``torch._C._valgrind_toggle()`` ... ``_valgrind_toggle_and_dump_stats()``, which writes one
   ``callgrind.out.N`` per region; the first region after switching on reads high and is
   thrown away; each region is counted ``repeats`` times and the median kept;
4. the totals are read from the dump files, the per-function counts (self cost) of the
   median repeat from ``callgrind_annotate``.

Counts are of this process only, on the CPU: a variant whose work runs in worker processes
(``profile = False``) is skipped with that reason; a GPU variant's kernels are not counted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = "vaebench.instructions/1"
INSTALL_HINT = "install Valgrind (apt-get install valgrind; brew has no build for Apple silicon)"
VALGRIND_TOOLS = ("valgrind", "callgrind_control", "callgrind_annotate")
# MKL's AVX2 sgemm kernels run ~150x slower under Valgrind's emulation than its SSE4.2 ones
# (one 100x784x400 matmul: 1.7 s against 0.01 s), which made one VAE step take 15 s. Both
# sides of a comparison count the SSE4.2 code path: the counts are a proxy for the work, as
# every instruction count is, and equal code gives equal counts.
MKL_ISA = "SSE4_2"
TOP_FUNCTIONS = 40
_ANNOTATE_LINE = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.+?)\s*$")


class CountError(RuntimeError):
    """Counting failed (valgrind missing, the child failed); the message says why and the fix."""


def missing_tool() -> str | None:
    """None when callgrind can run here, else one line naming what is missing and how to get it."""
    if not sys.platform.startswith("linux"):
        return f"callgrind counts need Linux with Valgrind (this is {sys.platform})"
    missing = [tool for tool in VALGRIND_TOOLS if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not found on PATH: {INSTALL_HINT}"
    return None


@dataclass(frozen=True)
class Count:
    """The instructions of one region (a fetch or a step), over its repeats."""

    per: str  # "fetch" | "step"
    repeats: tuple[int, ...]  # instructions of each repeat of the region
    calls: int = 1  # fetches or steps in one region
    functions: dict[str, int] = field(default_factory=dict)  # self count per call, median repeat

    @property
    def instructions(self) -> float:
        """Per fetch or step: the median repeat's count over the calls it held."""
        return statistics.median_low(self.repeats) / self.calls

    @property
    def spread(self) -> float:
        """(max - min) / median over the repeats: how exact the count was."""
        return (max(self.repeats) - min(self.repeats)) / max(statistics.median_low(self.repeats), 1)

    def as_dict(self) -> dict[str, Any]:
        return {"per": self.per, "instructions": self.instructions, "repeats": list(self.repeats),
                "calls": self.calls, "functions": self.functions}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Count:
        return cls(str(d["per"]), tuple(int(x) for x in d["repeats"]), int(d.get("calls", 1)),
                   {str(k): int(v) for k, v in (d.get("functions") or {}).items()})


@dataclass
class Counts:
    """One counting run: ``counts["step[resident]"]`` etc., and why any variant was not counted."""

    counts: dict[str, Count]
    skipped: dict[str, str]
    meta: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **self.meta,
                "counts": {k: c.as_dict() for k, c in self.counts.items()}, "skipped": self.skipped}


# --- this process: start the child under callgrind and read what it dumped -------------------

def totals(path: Path) -> int:
    """The instruction total callgrind wrote into one dump file."""
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise CountError(f"{path}: no totals line: not a complete callgrind dump")


def short_function(name: str) -> str:
    """``file:function [/path/libx.so]`` -> ``function (libx.so)``, capped: a stable, readable key.

    The file part is a path (or ``???``) before the *first* colon; C++ names have colons too.
    """
    obj = ""
    if name.endswith("]") and " [" in name:
        name, _, obj = name[:-1].rpartition(" [")
        obj = f" ({Path(obj).name})"
    prefix, colon, rest = name.partition(":")
    if colon and rest and (prefix == "???" or "/" in prefix or "." in prefix) and " " not in prefix:
        name = rest
    if len(name) > 140:
        name = name[:137] + "..."
    return name + obj


def functions(path: Path, top: int = TOP_FUNCTIONS) -> dict[str, int]:
    """Self instruction counts of the ``top`` costliest functions of one dump (callgrind_annotate)."""
    out = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", str(path)],
                         capture_output=True, text=True, check=False).stdout
    found: dict[str, int] = {}
    body = out.split("file:function", 1)[-1]
    for line in body.splitlines():
        match = _ANNOTATE_LINE.match(line)
        if match and "PROGRAM TOTALS" not in line:
            key = short_function(match[2])
            found[key] = found.get(key, 0) + int(match[1].replace(",", ""))
            if len(found) >= top:
                break
    return found


def _child_command(options: dict[str, Any], out_file: Path) -> list[str]:
    return ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--collect-atstart=no",
            f"--callgrind-out-file={out_file}", sys.executable, "-m", "bench.instructions.child",
            "--child", json.dumps(options)]


def count_instructions(workload: str, variants: list[str] | None, *, data_dir: Path, dataset: str = "auto",
          limit: int = 2000, batch_size: int = 100, repeats: int = 2, fetches: int = 10,
          workdir: Path,
          on_event: Callable[[str], None] | None = None,
          on_progress: Callable[[str], None] | None = None) -> Counts:
    """Count ``fetches`` fetches and one step of each variant (``repeats`` times each) under callgrind.

    ``workdir`` receives the dump files and valgrind's log. ``on_progress`` gets a line each time
    a variant is counted, with the time it took and an estimate of what is left (from the
    variants counted so far). Raises CountError with the reason.
    """
    reason = missing_tool()
    if reason:
        raise CountError(reason)
    workdir.mkdir(parents=True, exist_ok=True)
    options = {"workload": workload, "variants": variants, "data_dir": str(data_dir),
               "dataset": dataset, "limit": limit, "batch_size": batch_size, "repeats": repeats,
               "fetches": fetches}
    out_file = workdir / "callgrind.out"
    log = workdir / "valgrind.log"
    # PYTHONHASHSEED fixed: with random string hashes, dict and set probing differs from one
    # process to the next, and the per-sample Python fetch of `naive` moved 0.3% between runs.
    # not resolved: a caller that reaches this tree through a symlink keeps that path's length
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "MKL_ENABLE_INSTRUCTIONS": MKL_ISA, "PYTHONHASHSEED": "0",
           "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    started = time.perf_counter()
    seen = _Events(_Eta(on_progress), on_event)
    with open(log, "w") as log_file, subprocess.Popen(
            _child_command(options, out_file), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=log_file, text=True, env=env) as child:
        try:
            assert child.stdout is not None and child.stdin is not None
            for line in child.stdout:
                seen.take(line, child.stdin)
        except BaseException:
            child.kill()
            raise
        code = child.wait()
    eta, regions, skipped, meta = seen.eta, seen.regions, seen.skipped, seen.meta
    eta.done()
    if code != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-8:])
        raise CountError(f"the counting process under valgrind failed (exit {code}); end of {log}:\n{tail}")
    counts = _collect(regions, out_file)
    meta["mkl_isa"] = MKL_ISA
    meta["valgrind"] = subprocess.run(["valgrind", "--version"], capture_output=True,
                                      text=True).stdout.strip()
    meta["seconds"] = round(time.perf_counter() - started, 1)
    return Counts(counts, skipped, meta)


class _Events:
    """What the counting process says, line by line: JSON events (ready, built, skipped, region,
    error) or valgrind's own text."""

    def __init__(self, eta: _Eta, on_event: Callable[[str], None] | None):
        self.eta, self.on_event = eta, on_event
        self.regions: list[dict[str, Any]] = []
        self.skipped: dict[str, str] = {}
        self.meta: dict[str, Any] = {}

    def take(self, line: str, stdin: Any) -> None:
        event = json.loads(line) if line.startswith("{") else {"event": "text", "text": line}
        kind = event["event"]
        if kind == "ready":
            switched = subprocess.run(["callgrind_control", "-i", "on", str(event["pid"])],
                                      capture_output=True, text=True)
            if switched.returncode != 0:
                raise CountError("callgrind_control could not switch instrumentation on: "
                                 + (switched.stderr or switched.stdout).strip()[-300:])
            stdin.write("go\n")
            stdin.flush()
            self.meta.update(event.get("meta", {}))
        elif kind == "region":
            self.regions.append(event)
            self.eta.region(event["key"].partition("[")[2].rstrip("]"))
        elif kind == "built":
            self.eta.variants += 1
        elif kind == "skipped":
            self.skipped[event["variant"]] = event["reason"]
        elif kind == "error":
            raise CountError(event["message"])
        if self.on_event is not None and kind in ("built", "region", "ready", "skipped"):
            self.on_event(kind)


class _Eta:
    """Progress of the counting: each variant's time, and what is left estimated from them."""

    def __init__(self, say: Callable[[str], None] | None):
        self.say, self.variants, self.counted = say, 0, 0
        self.current: str | None = None
        self.started = self.mark = time.perf_counter()

    def region(self, variant: str) -> None:
        if variant != self.current:
            if self.current is not None:
                self._finished()
            else:
                self.started = self.mark = time.perf_counter()  # the first region: counting began
            self.current = variant

    def done(self) -> None:
        if self.current is not None:
            self._finished()
            self.current = None

    def _finished(self) -> None:
        self.counted += 1
        now = time.perf_counter()
        took, self.mark = now - self.mark, now
        if self.say is None:
            return
        left = max(self.variants - self.counted, 0)
        per = (now - self.started) / self.counted
        rest = f"; about {per * left:.0f} s left for {left} more" if left else ""
        self.say(f"instructions of `{self.current}` counted in {took:.0f} s "
                 f"({self.counted} of {self.variants or '?'} variants){rest}")


def _collect(regions: list[dict[str, Any]], out_file: Path) -> dict[str, Count]:
    by_key: dict[str, list[tuple[int, Path]]] = {}
    calls: dict[str, int] = {}
    for region in regions:
        dump = Path(f"{out_file}.{region['dump']}")
        if not dump.is_file():
            raise CountError(f"{dump}: callgrind wrote no dump for {region['key']}")
        by_key.setdefault(region["key"], []).append((totals(dump), dump))
        calls[region["key"]] = int(region["calls"])
    counts = {}
    for key, items in by_key.items():
        ordered = sorted(items, key=lambda item: item[0])
        median_dump = ordered[(len(ordered) - 1) // 2][1]  # the median_low repeat
        n = calls[key]
        counts[key] = Count(per=key.partition("[")[0], repeats=tuple(c for c, _ in items), calls=n,
                            functions={f: c // n for f, c in functions(median_dump).items()})
    return counts
