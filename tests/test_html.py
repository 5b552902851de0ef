"""report.html and the history dashboard: self-contained pages, checked in a real headless
Chromium (no console error, no request to any host, every chart drawn, the headline that
summary.md says, sortable tables), and their numbers against summary.csv for the same Result.

Where Chromium is not installed the browser tests skip with the command that installs it; under
CI (CI=true) they fail instead, since .ci/run installs it."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bench.measure.result import Result
from bench.render import html, page, render_all
from bench.render.summary import markdown
from tests.helpers import ROOT, in_process, make_result, write_runs

V1 = Path(__file__).parent / "data" / "run-v1"
SHOTS = ROOT / "reports" / "test-screenshots"  # the tests' artifacts (reports/ is not tracked)
INSTALL = "apt-get install -y chromium chromium-driver && pip install selenium"


@pytest.fixture(scope="module")
def browser():
    missing = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    try:
        from selenium import webdriver
    except ImportError:
        missing.append("selenium")
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser tests: {', '.join(missing)} missing ({INSTALL})")
        pytest.skip(f"no headless browser here ({', '.join(missing)} missing): {INSTALL}")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1200,1600"):
        options.add_argument(arg)
    options.binary_location = shutil.which("chromium")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    yield driver
    driver.quit()


def _open(driver, path: Path, shot: str) -> dict:
    """Load a page from file://; what the browser said and fetched while loading it."""
    from selenium.webdriver.common.by import By

    driver.get_log("performance"), driver.get_log("browser")  # drop what came before
    driver.get(path.resolve().as_uri())
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    urls = [json.loads(e["message"])["message"].get("params", {}).get("request", {}).get("url", "")
            for e in driver.get_log("performance")
            if json.loads(e["message"])["message"]["method"] == "Network.requestWillBeSent"]
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"{shot}.png"))
    charts = driver.find_elements(By.CSS_SELECTOR, "svg.chart")
    return {"errors": errors, "urls": urls, "charts": charts,
            "marks": [len(c.find_elements(By.CSS_SELECTOR, ".mark")) for c in charts]}


def _check_page(seen: dict, text: str) -> None:
    assert seen["errors"] == []
    assert seen["urls"] and all(u.startswith("file://") for u in seen["urls"]), seen["urls"]
    assert len(seen["charts"]) == text.count('<svg class="chart"') and seen["charts"]
    assert all(n > 0 for n in seen["marks"]), seen["marks"]  # every chart drew its data


def _headline_of_summary(folder: Path) -> str:
    """The paragraph after summary.md's opening lines: its headline."""
    paragraphs = [p for p in (folder / "summary.md").read_text().split("\n\n") if p.strip()]
    return next(p for p in paragraphs[2:] if not p.startswith(("-", "#", "Script:", "A step")))


def _sorts(driver) -> None:
    """Clicking a numeric column's header orders the rows by it, then the other way."""
    from selenium.webdriver.common.by import By

    def numeric(table) -> int:  # the first column holding numbers (0: none)
        heads = table.find_elements(By.TAG_NAME, "th")
        return next((k + 1 for k in range(len(heads))
                     if table.find_elements(By.CSS_SELECTOR, f"tbody tr td:nth-child({k + 1}).num")), 0)

    # the visible table with the most rows that has a numeric column
    tables = [t for t in driver.find_elements(By.CSS_SELECTOR, "table.sortable")
              if t.is_displayed() and numeric(t)]
    table = max(tables, key=lambda t: len(t.find_elements(By.CSS_SELECTOR, "tbody tr")))
    col = numeric(table)
    header = table.find_elements(By.TAG_NAME, "th")[col - 1]
    assert len(table.find_elements(By.CSS_SELECTOR, "tbody tr")) > 1

    def column() -> list[float]:
        return [float(td.get_attribute("data-sort")) for td in
                table.find_elements(By.CSS_SELECTOR, f"tbody tr td:nth-child({col})")
                if td.get_attribute("data-sort")]

    header.click()
    assert column() == sorted(column())
    header.click()
    assert column() == sorted(column(), reverse=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_root: Path) -> dict[str, Path]:
    """Run folders of each kind: a variants run and a one-process script run with their profiler
    files (small, real), and a two-rank run (converted from the previous format)."""
    from bench.cli import main

    base = tmp_path_factory.mktemp("pages")
    script = base / "script"
    proc = in_process(main, ["run", "--steps", "12", "--warmup", "2", "--profile-windows", "2",
                             "--profile-steps", "2", "--observe-windows", "2", "--tools", "cprofile,kineto",
                             "--out", script, ROOT / "examples" / "scripts" / "mnist_classifier.py",
                             "--data-dir", data_root, "--batch-size", "20", "--epochs", "3"])
    assert proc.returncode == 0, proc.stderr
    variants = base / "variants"
    variants.mkdir()
    make_result({"base": [20, 21, 19, 20, 22, 20], "fast": [10, 11, 9, 10, 10, 10]},
                bound=[9.5, 10, 9, 9.8, 9.9, 9.7]).save(variants / "run.json")
    ranks = base / "ranks"
    ranks.mkdir()
    shutil.copy(V1 / "ranks.json", ranks / "run.json")
    for folder in (variants, ranks):
        assert in_process(main, ["report", folder / "run.json"]).returncode == 0
    return {"variants": variants, "script": script, "ranks": ranks}


