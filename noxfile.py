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


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Check the code with ruff."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".", *session.posargs)
