"""The ``instructions`` suite: exact CPU instruction counts of one fetch and one step of each variant.

Callgrind counts them once per session for all variants (one Valgrind process: starting
torch under it is the slow part); each variant's test checks its counts came out exact, and
the conftest hook stores them as the ``instructions`` section of the saved benchmark JSON,
beside the timings, where ``bench compare`` judges them. Without Valgrind every test here is
skipped with the reason and the install hint.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.instructions.count import Count, CountError, Counts, count_instructions, missing_tool
from bench.suites.conftest import COUNTS

EXACT = 0.005  # repeats of one region agree far better than this (docs/method.md: instruction counts)


@pytest.fixture(scope="session")
def counted(pytestconfig, settings, tmp_path_factory):
    given = pytestconfig.getoption("vb_instructions")
    if given is not None:
        counts = _read(given, settings)
        pytestconfig.stash[COUNTS] = counts
        return counts
    reason = missing_tool()
    if reason:
        pytest.skip(f"instruction counts not taken: {reason}")
    terminal = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")

    def say(line: str) -> None:  # straight to the terminal, past pytest's capture of fixtures
        if terminal is None:
            return
        if capture is None:
            terminal.write_line(f"[instructions] {line}")
            return
        with capture.global_and_fixture_disabled():
            terminal.write_line(f"[instructions] {line}")

    say(f"counting the instructions of {len(settings.variants)} variant(s) under callgrind (slow: "
        "each variant's time and an estimate of the rest follow as they finish); skip this stage "
        "with `nox -s bench -- --no-instructions`")
    try:
        counts = count_instructions(settings.workload, list(settings.variants),
                       data_dir=Path(pytestconfig.getoption("vb_data_dir")),
                       dataset=pytestconfig.getoption("vb_dataset"),
                       limit=max(2000, pytestconfig.getoption("vb_limit") or 0),
                       batch_size=pytestconfig.getoption("vb_batch_size"),
                       repeats=2,
                       workdir=tmp_path_factory.mktemp("callgrind"), on_progress=say)
    except CountError as exc:
        pytest.fail(f"counting instructions failed: {exc}", pytrace=False)
    pytestconfig.stash[COUNTS] = counts
    return counts


def _read(path: Path, settings) -> Counts:
    """Counts a `bench instructions` run wrote: of this workload, and of every variant here."""
    from bench.regress.benchjson import BenchFileError, load_file

    try:
        section = load_file(path, need_data=False).counts
    except BenchFileError as exc:
        pytest.fail(f"--vb-instructions: {exc}", pytrace=False)
    doc = json.loads(path.read_text())["instructions"]
    if doc.get("workload") != settings.workload:
        pytest.fail(f"--vb-instructions {path} counts {doc.get('workload')!r}, not {settings.workload!r}",
                    pytrace=False)
    meta = {k: v for k, v in doc.items() if k not in ("schema", "counts", "skipped")}
    return Counts({k: Count.from_dict(v) for k, v in (section or {}).items()}, doc.get("skipped", {}), meta)


def test_instructions(counted, variant):
    if variant in counted.skipped:
        pytest.skip(f"{variant}: {counted.skipped[variant]}")
    for per in ("fetch", "step"):
        c = counted.counts.get(f"{per}[{variant}]")
        assert c is not None, f"{per}[{variant}] was not counted (counted: {', '.join(counted.counts)})"
        assert c.instructions > 0
        assert c.spread < EXACT, f"{per}[{variant}] repeats differ by {c.spread:.2%}: {c.repeats}"