@pytest.mark.parametrize("kind", ["variants", "script", "ranks"])
def test_report_html_in_a_browser(browser, runs, kind: str):
    folder = runs[kind]
    path = folder / "report.html"
    text = path.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)  # nothing to fetch from a host
    seen = _open(browser, path, f"report-{kind}")
    _check_page(seen, text)
    from selenium.webdriver.common.by import By

    shown = browser.find_element(By.ID, "headline").text
    assert " ".join(shown.split()) == " ".join(page.plain(_headline_of_summary(folder)).split())
    _sorts(browser)
    if kind == "script":  # its profilers' files read back: top functions and operators, with openers
        assert "Top functions" in text and "snakeviz mnist_classifier.py.prof" in text
        assert "Top operators" in text and "aten::" in text
        # where the memory goes: a stacked bar (drawn: _check_page) and its table, parts summing to the peak
        [row] = _cells(text, "Where the memory goes")
        assert float(row[1]) > 0 and sum(map(float, row[2:])) == pytest.approx(float(row[1]))


def test_history_dashboard_in_a_browser(browser, tmp_path: Path):
    from bench.cli import main

    write_runs(tmp_path / "b", {"test_step[a]": [0.010] * 6 + [0.013] * 6, "test_fetch[b]": [0.005] * 12})
    proc = in_process(main, ["history", tmp_path / "b", "--out", tmp_path / "h", "--html"])
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / "h" / "history.html"
    text = path.read_text()
    seen = _open(browser, path, "history")
    _check_page(seen, text)
    assert len(seen["charts"]) == 2 and "change point +" in text and "06c0ffeec0" in text
    _sorts(browser)


def _cells(text: str, title: str) -> list[list[str]]:
    """The data-sort values of the first table after heading ``title``, row by row."""
    section = text.split(f"<h2>{title}</h2>", 1)[1]
    body = section.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    def value(attrs: str) -> str:
        found = re.search(r'data-sort="([^"]*)"', attrs)
        return found.group(1) if found else ""

    return [[value(a) for a in re.findall(r"<td([^>]*)>", row)] for row in body.split("<tr>")[1:]]


def test_the_page_says_the_numbers_summary_csv_says(tmp_path: Path):
    r = make_result({"base": [20, 21, 19, 20, 22, 20], "fast": [10, 11, 9, 10, 10, 10]})
    render_all(r, tmp_path)
    csv = pd.read_csv(tmp_path / "summary.csv")
    text = (tmp_path / "report.html").read_text()
    rows = _cells(text, "Variants")
    assert [float(row[1]) for row in rows] == pytest.approx(list(csv["step_ms_median"]), rel=1e-5)
    assert [float(row[2]) for row in rows] == pytest.approx(list(csv["speedup_vs_baseline"]), rel=1e-5)
    parts = _cells(text, "Where the step goes")
    shares = csv["data_share"] * csv["step_ms_median"]
    assert [float(row[1]) for row in parts] == pytest.approx(list(shares), rel=1e-5)


