"""Sessions: `nox -s tests` (the test suite), `nox -s bench` (measurements, profiles and
benchmarks into reports/), `nox -s regress` (same-machine A/B regression check), `nox -s lint`.

Dependencies come from pyproject.toml (`pip install -e .[dev]`), not repeated here. Venvs
are reused: installing torch is the slow part.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

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
    # a test reads our traces with the TB plugin, another a multi-node run's with HTA
    _install(session, "dev,lightning,wandb,viewers,hta")
    # Bytecode written once, read by every later process: the suite starts ~60 Python processes
    # (ranks, pytest sides, CLIs), and where the environment says not to write it (this
    # machine's does) each one compiled our modules again and pytest rewrote every test file's
    # asserts again in each worker (~3 s a pytest process).
    # Two workers, a test file each at a time (a file's module fixtures are built once); each
    # pins torch to one thread, so the two share the machine's two cores. (Handing out the
    # longest files first was tried: 203-205 s against 187 s, its end-to-end files all at once
    # beside Valgrind's count.)
    session.run("pytest", "-n", "2", "--dist", "loadfile", *session.posargs,
                env={"PYTHONDONTWRITEBYTECODE": None})


GPU_OUT = "reports/gpu"
NO_GPU = ("import sys, torch; sys.exit(0 if torch.cuda.is_available() else "
          "'nox -s gpu: no CUDA device here; the CUDA paths were not run')")


@nox.session(python=PYTHON)
def gpu(session: nox.Session) -> None:
    """Every CUDA-only path on one GPU, in under 8 minutes: the tests marked `gpu` (the pinned and
    resident rungs, CUDA graphs, CUDA traces, the memory breakdown against the allocator's own
    peak, an out-of-memory run's snapshot), then `vaebench run` and `--fit` on the example CNN
    and `--try` of the CUDA fixes, their reports into reports/gpu/. Refuses in one line where no
    GPU is present."""
    _install(session, "dev,lightning")
    session.run("python", "-c", NO_GPU)
    session.run("pytest", "-m", "gpu", "-q", *session.posargs)
    cnn = ["examples/scripts/cnn_classifier.py", "--limit", "20000"]
    session.run("python", "-m", "bench", "run", "--out", f"{GPU_OUT}/run-cnn", *cnn)
    session.run("python", "-m", "bench", "run", "--fit", "--out", f"{GPU_OUT}/fit-cnn", *cnn)
    session.run("python", "-m", "bench", "run", "--try", "--fixes", "tf32,cudnn_benchmark,bf16,pin_memory",
                "--max-minutes", "3", "--out", f"{GPU_OUT}/try-cnn", *cnn)
    session.log(f"the GPU's figures are in {GPU_OUT}/ (each folder's summary.md)")


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


INSTRUCTIONS = "reports/instructions.json"
SUITE_VARIANTS = "ladder,resident+fused"  # the built-in workload's benchmarked variants


@nox.session(python=PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """Measure, profile and report the ladder (or --workload REF) into reports/, then run the suites.

    `nox -s bench -- --quick` is a smoke run (fewer rounds; for the built-in workload its ladder
    and fused Adam only; no instruction counts); `-- --workload examples/cnn.py:make` measures
    your own training loop; `-- --no-instructions` skips the callgrind instruction counts; other
    arguments after `--` go to `python -m bench profile`.

    The instruction counts (Valgrind, one core, about three minutes for the built-in workload)
    run niced beside the timed stages: at the lowest priority they take only what the timings
    leave idle, and an instruction count does not depend on what else runs.
    """
    _install(session, "dev,lightning,wandb,viewers")  # the viewers, to open what it writes
    args = list(session.posargs)
    counts = "--no-instructions" not in args
    args = [a for a in args if a != "--no-instructions"]
    quick = "--quick" in args
    workload = _take(args, "--workload")
    chosen = ["--workload", workload] if workload else []
    suite_variants = [] if workload else ["--variants", SUITE_VARIANTS]
    if quick and not workload and not any(a.startswith("--variants") for a in args):
        args += suite_variants  # the smoke run: the ladder and fused Adam, not every step variant
    if quick and counts:
        session.log("--quick: no instruction counts (about three minutes of Valgrind); run "
                    "without --quick for them")
        counts = False
    counting = _count_beside(session, [*chosen, *suite_variants]) if counts else None
    try:
        # 1. interleaved rounds, epochs, counters, profilers -> reports/run.json and every report
        session.run("python", "-m", "bench", "profile", *chosen, *args)
        if not workload:
            # 1b. what Lightning's loop costs per step: plain loop vs lightning.Trainer, interleaved
            # (its step's FLOPs, memory and operator counts are the plain loop's, in reports/)
            session.run("python", "-m", "bench", "profile", "--workload", LIGHTNING, "--tools", "none",
                        "--epochs", "0", "--no-footprint", "--no-counters", "--out", "reports/lightning",
                        *(["--quick"] if quick else []))
        instructions = _finish_counting(session, counting)
    finally:
        if counting is not None and counting.poll() is None:  # Ctrl-C or a failed stage
            counting.kill()
    # 2. the pytest-benchmark suites (timings, and the counts beside them): raw rounds saved for
    # `bench compare` / `bench regress`
    session.run(
        "pytest", "bench/suites", "-p", "no:cacheprovider", "-o", "addopts=-ra", "-q",
        f"--benchmark-storage=file://{BENCH_STORAGE}", "--benchmark-autosave",
        "--benchmark-save-data", "--benchmark-columns=median,iqr,min,max,rounds",
        "--benchmark-sort=name", *(["--vb-quick"] if quick else []),
        *(["--vb-instructions", instructions] if instructions else
          ["--ignore=bench/suites/test_instructions.py"]),
        *(["--vb-workload", workload] if workload else ["--vb-variants", SUITE_VARIANTS]),
        success_codes=[0, 1],  # one failed benchmark must not lose the others' results
    )
    session.log("Reports in reports/ (README.md lists every file; summary.md first). Open them with:")
    session.log("  snakeviz reports/<variant>.prof")
    session.log("  python -m line_profiler reports/<variant>.lprof")
    session.log("  tensorboard --logdir reports/tb")
    if not workload:
        session.log("Lightning's cost per step: reports/lightning/summary.md")
    session.log(f"Benchmark JSON for `python -m bench compare`: {BENCH_STORAGE}/")


def _python(session: nox.Session) -> str:
    if isinstance(session.virtualenv, nox.virtualenv.PassthroughEnv):
        return sys.executable
    return os.path.join(session.bin, "python")


def _count_beside(session: nox.Session, workload: list[str]) -> subprocess.Popen | None:
    """Start `bench instructions` at the lowest priority; None (and why) without Valgrind."""
    if shutil.which("valgrind") is None:
        session.log("Instruction counts skipped: valgrind not found (apt-get install valgrind)")
        return None
    if not workload or workload[0] != "--workload":  # the built-in data, made once, before both
        session.run("python", "-c", "from vae.data import load_mnist; load_mnist('data', train=True); "
                    "load_mnist('data', train=False)", silent=True)
    os.makedirs("reports", exist_ok=True)
    cmd = [_python(session), "-m", "bench", "instructions", "--no-progress", "--json", INSTRUCTIONS,
           *workload]
    session.log("Counting instructions under callgrind beside the timings, niced: " + " ".join(cmd[1:]))
    with open("reports/instructions.log", "w") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=lambda: os.nice(19))


def _finish_counting(session: nox.Session, counting: subprocess.Popen | None) -> str | None:
    """Wait for the counts; their JSON, or None (the suites then leave them out, and say why)."""
    if counting is None:
        return None
    started = time.monotonic()
    if counting.poll() is None:
        session.log("Waiting for the instruction counts (reports/instructions.log)...")
    code = counting.wait()
    with open("reports/instructions.log") as log:
        text = log.read()
    if code != 0 or not os.path.isfile(INSTRUCTIONS):
        session.warn(f"Instruction counts failed (exit {code}); the suites leave them out:\n"
                     + "\n".join(text.splitlines()[-8:]))
        return None
    session.log(f"Instruction counts in {INSTRUCTIONS} (waited {time.monotonic() - started:.0f} s "
                "after the timed stages)")
    return INSTRUCTIONS


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
