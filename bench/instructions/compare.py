"""The instruction-count verdict: exact numbers, so no statistics -- a change beyond a threshold.

Counts of unchanged code, taken in two processes, agree within 0.01% for a training step and
within ~0.4% for a small fetch (whose count the allocator's state moves by a few hundred
instructions; docs/results.md), so a change larger than ``threshold`` (default 1%) is a change
in the work done: ``slower`` (more instructions: a regression, whatever the timings say) or
``faster``; ``unchanged`` otherwise (the one :class:`~bench.measure.stats.Verdict` vocabulary).
The functions whose self counts moved most are named, so the report says *where* the extra
work is.

The ``instructions`` section that ``python -m bench instructions`` (and the ``instructions``
suite) write beside the benchmarks is read and checked by :mod:`bench.regress.benchjson` (schema in
:mod:`bench.instructions.count`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.measure.stats import Verdict

DEFAULT_INSTRUCTIONS_THRESHOLD = 0.01


@dataclass(frozen=True)
class InstructionComparison:
    name: str  # e.g. "step[resident]"
    per: str  # "fetch" | "step"
    base: float  # instructions per call
    cand: float
    verdict: Verdict
    moved: list[tuple[str, int, int]] = field(default_factory=list)  # (function, base, cand)

    @property
    def ratio(self) -> float:
        return self.cand / self.base

    @property
    def change(self) -> float:
        return self.cand - self.base


def _moved(base: dict[str, int], cand: dict[str, int], top: int) -> list[tuple[str, int, int]]:
    """The functions whose self counts changed most (a function absent on one side counts 0:
    it was below the saved top functions there)."""
    names = set(base) | set(cand)
    changed = [(n, base.get(n, 0), cand.get(n, 0)) for n in names if base.get(n, 0) != cand.get(n, 0)]
    changed.sort(key=lambda row: (-abs(row[2] - row[1]), row[0]))
    return changed[:top]


def compare_instructions(base: dict[str, dict[str, Any]], cand: dict[str, dict[str, Any]],
                         threshold: float = DEFAULT_INSTRUCTIONS_THRESHOLD, top: int = 3
                         ) -> tuple[list[InstructionComparison], list[str], list[str]]:
    """Compare counts by name -> (comparisons, only in base, only in candidate)."""
    if not 0 < threshold < 10:
        raise ValueError(f"--instructions-threshold must be a fraction like 0.01, got {threshold}")
    results = []
    for name in (n for n in base if n in cand):
        b, c = float(base[name]["instructions"]), float(cand[name]["instructions"])
        ratio = c / b
        verdict = (Verdict.SLOWER if ratio > 1 + threshold
                   else Verdict.FASTER if ratio < 1 / (1 + threshold) else Verdict.UNCHANGED)
        moved = _moved(base[name].get("functions", {}), cand[name].get("functions", {}), top) \
            if verdict != Verdict.UNCHANGED else []
        results.append(InstructionComparison(name, str(base[name].get("per", "")), b, c, verdict, moved))
    return (results, [n for n in base if n not in cand], [n for n in cand if n not in base])


def instruction_lines(results: list[InstructionComparison], threshold: float, markdown: bool) -> list[str]:
    """The counts' table and the functions that moved, as text lines."""
    import pandas as pd

    rows = [{"counted": r.name, "base": f"{r.base:,.0f}", "cand": f"{r.cand:,.0f}",
             "change": f"{r.change:+,.0f} ({(r.ratio - 1) * 100:+.2f}%)",
             "verdict": r.verdict.upper() if r.verdict == Verdict.SLOWER else str(r.verdict)}
            for r in results]
    frame = pd.DataFrame(rows)
    lines = [("### " if markdown else "") + "Instructions (callgrind, exact; per fetch / per step)",
             "", f"Rule: slower = count above {1 + threshold:.3g}x the baseline's (unchanged code "
             "counted in two processes: steps within 0.01%, small fetches within ~0.4%).", "",
             frame.to_markdown(index=False) if markdown else frame.to_string(index=False)]
    for r in results:
        if r.moved:
            lines += ["", f"{r.name}: functions whose counts moved most (self instructions per call):"]
            lines += [f"  {'-' if markdown else ''} {fn}: {b:,} -> {c:,} ({c - b:+,})"
                      for fn, b, c in r.moved]
    return lines
