"""Sessions: `nox -s tests` (the test suite), `nox -s bench` (measurements, profiles and
benchmarks into reports/), `nox -s regress` (same-machine A/B regression check), `nox -s lint`.

Dependencies come from pyproject.toml (`pip install -e .[dev]`), not repeated here. Venvs
are reused: installing torch is the slow part.
"""

from __future__ import annotations

import nox
import nox.command
import nox.virtualenv

nox.options.reuse_venv = "yes"
nox.options.sessions = ["tests", "lint"]
PYTHON = "3.11"


def _install(session: nox.Session, extras: str = "dev,lightning,wandb") -> None:
    # the extras too: the tests cover the Lightning trainer and W&B, the bench measures Lightning
    if isinstance(session.virtualenv, nox.virtualenv.PassthroughEnv):  # `nox --no-venv`
        session.log("--no-venv: using the current environment as it is (nothing installed)")
        return
    session.install("-e", f".[{extras}]")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite (small generated data, CPU; GPU tests skip without CUDA)."""
    _install(session)
    session.run("pytest", *session.posargs)


BENCH_STORAGE = "reports/benchmarks"
LIGHTNING = "bench.workloads.lightning:make"


def _take(args: list[str], flag: str) -> str | None:
    """Remove ``flag VALUE`` (or ``flag=VALUE``) from ``args``; return VALUE."""
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            value = args[i + 1]
            del args[i:i + 2]
            return value
        if arg.startswith(flag + "="):
            del args[i]
            return arg.split("=", 1)[1]
    return None


@nox.session(python=PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """Measure, profile and report the ladder (or --workload REF) into reports/, then run the suites.

    `nox -s bench -- --quick` is a smoke run; `-- --workload examples/cnn.py:make` measures your
    own training loop; `-- --no-instructions` skips the callgrind instruction counts (the slowest
    stage for a heavy step); other arguments after `--` go to `python -m bench profile`.
    """
    _install(session, "dev,lightning,wandb,viewers")  # the viewers, to open what it writes
    args = list(session.posargs)
    counts = "--no-instructions" not in args
    args = [a for a in args if a != "--no-instructions"]
    quick = "--quick" in args
    workload = _take(args, "--workload")
    chosen = ["--workload", workload] if workload else []
    # 1. interleaved rounds, epochs, counters, profilers -> reports/run.json and every report
    session.run("python", "-m", "bench", "profile", *chosen, *args)
    if not workload:
        # 1b. what Lightning's loop costs per step: plain loop vs lightning.Trainer, interleaved
        session.run("python", "-m", "bench", "profile", "--workload", LIGHTNING, "--tools", "none",
                    "--epochs", "0", "--out", "reports/lightning", *(["--quick"] if quick else []))
    # 2. the pytest-benchmark suites (timings; instruction counts when Valgrind is here): raw
    # rounds saved for `bench compare` / `bench regress`
    session.run(
        "pytest", "bench/suites", "-p", "no:cacheprovider", "-o", "addopts=-ra", "-q",
        f"--benchmark-storage=file://{BENCH_STORAGE}", "--benchmark-autosave",
        "--benchmark-save-data", "--benchmark-columns=median,iqr,min,max,rounds",
        "--benchmark-sort=name", *(["--vb-quick"] if quick else []),
        *([] if counts else ["--ignore=bench/suites/test_instructions.py"]),
        *(["--vb-workload", workload] if workload else ["--vb-variants", "ladder,resident+fused"]),
        success_codes=[0, 1],  # one failed benchmark must not lose the others' results
    )
    session.log("Reports in reports/ (summary.md first; raw samples in run.json). Open them with:")
    session.log("  snakeviz reports/<variant>.prof")
    session.log("  python -m line_profiler reports/<variant>.lprof")
    session.log("  tensorboard --logdir reports/tb")
    if not workload:
        session.log("Lightning's cost per step: reports/lightning/summary.md")
    session.log(f"Benchmark JSON for `python -m bench compare`: {BENCH_STORAGE}/")


@nox.session(python=PYTHON, default=False)
def regress(session: nox.Session) -> None:
    """Interleaved same-machine A/B of a base commit vs the work tree; fails on a regression.

    `nox -s regress -- --base origin/main` (default base: origin/main, else HEAD~1). Ends with
    regress's own exit code (0 pass, 1 regression, 2 bad input, 3 no verdict), not nox's 1.
    """
    _install(session)
    try:
        session.run("python", "-m", "bench", "regress", *session.posargs)
    except nox.command.CommandFailed as exc:
        code = exc.return_code or 1
        session.log(f"bench regress exited {code}: " + REGRESS_CODES.get(code, "failed"))
        # nox turns any failing command into its own exit 1; the codes are told apart in CI, so
        # end the process with regress's (SystemExit passes through nox's runner).
        raise SystemExit(code) from None


REGRESS_CODES = {1: "a regression (see reports/regress/regress.md)", 2: "bad input",
                 3: "no verdict: a benchmark too noisy to judge, with no instruction count"}


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Check the code with ruff."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".", *session.posargs)
