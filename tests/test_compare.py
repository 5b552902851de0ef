"""The regression decision on synthetic samples with known answers, and `bench compare`'s CLI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bench.measure.rule import Rule, decide, ratio_ci
from bench.regress.benchjson import Benchmark
from bench.regress.compare import compare_benchmarks as compare
from tests.helpers import run_bench

rng = np.random.default_rng(42)


def samples(center: float, spread: float, n: int = 20) -> list[float]:
    return list(center * (1 + spread * rng.standard_normal(n)))


def test_identical_samples_are_unchanged():
    base = samples(10.0, 0.02)
    assert decide(base, list(base)).verdict == "unchanged"


def test_twenty_percent_slower_with_small_spread_is_slower():
    c = decide(samples(10.0, 0.02), samples(12.0, 0.02))
    assert c.ci[0] > 1
    assert c.verdict == "slower" and c.ratio == pytest.approx(1.2, rel=0.03) and c.p_slower < 0.01


def test_faster_is_faster():
    assert decide(samples(10.0, 0.02), samples(8.0, 0.02)).verdict == "faster"


def test_small_significant_shift_below_threshold_is_unchanged():
    base = samples(10.0, 0.002, 40)
    c = decide(base, [x * 1.02 for x in base])
    assert c.p_slower < 0.01 and c.ratio < 1.05 and c.verdict == "unchanged"


def _lognormal(r: np.random.Generator, center: float, sigma: float, n: int) -> list[float]:
    return list(center * np.exp(r.normal(0, sigma, n)))


@pytest.mark.parametrize(("sigma", "n"), [(0.6, 8), (0.1, 8), (0.3, 10)])
def test_false_alarm_rate_on_pure_noise_stays_below_alpha(sigma, n):
    """400 A/A comparisons of identical noise: 'slower' at most as often as alpha (1%) allows."""
    verdicts = []
    for seed in range(400):
        r = np.random.default_rng(seed)
        verdicts.append(decide(_lognormal(r, 10, sigma, n), _lognormal(r, 10, sigma, n)).verdict)
    assert verdicts.count("slower") <= 0.01 * len(verdicts)
    assert verdicts.count("faster") <= 0.01 * len(verdicts)
    if sigma >= 0.3:  # a wide spread says so instead of claiming "unchanged"
        assert verdicts.count("noisy") >= 0.9 * len(verdicts)


def test_large_shift_is_caught_even_with_wide_spread():
    """Doubling is visible through 40% noise: the interval must clear 1 + threshold."""
    r = np.random.default_rng(7)
    base, cand = _lognormal(r, 10, 0.1, 10), _lognormal(r, 20, 0.1, 10)
    base[0], cand[0] = 4.0, 60.0  # outliers widen the IQR past max_spread on both sides
    base[1], cand[1] = 25.0, 8.0
    c = decide(base, cand)
    assert c.verdict == "slower" and c.ci[0] > 1.05


def test_spread_guard_can_be_relaxed():
    """A 20% shift in 30% noise whose interval dips below 1.05: noisy, unless max_spread is raised."""
    r = np.random.default_rng(4)
    base, cand = _lognormal(r, 10, 0.3, 30), _lognormal(r, 12, 0.3, 30)
    low, _ = ratio_ci(base, cand)
    assert 1 < low < 1.05  # the case the wide-spread guard is for
    assert decide(base, cand).verdict == "noisy"
    assert decide(base, cand, Rule(max_spread=2.0)).verdict == "slower"


def test_too_few_samples_is_noisy():
    assert decide([1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0]).verdict == "noisy"
    assert decide([1.0] * 3, [2.0] * 3, Rule(min_samples=3)).verdict == "noisy"  # p >= 0.05


def test_five_per_side_can_reach_alpha():
    assert decide([1.0, 1.01, 0.99, 1.0, 1.02], [1.3, 1.31, 1.29, 1.3, 1.32]).verdict == "slower"


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
    return run_bench("compare", *args)


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
    assert "REGRESSION: t[x] slower" in proc.stdout
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


def test_cli_rejects_a_bad_rule(tmp_path: Path):
    good = _write(tmp_path / "good.json", {"t": [1.0] * 5})
    proc = _compare(good, good, "--max-spread", "0")
    assert proc.returncode == 2 and "max_spread must be positive" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("benchmarks", "phrase"),
    [
        ([], "holds no benchmarks"),
        ([{"group": "g", "stats": {"data": [1.0] * 5}}], "benchmark #1 has no name"),
        ([{"name": "t", "stats": None}], "benchmark 't' has no 'stats' object"),
        ([{"name": "t", "stats": {"data": [1.0, "fast", 1.0, 1.0, 1.0]}}], "round 2 is 'fast'"),
        ([{"name": "t", "stats": {"data": [1.0, 1.0, float("nan"), 1.0, 1.0]}}], "round 3 is nan"),
        ([{"name": "t", "stats": {"data": [1.0, -0.5, 1.0, 1.0, 1.0]}}], "round 2 is -0.5"),
        ([{"name": "t", "stats": {"data": [0.0, 1.0, 1.0, 1.0, 1.0]}}], "round 1 is 0.0"),
        ([{"name": "t", "stats": {"data": 3.0}}], "'stats.data' is a float"),
    ],
)
def test_bad_data_is_refused_with_exit_2(tmp_path: Path, benchmarks: list, phrase: str):
    good = _write(tmp_path / "good.json", {"t": samples(1.0, 0.01)})
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"machine_info": {}, "benchmarks": benchmarks}))
    for args in ((good, bad), (bad, good)):
        proc = _compare(*args)
        assert proc.returncode == 2, proc.stdout
        assert phrase in proc.stderr and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_a_3x_slower_candidate_with_a_nan_round_is_not_a_pass(tmp_path: Path):
    base = _write(tmp_path / "a.json", {"t": samples(10, 0.01)})
    slow = samples(30, 0.01)
    slow[4] = float("nan")
    cand = _write(tmp_path / "b.json", {"t": slow})
    proc = _compare(base, cand)
    assert proc.returncode == 2 and "round 5 is nan" in proc.stderr


def test_no_benchmark_in_common_is_refused(tmp_path: Path):
    a = _write(tmp_path / "a.json", {"t[x]": samples(1.0, 0.01)})
    b = _write(tmp_path / "b.json", {"t[y]": samples(1.0, 0.01)})
    proc = _compare(a, b)
    assert proc.returncode == 2 and "no benchmark in common" in proc.stderr


def test_noisy_is_its_own_exit_code_with_a_way_out(tmp_path: Path):
    a = _write(tmp_path / "a.json", {"t": [1.0, 1.1, 0.9]})
    b = _write(tmp_path / "b.json", {"t": [1.0, 1.2, 0.8]})
    proc = _compare(a, b)
    assert proc.returncode == 3
    assert "NO VERDICT" in proc.stdout and "more samples (`regress --processes`" in proc.stdout
    assert "No regression" not in proc.stdout


def test_markdown_into_a_missing_folder_is_exit_2(tmp_path: Path):
    a = _write(tmp_path / "a.json", {"t": samples(1.0, 0.01)})
    proc = _compare(a, a, "--markdown", tmp_path / "nowhere" / "t.md")
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_holm_adjusts_exactly():
    from bench.measure.rule import holm

    adjusted = holm([0.01, 0.04, float("nan"), 0.03])
    assert adjusted[0] == pytest.approx(0.03) and adjusted[3] == pytest.approx(0.06)
    assert adjusted[1] == pytest.approx(0.06) and np.isnan(adjusted[2])  # monotone; NaN not counted
    assert holm([0.5, 0.9]) == [1.0, 1.0]


def test_family_wise_false_alarms_stay_below_alpha():
    """60 comparisons of 20 benchmarks of pure noise each: a false `slower` anywhere in a
    comparison at most about alpha (1%) of the time."""
    r = np.random.default_rng(11)
    alarms = 0
    for _ in range(60):
        base = [Benchmark(f"b{i}", "g", tuple(_lognormal(r, 10, 0.05, 10))) for i in range(20)]
        cand = [Benchmark(f"b{i}", "g", tuple(_lognormal(r, 10, 0.05, 10))) for i in range(20)]
        results, _, _ = compare(base, cand)
        alarms += any(c.verdict == "slower" for c in results)
        assert all(c.family == 20 for c in results)
    assert alarms <= 1


def test_a_family_too_large_for_the_samples_is_noisy_and_says_how_many_are_needed():
    from bench.measure.rule import min_samples_for
    from bench.regress.compare import Judged, render

    assert min_samples_for(0.01) == 5 and min_samples_for(0.01, 10) == 7
    base = [Benchmark(f"b{i}", "g", (1.0, 1.01, 0.99, 1.0, 1.02)) for i in range(10)]
    cand = [Benchmark(f"b{i}", "g", (1.5, 1.51, 1.49, 1.5, 1.52)) for i in range(10)]
    results, _, _ = compare(base, cand)
    assert {c.verdict for c in results} == {"noisy"}  # 5 a side cannot reach 0.01 among 10
    text = render(Judged(results), Rule(), markdown=False)
    assert "needs at least 7 samples a side" in text and "Holm-adjusted over the 10" in text
