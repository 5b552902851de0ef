"""Ratios, intervals and verdicts with exact numbers; statements that rank only what the
intervals support; the saved Result is lossless and refuses what is not one."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bench.measure import derive, stats
from bench.measure.result import Result, ResultError, ToolTiming
from bench.render import render_all, statements
from bench.render.tables import PREVIOUS_COLUMNS, VARIANT_COLUMNS, variants_frame
from tests.helpers import make_result, rounds


def test_ratio_of_paired_rounds_exact():
    r = stats.ratio([2, 4, 6, 8, 10], [1, 2, 3, 4, 5])
    assert r.value == 2.0 and r.low == 2.0 and r.high == 2.0  # every pair has ratio 2
    assert r.verdict == "slower" and stats.speed_verdict(r) == "faster"  # r: a ratio of times


def test_ratio_interval_holds_one_when_pairs_disagree():
    r = stats.ratio([1.1, 0.9, 1.05, 0.95, 1.0, 1.02], [1.0] * 6)
    # it holds 1 and reaches beyond +-5%: not measurable, never "unchanged"
    assert r.low < 1 < r.high and r.high > 1.05 and r.verdict == "noisy"
    assert stats.speed_verdict(stats.ratio([1.0] * 5, [2.0, 2.1, 1.9, 2.0, 2.05])) == "slower"


def test_too_few_samples_give_no_interval():
    r = stats.ratio([2, 2, 2, 2], [1, 1, 1, 1])
    assert r.value == 2.0 and math.isnan(r.low) and r.verdict == "noisy"
    assert r.ci() == "too few rounds for an interval"
    with pytest.raises(ValueError, match="equal lengths"):
        stats.ratio([1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 6])


def test_ordered_variants_rows_and_verdicts():
    rng = np.random.default_rng(0)
    noise = lambda c: list(c * (1 + 0.01 * rng.standard_normal(10)))  # noqa: E731
    result = make_result({"slow": noise(20), "fast": noise(10), "same": noise(10)}, ordered=True)
    frame = variants_frame(result)
    assert tuple(frame.columns) == (*VARIANT_COLUMNS, *PREVIOUS_COLUMNS)
    assert list(frame["verdict_vs_previous"]) == ["", "faster", "unchanged"]
    assert frame.loc[1, "speedup_vs_baseline"] == pytest.approx(2.0, rel=0.03)
    assert frame.loc[1, "ci_low"] > 1.9
    assert frame.loc[2, "vs_previous_ci_low"] < 1 < frame.loc[2, "vs_previous_ci_high"]


def test_headline_names_the_tied_group_without_ranking_it():
    rng = np.random.default_rng(1)
    noise = lambda c: list(c * (1 + 0.02 * rng.standard_normal(12)))  # noqa: E731
    result = make_result({"base": noise(20), "a": noise(10), "b": noise(10)}, bound=noise(10))
    text = statements.headline(result)
    assert text.startswith("Fastest: `a` and `b`, with no measurable difference among them")
    assert "`base` spends 50% of its step in `data`" in text
    assert "no measurable data cost is left" in text


def test_headline_ranks_a_clear_winner_and_admits_a_tie_with_the_baseline():
    clear = make_result({"base": [20, 21, 19, 20, 20.5], "fast": [10, 10.5, 9.5, 10, 10.2]})
    assert statements.fastest(clear).startswith("Fastest: `fast`")
    tie = make_result({"base": [10, 11, 9, 10, 10.5], "other": [10.5, 10, 9.6, 10.9, 10]})
    assert statements.fastest(tie) == (
        "`base` has the lowest median step (10.00 ms per step). `other` could not be ranked against "
        "`base`: not measurable on this run (the interval holds 1 and reaches beyond +-5%).")


def test_an_overhead_is_none_only_within_5_percent_and_else_not_measured():
    r = make_result({"a": [10] * 5})
    r["a"].profiles = {"cprofile": ToolTiming(plain=rounds([10, 11, 9, 10, 10]),
                                              tool=rounds([10.5, 10, 9.5, 10.2, 9.9]))}
    wide = statements.overhead_text(derive.overhead(r, "a", "cprofile"))
    assert wide.startswith("1.00x (95% CI") and "not measured to 5% on this run" in wide
    r["a"].profiles["kineto"] = ToolTiming(plain=rounds([10, 10.1, 9.9, 10, 10.05]),
                                           tool=rounds([10.05, 10, 9.95, 10.1, 10]))
    assert statements.overhead_text(derive.overhead(r, "a", "kineto")).startswith("no overhead beyond 5%")
    r["a"].profiles["lines"] = ToolTiming(plain=rounds([10] * 5), tool=rounds([15, 15.2, 14.8, 15, 15]))
    assert statements.overhead_text(derive.overhead(r, "a", "lines")).startswith("1.50x (95% CI")


def test_noise_warning_when_the_intervals_are_wide():
    calm = make_result({"a": [10, 14, 7, 12, 9, 15], "b": [5, 7, 3.5, 6, 4.5, 7.5]})  # drift, but paired
    text = " ".join(statements.noise(calm))
    assert "Warning" not in text and "about ±0.0% wide" in text
    loud = make_result({"a": [10, 14, 7, 12, 9, 15], "b": [7, 5, 6, 4, 7.5, 3.5]})
    assert any("Warning: the machine was noisy" in s for s in statements.noise(loud))


def test_save_load_is_lossless_and_rerenders_identically(tmp_path: Path):
    r = make_result({"a": [20, 21, 19, 20, 22], "b": [10, 11, 9, 10, 10]}, bound=[9.5, 10, 9, 9.8, 9.9])
    r["a"].epochs = rounds([20])
    r["a"].counters = {"op_calls_per_step": 700.0}
    r["b"].profiles = {"kineto": ToolTiming(rounds([10] * 5), rounds([12] * 5))}
    r["b"].artifacts = ["b.prof"]
    r.orders = [["a", "b", "b:bound"]]
    path = r.save(tmp_path / "run.json")
    again = Result.load(path)
    assert again.to_dict() == r.to_dict()
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir(), second.mkdir()
    render_all(r, first)
    render_all(again, second)
    for name in ("summary.md", "summary.csv", "variants.csv"):
        assert (first / name).read_text() == (second / name).read_text()


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        (None, "no such file"),
        ("{not json", "not JSON"),
        ('{"benchmarks": []}', "not a vaebench run"),
        ('{"schema": "vaebench.run/1"}', "broken field"),
    ],
)
def test_load_refuses_what_is_not_a_run(tmp_path: Path, content: str | None, phrase: str):
    path = tmp_path / "run.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ResultError, match=phrase):
        Result.load(path)


def test_load_refuses_a_non_positive_time(tmp_path: Path):
    doc = make_result({"a": [10] * 5}).to_dict()
    doc["measurements"][0]["samples"][2]["seconds"] = -1.0
    path = tmp_path / "run.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ResultError, match="non-positive or non-finite"):
        Result.load(path)


def test_ratios_pair_samples_by_round_when_a_variant_skips_rounds():
    r = make_result({"a": [10, 20, 10, 20, 10, 20, 10, 20, 10, 20], "b": [5] * 10})
    for i, t in enumerate(r["a"].samples):
        t.round = i
    r["b"].samples = [t for t in rounds([5] * 5)]
    for k, t in enumerate(r["b"].samples):
        t.round = 2 * k  # b joined every other round: the rounds where a took 10 ms
    a, b = derive.paired(r, "a", "b")
    assert a == pytest.approx([0.01] * 5) and b == pytest.approx([0.005] * 5)
    assert derive.speedup(r, "b", "a").value == pytest.approx(2.0)


def test_a_comparison_that_is_not_ordered_has_no_ladder_words_or_columns(tmp_path: Path):
    rng = np.random.default_rng(3)
    noise = lambda c: list(c * (1 + 0.01 * rng.standard_normal(12)))  # noqa: E731
    r = make_result({"lstm": noise(20), "transformer": noise(12), "adamw": noise(19)})
    frame = variants_frame(r)
    assert tuple(frame.columns) == VARIANT_COLUMNS and "vs_previous" not in frame.columns
    assert list(frame["verdict"]) == ["", "faster", "faster"]  # each against the baseline only
    render_all(r, tmp_path)
    md = (tmp_path / "summary.md").read_text()
    assert "vs_previous" not in (tmp_path / "variants.csv").read_text()
    for word in ("ladder", "vs previous", "straddles 1.05", "within 5%", "bound"):
        assert word not in md.lower(), word
    ordered = make_result({"a": noise(20), "b": noise(10)}, ordered=True)
    assert "vs_previous" in variants_frame(ordered).columns


def test_a_bound_belongs_to_its_own_variant():
    r = make_result({"base": [20.0] * 12, "mid": [15.0] * 12, "fast": [10.0] * 12}, bound=[9.0] * 12)
    frame = variants_frame(r)
    assert frame["vs_bound"].isna().tolist() == [True, True, False]  # only `fast` asked for one
    assert frame.loc[2, "vs_bound"] == pytest.approx(10 / 9)
    assert "`fast` runs at 1.11" in statements.efficiency(r) and "`mid`" not in statements.efficiency(r)


def test_an_overhead_below_one_is_never_a_finding():
    r = make_result({"a": [10] * 5})
    faster = [6.0, 6.1, 5.9, 6.0, 6.05, 5.95, 6.0, 6.1]
    r["a"].profiles = {"lines": ToolTiming(plain=rounds([10.0, 10.1, 9.9, 10, 10.2, 9.8, 10, 10.1]),
                                           tool=rounds(faster))}
    text = statements.overhead_text(derive.overhead(r, "a", "lines"))
    assert text.startswith("biased measurement: 0.60x") and "cannot make a step faster" in text


def test_a_spread_too_wide_for_an_interval_is_not_measurable():
    rng = np.random.default_rng(5)
    wild = list(10 * np.exp(rng.normal(0, 1.0, 40)))  # pairs disagree by factors of 2-3
    r = make_result({"a": [10.0] * 40, "b": wild})
    up = derive.speedup(r, "b", "a")
    assert not up.measurable and "too wide for an interval" in up.caveat
    assert stats.speed_verdict(up) == "noisy"


def test_a_step_with_no_labelled_parts_has_no_largest_part():
    r = make_result({"lstm": [10.0] * 5}, )
    r["lstm"].samples = rounds([10.0] * 5, {"data": 0.03})
    text = statements.largest_part(r)
    assert "largest" not in text and "label them with `part(...)`" in text


def test_no_variant_measured_says_so_without_nan(tmp_path: Path):
    r = make_result({"a": [10] * 5})
    r["a"].status, r["a"].reason = "failed", "the warm-up raised ValueError: x"
    r["a"].samples = []
    render_all(r, tmp_path)
    md = (tmp_path / "summary.md").read_text()
    assert "nan" not in md.lower() and "no variant measured" in md and "nothing of it was measured" in md


def test_parts_keep_the_workloads_order_in_every_table():
    r = make_result({"a": [10] * 5, "b": [10] * 5})
    r["a"].parts = r["b"].parts = ["data", "forward", "backward"]
    for name in ("a", "b"):
        r[name].samples = rounds([10] * 5, {"backward": 0.3, "data": 0.2, "forward": 0.5})
    from bench.render.tables import summary_frame

    cols = [c for c in summary_frame(r).columns if c.endswith("_share")]
    assert cols == ["data_share", "forward_share", "backward_share"]


def test_a_drift_that_cannot_change_the_verdict_does_not_hide_a_large_effect():
    """A rank 7x slower whose ratio drifts by 20% over the run: still 7x, measurably."""
    rng = np.random.default_rng(7)
    n = 40
    base = list(3 * (1 + 0.05 * rng.standard_normal(n)))
    slow = [b * 7 * (1 + 0.2 * i / n) for i, b in enumerate(base)]
    r = stats.checked_ratio(slow, base, None)
    assert r.measurable and r.verdict == "slower" and 7 < r.value < 8.5
    # the same drift on a ratio near 1 could change the verdict: not measurable
    near = [b * (1 + 0.2 * i / n) for i, b in enumerate(base)]
    assert not stats.checked_ratio(near, base, None).measurable
