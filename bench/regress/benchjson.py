"""Reading pytest-benchmark JSON files: raw per-round times, parameters and extra_info."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from bench.measure import stats


class ResultsError(ValueError):
    """A benchmark file is missing or not what it should be; the message says the fix."""


@dataclass(frozen=True)
class Benchmark:
    name: str  # e.g. "test_step[naive]"
    group: str
    data: tuple[float, ...]  # seconds per round, raw
    params: dict = field(default_factory=dict)
    extra_info: dict = field(default_factory=dict)

    @property
    def median(self) -> float:
        return stats.median(self.data)

    @property
    def iqr(self) -> float:
        return stats.iqr(self.data)


def load(path: str | Path, *, need_data: bool = True) -> tuple[dict, list[Benchmark]]:
    """Load one pytest-benchmark JSON file -> (machine_info, benchmarks)."""
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"{path}: file not found")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: not JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
        raise ResultsError(f"{path}: not a pytest-benchmark JSON file (no 'benchmarks' list)")
    out = []
    for entry in doc["benchmarks"]:
        data = entry.get("stats", {}).get("data")
        if not data:
            if need_data:
                raise ResultsError(
                    f"{path}: benchmark {entry.get('name')!r} has no raw per-round data; "
                    "run pytest with --benchmark-save-data (or --benchmark-json=FILE)")
            data = [entry.get("stats", {}).get("median", float("nan"))]
        out.append(Benchmark(name=entry["name"], group=entry.get("group") or "",
                             data=tuple(data), params=entry.get("params") or {},
                             extra_info=entry.get("extra_info") or {}))
    return doc.get("machine_info", {}), out


def latest(storage: Path) -> Path:
    """The newest autosaved run under ``storage`` (pytest-benchmark's NNNN_*.json numbering)."""
    files = [p for p in storage.glob("*/*.json") if re.match(r"\d{4}_", p.name)]
    if not files:
        raise ResultsError(f"no saved benchmark runs under {storage}: run `nox -s bench` first")
    return max(files, key=lambda p: (int(p.name[:4]), p.stat().st_mtime))
