"""Tables of a Result: ladder.csv, summary.csv and the frames the other renderers show."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.measure import derive, stats
from bench.measure.result import Result

LADDER_COLUMNS = ("variant", "median_ms", "speedup_vs_baseline", "ci_low", "ci_high", "vs_previous",
                  "vs_previous_ci_low", "vs_previous_ci_high", "verdict_vs_previous")


def ladder_frame(result: Result) -> pd.DataFrame:
    rows = []
    for row in derive.ladder(result):
        prev = row.vs_previous
        rows.append({
            "variant": row.variant, "median_ms": row.median_ms,
            "speedup_vs_baseline": row.speedup.value, "ci_low": row.speedup.low,
            "ci_high": row.speedup.high,
            "vs_previous": prev.value if prev else float("nan"),
            "vs_previous_ci_low": prev.low if prev else float("nan"),
            "vs_previous_ci_high": prev.high if prev else float("nan"),
            "verdict_vs_previous": row.verdict_vs_previous,
        })
    return pd.DataFrame(rows, columns=list(LADDER_COLUMNS))


def summary_frame(result: Result) -> pd.DataFrame:
    """One row per measured variant: raw samples reduced to medians, shares, ratios, counters."""
    rows = []
    base = result.baseline
    env = result.machine
    tools = sorted({t for tt in result.profiles.values() for t in tt})
    for name in result.measured:
        per_step = derive.samples(result, name)
        up = derive.speedup(result, name, base) if base else None
        info = result.info.get(name, {})
        measured = derive.epoch_measured(result, name)
        row: dict[str, object] = {
            "variant": name, "device": info.get("device", ""), "rounds": len(per_step),
            "step_ms_median": stats.median(per_step) * 1e3, "step_ms_iqr": stats.iqr(per_step) * 1e3,
            **{f"{p}_share": s for p, s in derive.shares(result, name).items()},
            "epoch_s_est": derive.epoch_estimate(result, name),
            "epoch_s_measured": stats.median(measured) if measured else None,
            "samples_per_s": (info.get("batch_size") or float("nan")) / stats.median(per_step),
            "speedup_vs_baseline": up.value if up else None,
            "speedup_ci_low": up.low if up else None, "speedup_ci_high": up.high if up else None,
        }
        for tool in tools:
            if tool in result.profiles.get(name, {}):
                o = derive.overhead(result, name, tool)
                row |= {f"{tool}_overhead": o.value, f"{tool}_overhead_ci_low": o.low,
                        f"{tool}_overhead_ci_high": o.high}
        row |= result.counters.get(name, {})
        row |= {"data": info.get("data", ""), "cpu": env.cpu, "threads": env.threads,
                "torch": env.torch, "gpu": env.gpu, "created": result.created}
        rows.append(row)
    return pd.DataFrame(rows)


def write_ladder(result: Result, out: Path) -> list[Path]:
    path = out / "ladder.csv"
    ladder_frame(result).to_csv(path, index=False, float_format="%.6g")
    return [path]


def write_summary_csv(result: Result, out: Path) -> list[Path]:
    path = out / "summary.csv"
    summary_frame(result).to_csv(path, index=False, float_format="%.6g")
    return [path]
