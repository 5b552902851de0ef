"""Tables of a Result: variants.csv, summary.csv, and the frames the other renderers show."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.measure import derive, stats
from bench.measure.result import Result

FOOTPRINT_COLUMNS = ("samples_per_s", "samples_per_s_ci_low", "samples_per_s_ci_high", "peak_mb",
                "gflop_per_step", "mfu")
VARIANT_COLUMNS = ("variant", "median_ms", "speedup_vs_baseline", "ci_low", "ci_high", "verdict",
                   "vs_bound", "vs_bound_ci_low", "vs_bound_ci_high", *FOOTPRINT_COLUMNS,
                   "not_measurable_because")
# For a workload whose variants are ordered (each one a step on from the one before): each vs it.
PREVIOUS_COLUMNS = ("vs_previous", "vs_previous_ci_low", "vs_previous_ci_high", "verdict_vs_previous")
NAN = float("nan")


def _fields(r: stats.Ratio | None) -> tuple[float, float, float]:
    """value, low, high -- NaN where there is no ratio or it is not measurable on this run."""
    if r is None or not r.measurable:
        return NAN, NAN, NAN
    return r.value, r.low, r.high


def variants_frame(result: Result) -> pd.DataFrame:
    """One row per measured variant: its median step, speedup vs the baseline with the interval,
    the verdict, its compute-only bound ratio; for ordered variants also vs the previous one."""
    rows = []
    for row in derive.rows(result):
        up, bound, prev = _fields(row.speedup), _fields(row.efficiency), _fields(row.vs_previous)
        caveats = [r.caveat for r in (row.speedup, row.efficiency, row.vs_previous)
                   if r is not None and r.caveat]
        rows.append({
            "variant": row.variant, "median_ms": row.median_ms,
            "speedup_vs_baseline": up[0], "ci_low": up[1], "ci_high": up[2], "verdict": row.verdict,
            "vs_bound": bound[0], "vs_bound_ci_low": bound[1], "vs_bound_ci_high": bound[2],
            **footprint_fields(result, row.variant),
            "not_measurable_because": "; ".join(dict.fromkeys(caveats)),
            "vs_previous": prev[0], "vs_previous_ci_low": prev[1], "vs_previous_ci_high": prev[2],
            "verdict_vs_previous": row.verdict_vs_previous,
        })
    columns = [*VARIANT_COLUMNS, *(PREVIOUS_COLUMNS if result.ordered else ())]
    return pd.DataFrame(rows, columns=columns)


def footprint_fields(result: Result, name: str) -> dict[str, float]:
    """Throughput with its interval, peak memory, FLOPs and MFU of one variant (NaN: not measured)."""
    value, low, high = _fields(derive.throughput(result, name))

    def nan(x: float | None) -> float:
        return NAN if x is None else x

    return {"samples_per_s": value, "samples_per_s_ci_low": low, "samples_per_s_ci_high": high,
            "peak_mb": nan(derive.peak_mb(result, name)),
            "gflop_per_step": nan(derive.gflop_per_step(result, name)), "mfu": nan(derive.mfu(result, name)),
            **_tensors(result, name)}


def _tensors(result: Result, name: str) -> dict[str, float]:
    """The tensors at the step's peak: their sum and each part (MB)."""
    parts = derive.breakdown_mb(result, name)
    if parts is None:
        return {}
    return {"tensors_peak_mb": sum(parts.values()), **{f"tensors_{derive.column(p)}_mb": v
                                                       for p, v in parts.items()}}


def summary_frame(result: Result) -> pd.DataFrame:
    """One row per measured variant: raw samples reduced to medians, shares, ratios, counters."""
    rows = []
    base = result.baseline
    env = result.machine
    tools = sorted({t for m in result.measurements for t in m.profiles})
    parts = list(dict.fromkeys(p for name in result.measured for p in derive.shares(result, name)))
    for name in result.measured:
        per_step = derive.samples(result, name)
        up = derive.speedup(result, name, base) if base else None
        m = result[name]
        measured = derive.epoch_measured(result, name)
        shares = derive.shares(result, name)
        value, low, high = _fields(up)
        row: dict[str, object] = {
            "variant": name, "status": m.status, "device": m.device,
            result.spec.samples_are: len(per_step),
            "step_ms_median": stats.median(per_step) * 1e3, "step_ms_iqr": stats.iqr(per_step) * 1e3,
            **{f"{p}_share": shares.get(p, NAN) for p in parts},
            "epoch_s_est": derive.epoch_estimate(result, name),
            "epoch_s_measured": stats.median(measured) if measured else None,
            **footprint_fields(result, name), "max_rss_mb": m.footprint.max_rss_mb or NAN,
            "speedup_vs_baseline": value, "speedup_ci_low": low, "speedup_ci_high": high,
        }
        for tool in tools:
            if tool in m.profiles:
                o = _fields(derive.overhead(result, name, tool))
                row |= {f"{tool}_overhead": o[0], f"{tool}_overhead_ci_low": o[1],
                        f"{tool}_overhead_ci_high": o[2]}
        row |= m.counters
        row |= {"description": m.description, "cpu": env.cpu,
                "threads": env.threads, "torch": env.torch, "gpu": env.gpu, "created": result.created}
        rows.append(row)
    if not rows:  # nothing measured (out of memory before the first measured step): each one's status
        rows = [{"variant": m.name, "status": m.status} for m in result.measurements]
    return pd.DataFrame(rows)


def _csv(frame: pd.DataFrame, path: Path) -> list[Path]:
    frame.to_csv(path, index=False, float_format="%.6g")
    return [path]


def write_variants(result: Result, out: Path) -> list[Path]:
    return _csv(variants_frame(result), out / "variants.csv")


def write_summary_csv(result: Result, out: Path) -> list[Path]:
    return _csv(summary_frame(result), out / "summary.csv")

