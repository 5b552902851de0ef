"""The instruction-count verdict: exact numbers, so no statistics -- a change beyond a threshold.

Counts of unchanged code, taken in two processes, agree within 0.01% for a training step and
within ~0.4% for a small fetch (whose count the allocator's state moves by a few hundred
instructions; README), so a change larger than ``threshold`` (default 1%) is a change in the
work done: ``more work`` (a regression, whatever
the timings say) or ``less work``; ``same work`` otherwise. The functions whose self counts
moved most are named, so the report says *where* the extra work is.

The ``instructions`` section that ``python -m bench cost`` (and the ``cost`` suite) write
beside the benchmarks is read and checked by :mod:`bench.regress.benchjson` (schema in
:mod:`bench.measure.instructions`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

COUNT_VERDICTS = ("more work", "less work", "same work")
DEFAULT_COUNT_THRESHOLD = 0.01


@dataclass(frozen=True)
class CountComparison:
    name: str  # e.g. "step[resident]"
    per: str  # "fetch" | "step"
    base: float  # instructions per call
    cand: float
    verdict: str
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


def compare_counts(base: dict[str, dict[str, Any]], cand: dict[str, dict[str, Any]],
                   threshold: float = DEFAULT_COUNT_THRESHOLD, top: int = 3
                   ) -> tuple[list[CountComparison], list[str], list[str]]:
    """Compare counts by name -> (comparisons, only in base, only in candidate)."""
    if not 0 < threshold < 10:
        raise ValueError(f"--count-threshold must be a fraction like 0.01, got {threshold}")
    results = []
    for name in (n for n in base if n in cand):
        b, c = float(base[name]["instructions"]), float(cand[name]["instructions"])
        ratio = c / b
        verdict = ("more work" if ratio > 1 + threshold
                   else "less work" if ratio < 1 / (1 + threshold) else "same work")
        moved = _moved(base[name].get("functions", {}), cand[name].get("functions", {}), top) \
            if verdict != "same work" else []
        results.append(CountComparison(name, str(base[name].get("per", "")), b, c, verdict, moved))
    return (results, [n for n in base if n not in cand], [n for n in cand if n not in base])


def count_lines(results: list[CountComparison], threshold: float, markdown: bool) -> list[str]:
    """The counts' table and the functions that moved, as text lines."""
    import pandas as pd

    rows = [{"counted": r.name, "base": f"{r.base:,.0f}", "cand": f"{r.cand:,.0f}",
             "change": f"{r.change:+,.0f} ({(r.ratio - 1) * 100:+.2f}%)",
             "verdict": r.verdict.upper() if r.verdict == "more work" else r.verdict}
            for r in results]
    frame = pd.DataFrame(rows)
    lines = [("### " if markdown else "") + "Instructions (callgrind, exact; per fetch / per step)",
             "", f"Rule: more work = count above {1 + threshold:.3g}x the baseline's (unchanged code "
             "counted in two processes: steps within 0.01%, small fetches within ~0.4%).", "",
             frame.to_markdown(index=False) if markdown else frame.to_string(index=False)]
    for r in results:
        if r.moved:
            lines += ["", f"{r.name}: functions whose counts moved most (self instructions per call):"]
            lines += [f"  {'-' if markdown else ''} {fn}: {b:,} -> {c:,} ({c - b:+,})"
                      for fn, b, c in r.moved]
    return lines
