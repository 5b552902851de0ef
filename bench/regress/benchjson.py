"""Reading pytest-benchmark JSON files: raw per-round times, parameters and extra_info, and the
instruction counts (``instructions`` section) that ``bench instructions`` adds."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.measure import stats


class BenchFileError(ValueError):
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


def _entry(path: Path, i: int, entry: object, need_data: bool) -> Benchmark:
    """One benchmark entry, checked: a name, stats, and raw times that are finite and positive."""
    where = f"{path}: benchmark #{i + 1}"
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
        raise BenchFileError(f"{where} has no name: not a pytest-benchmark entry")
    where = f"{path}: benchmark {entry['name']!r}"
    stats_ = entry.get("stats")
    if not isinstance(stats_, dict):
        raise BenchFileError(f"{where} has no 'stats' object: the file is damaged; benchmark again")
    data = stats_.get("data")
    if not data:
        if need_data:
            raise BenchFileError(f"{where} has no raw per-round data; run pytest with "
                               "--benchmark-save-data (or --benchmark-json=FILE)")
        data = [stats_.get("median")]
    if not isinstance(data, list):
        raise BenchFileError(f"{where}: 'stats.data' is a {type(data).__name__}, not a list of seconds")
    for k, value in enumerate(data):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BenchFileError(f"{where}: round {k + 1} is {value!r}, not a number of seconds")
        if not math.isfinite(value) or value <= 0:
            raise BenchFileError(f"{where}: round {k + 1} is {value!r}; a time must be a positive finite "
                               "number: the file is damaged or was edited, benchmark again")
    return Benchmark(name=entry["name"], group=entry.get("group") or "", data=tuple(map(float, data)),
                     params=entry.get("params") or {}, extra_info=entry.get("extra_info") or {})


def read_section(path: Path, doc: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    """The checked ``counts`` of a file's instructions section, or None when it has none."""
    section = doc.get("instructions")
    if section is None:
        return None
    where = f"{path}: instructions"
    if not isinstance(section, dict) or not isinstance(section.get("counts"), dict):
        raise BenchFileError(f"{where}: not an instructions section (no 'counts' object); count again "
                           "with python -m bench instructions")
    for name, entry in section["counts"].items():
        value = entry.get("instructions") if isinstance(entry, dict) else None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                or value <= 0:
            raise BenchFileError(f"{where} {name!r}: instructions is {value!r}; a count must be a "
                               "positive number: the file is damaged or was edited, count again")
        functions = entry.get("functions", {})
        if not isinstance(functions, dict) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in functions.values()):
            raise BenchFileError(f"{where} {name!r}: 'functions' must map names to whole counts")
    return section["counts"]


@dataclass(frozen=True)
class Loaded:
    """One checked file: its machine, its timed benchmarks, its instruction counts (if any)."""

    machine: dict
    benchmarks: list[Benchmark]
    counts: dict[str, dict] | None  # the 'instructions' section's counts (bench instructions)


def load_file(path: str | Path, *, need_data: bool = True) -> Loaded:
    """Load and check one pytest-benchmark JSON file, with the instruction counts it may hold.

    A file may hold only counts (``python -m bench instructions --json``); one with neither benchmarks
    nor counts is refused. Bad data raises BenchFileError naming the file and the entry.
    """
    path = Path(path)
    if not path.is_file():
        raise BenchFileError(f"{path}: file not found")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BenchFileError(f"{path}: not JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
        raise BenchFileError(f"{path}: not a pytest-benchmark JSON file (no 'benchmarks' list)")
    counts = read_section(path, doc)
    if not doc["benchmarks"] and not counts:
        raise BenchFileError(f"{path}: holds no benchmarks (did every benchmark fail or get deselected?)")
    out = [_entry(path, i, entry, need_data) for i, entry in enumerate(doc["benchmarks"])]
    machine = doc.get("machine_info")
    return Loaded(machine if isinstance(machine, dict) else {}, out, counts)


def load(path: str | Path, *, need_data: bool = True) -> tuple[dict, list[Benchmark]]:
    """Load one pytest-benchmark JSON file -> (machine_info, benchmarks); bad data raises BenchFileError."""
    loaded = load_file(path, need_data=need_data)
    if not loaded.benchmarks:
        raise BenchFileError(f"{path}: holds only instruction counts, no timed benchmarks")
    return loaded.machine, loaded.benchmarks
