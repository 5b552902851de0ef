"""One process of the script that ``--try``, ``--compare`` or ``--fit`` runs: its spec arrives as data.

    python -m bench.capture.child ORDER.json OUT

``ORDER.json`` holds ``{"spec": <a ScriptSpec as saved in run.json>}``; the process captures
the script (or, with the spec's ``nproc``, a torchrun job of it, one capture per rank) and
writes ``OUT/run.json``, whatever the script did: what was measured before a failure is kept.
Nobody types this command; :func:`command` writes it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def command(spec: Any, out: Path) -> list[str]:
    """The command line of a child that runs ``spec`` (a ScriptSpec) into the folder ``out``;
    its order written beside that folder, as ``out.json``."""
    path = out.with_suffix(".json")
    path.write_text(json.dumps({"spec": spec.as_dict()}))
    return [sys.executable, "-m", "bench.capture.child", str(path), str(out)]


def main(argv: list[str]) -> int:
    from bench.capture.record import observe
    from bench.measure.specs import ScriptSpec, build
    from plumbing.logs import setup_logging

    setup_logging()
    given = json.loads(Path(argv[0]).read_text())
    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    result, code = observe(build(ScriptSpec, given["spec"]), out)
    result.save(out / "run.json")
    return code


if __name__ == "__main__":
    import faulthandler

    faulthandler.enable()
    sys.exit(main(sys.argv[1:]))
