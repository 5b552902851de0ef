"""The regression decision on synthetic samples with known answers, and `bench compare`'s CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.compare import Rule, compare, decide, ratio_ci
from bench.results import Benchmark

rng = np.random.default_rng(42)


def samples(center: float, spread: float, n: int = 20) -> list[float]:
    return list(center * (1 + spread * rng.standard_normal(n)))


def test_identical_samples_are_unchanged():
    base = samples(10.0, 0.02)
    assert decide(base, list(base))[0] == "unchanged"


def test_twenty_percent_slower_with_small_spread_is_slower():
    verdict, ratio, p, (low, _) = decide(samples(10.0, 0.02), samples(12.0, 0.02))
    assert low > 1
    assert verdict == "slower" and ratio == pytest.approx(1.2, rel=0.03) and p < 0.01


def test_faster_is_faster():
    assert decide(samples(10.0, 0.02), samples(8.0, 0.02))[0] == "faster"


def test_small_significant_shift_below_threshold_is_unchanged():
    base = samples(10.0, 0.002, 40)
    verdict, ratio, p, _ = decide(base, [x * 1.02 for x in base])
    assert p < 0.01 and ratio < 1.05 and verdict == "unchanged"


@pytest.mark.parametrize("seed", range(50))
def test_huge_spread_is_never_slower(seed):
    """Even a candidate 30% slower is not called slower when the spread is 80%: noisy."""
    r = np.random.default_rng(seed)
    base = list(10 * np.exp(r.normal(0, 0.6, 8)))
    cand = list(13 * np.exp(r.normal(0, 0.6, 8)))
    assert decide(base, cand)[0] == "noisy"


def test_spread_guard_can_be_relaxed():
    base, cand = samples(10.0, 0.4, 30), samples(20.0, 0.4, 30)
    assert decide(base, cand)[0] == "noisy"
    assert decide(base, cand, Rule(max_spread=2.0))[0] == "slower"


def test_too_few_samples_is_noisy():
    assert decide([1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0])[0] == "noisy"
    assert decide([1.0] * 3, [2.0] * 3, Rule(min_samples=3))[0] == "noisy"  # p >= 0.05


def test_five_per_side_can_reach_alpha():
    assert decide([1.0, 1.01, 0.99, 1.0, 1.02], [1.3, 1.31, 1.29, 1.3, 1.32])[0] == "slower"


def test_ratio_interval_contains_the_ratio():
    base, cand = samples(10, 0.05), samples(11, 0.05)
    low, high = ratio_ci(base, cand)
    assert low < np.median(cand) / np.median(base) < high


def test_counter_changes_are_reported_exactly():
    base = [Benchmark("s", "step", (1.0,) * 6, extra_info={"op_calls_per_step": 715.2, "x": 1})]
    cand = [Benchmark("s", "step", (1.0,) * 6, extra_info={"op_calls_per_step": 915.2, "x": 2})]
    (result,), _, _ = compare(base, cand)
    assert result.counters == {"op_calls_per_step": (715.2, 915.2)}


def test_benchmarks_in_one_file_only_are_listed():
    a = [Benchmark("a", "g", (1.0,) * 5), Benchmark("b", "g", (1.0,) * 5)]
    c = [Benchmark("b", "g", (1.0,) * 5), Benchmark("c", "g", (1.0,) * 5)]
    results, only_base, only_cand = compare(a, c)
    assert [r.name for r in results] == ["b"] and only_base == ["a"] and only_cand == ["c"]


def _write(path: Path, data: dict[str, list[float]], counters: dict | None = None) -> Path:
    doc = {"machine_info": {}, "benchmarks": [
        {"name": n, "group": "step", "params": {}, "extra_info": counters or {},
         "stats": {"data": d, "median": float(np.median(d))}} for n, d in data.items()]}
    path.write_text(json.dumps(doc))
    return path


def _compare(*args) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench", "compare", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_cli_exit_codes_and_markdown(tmp_path: Path):
    base = _write(tmp_path / "a.json", {"t[x]": samples(10, 0.01), "t[y]": samples(5, 0.01)},
                  {"op_calls_per_step": 700})
    slow = _write(tmp_path / "b.json", {"t[x]": samples(13, 0.01), "t[y]": samples(5, 0.01)},
                  {"op_calls_per_step": 900})
    same = _write(tmp_path / "c.json", {"t[x]": samples(10, 0.01), "t[y]": samples(5, 0.01)},
                  {"op_calls_per_step": 700})
    md = tmp_path / "table.md"
    proc = _compare(base, slow, "--markdown", md)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "REGRESSION: 1 benchmark(s) slower: t[x]" in proc.stdout
    assert "op_calls 700->900" in proc.stdout
    assert "| benchmark" in md.read_text() and "SLOWER" in md.read_text()
    proc = _compare(base, same)
    assert proc.returncode == 0 and "No regression." in proc.stdout


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        (None, "file not found"),
        ("not json", "not JSON"),
        ('{"hello": 1}', "not a pytest-benchmark JSON file"),
        ('{"benchmarks": [{"name": "t", "stats": {"median": 1.0}}]}', "--benchmark-save-data"),
    ],
)
def test_cli_bad_input(tmp_path: Path, content: str | None, phrase: str):
    good = _write(tmp_path / "good.json", {"t": [1.0] * 5})
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    proc = _compare(good, bad)
    assert proc.returncode == 2 and phrase in proc.stderr and "Traceback" not in proc.stderr
