"""Sessions: `nox -s tests` (the test suite), `nox -s bench` (benchmarks + profiles into
reports/), `nox -s regress` (same-machine A/B regression check), `nox -s lint` (ruff).

Dependencies come from pyproject.toml (`pip install -e .[dev]`), not repeated here. Venvs
are reused: installing torch is the slow part.
"""

from __future__ import annotations

import nox

nox.options.reuse_venv = "yes"
nox.options.sessions = ["tests", "lint"]
PYTHON = "3.11"


def _install(session: nox.Session) -> None:
    session.install("-e", ".[dev]")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite (small generated data, CPU; GPU tests skip without CUDA)."""
    _install(session)
    session.run("pytest", *session.posargs)


BENCH_STORAGE = "reports/benchmarks"


@nox.session(python=PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """Benchmark the pipeline ladder, profile it, and write the combined report into reports/.

    `nox -s bench -- --quick` is a smoke run; other arguments after `--` go to the suites' pytest.
    """
    _install(session)
    args = list(session.posargs)
    quick = "--quick" in args
    if quick:
        args.remove("--quick")
    # 1. the pytest-benchmark suites; raw rounds are saved, runs accumulate (0001_, 0002_, ...)
    session.run(
        "pytest", "bench/suites", "-p", "no:cacheprovider", "-o", "addopts=-ra",
        f"--benchmark-storage=file://{BENCH_STORAGE}", "--benchmark-autosave",
        "--benchmark-save-data", "--benchmark-columns=median,iqr,min,max,rounds",
        "--benchmark-sort=name", *(["--vb-quick"] if quick else []), *args,
        success_codes=[0, 1],  # one failed benchmark must not lose the others' results
    )
    # 2. the profiling runner (writes summary.md afresh)
    profile = ["--steps", "10", "--warmup", "2"] if quick else []
    session.run("python", "-m", "bench", "profile", *profile)
    # 3. the benchmark table and bench.png from the run just saved
    session.run("python", "-m", "bench", "report")
    session.log("Reports in reports/ (summary.md first). Open them with:")
    session.log("  snakeviz reports/naive.prof")
    session.log("  python -m line_profiler reports/naive.lprof")
    session.log("  tensorboard --logdir reports/tb")


@nox.session(python=PYTHON, default=False)
def regress(session: nox.Session) -> None:
    """Interleaved same-machine A/B of a base commit vs the work tree; fails on a regression.

    `nox -s regress -- --base origin/main` (default base: origin/main, else HEAD~1).
    """
    _install(session)
    session.run("python", "-m", "bench", "regress", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Check the code with ruff."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".", *session.posargs)