def test_the_ranks_table_says_what_summary_csv_says(tmp_path: Path):
    shutil.copy(V1 / "ranks.json", tmp_path / "run.json")
    r = Result.load(tmp_path / "run.json")
    render_all(r, tmp_path)
    csv = pd.read_csv(tmp_path / "summary.csv")
    rows = _cells((tmp_path / "report.html").read_text(), "Ranks")
    assert [float(row[1]) for row in rows] == pytest.approx(list(csv["step_ms_median"]), rel=1e-5)
    assert html.SECTIONS.keys() == {"variants", "script", "try", "fit"}
    assert "## Ranks" in markdown(r)


def test_ranks_of_several_nodes_are_named_by_node_on_the_page(tmp_path: Path):
    shutil.copy(V1 / "ranks.json", tmp_path / "run.json")
    r = Result.load(tmp_path / "run.json")
    for i, name in enumerate(r.measured):
        r[name].process.node, r[name].process.node_rank, r[name].process.local_rank = f"host{i}", i, 0
    render_all(r, tmp_path)
    section = (tmp_path / "report.html").read_text().split("<h2>Ranks</h2>", 1)[1].split("</table>", 1)[0]
    assert "<th>node" in section
    for i in range(len(r.measured)):
        assert f">host{i} (node {i}, local rank 0)</td>" in section


def test_a_page_is_one_small_file(runs):
    """Everything inline: no other file is referenced, and a page stays far under 5 MB (how fast
    a default `nox -s bench` page renders is measured in docs/results.md, not judged here)."""
    for folder in runs.values():
        text = (folder / "report.html").read_text()
        assert (folder / "report.html").stat().st_size < 5 * 2**20
        assert "<script src" not in text and "<link" not in text and "<img" not in text


def test_overheads_and_throughput_say_what_summary_csv_says(tmp_path: Path):
    shutil.copy(V1 / "run.json", tmp_path / "run.json")  # one script process, cProfile windows
    render_all(Result.load(tmp_path / "run.json"), tmp_path)
    csv = pd.read_csv(tmp_path / "summary.csv")
    text = (tmp_path / "report.html").read_text()
    (overhead,) = _cells(text, "Profiler overhead")
    assert float(overhead[2]) == pytest.approx(csv["cprofile_overhead"][0], rel=1e-5)
    (rate,) = _cells(text, "Throughput and memory")
    assert float(rate[1]) == pytest.approx(csv["samples_per_s"][0], rel=1e-5)


def test_a_run_that_measured_nothing_has_a_page_without_empty_charts(tmp_path: Path):
    r = make_result({"a": [10] * 5})
    r["a"].status, r["a"].reason, r["a"].samples = "failed", "the warm-up raised ValueError: x", []
    render_all(r, tmp_path)
    text = (tmp_path / "report.html").read_text()
    assert '<svg class="chart"' not in text and "the warm-up raised ValueError: x" in text


def test_a_try_report_in_a_browser(browser, tmp_path: Path):
    """The page of `run --try`: its recommendation is summary.md's, its forest plot draws every
    fix, its table sorts, nothing is fetched from a host."""
    from selenium.webdriver.common.by import By

    from bench.render import render_all
    from tests.test_try import _try_result

    render_all(_try_result(), tmp_path)
    path = tmp_path / "report.html"
    text = path.read_text()
    seen = _open(browser, path, "report-try")
    _check_page(seen, text)
    shown = " ".join(browser.find_element(By.ID, "headline").text.split())
    bold = next(p for p in (tmp_path / "summary.md").read_text().split("\n\n") if p.startswith("**"))
    assert shown == " ".join(page.plain(bold.strip("*")).split())
    # the A/A, the three fixes, the combination: one interval each; then each process's median
    # step, a line per side (the baseline's, the A/A's, the fixes', the combination's)
    assert seen["marks"] == [5, 6]
    _sorts(browser)
