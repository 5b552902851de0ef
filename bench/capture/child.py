"""One process of a schedule that alternates processes (``--try``): its spec arrives as data.

    python -m bench.capture.child ORDER.json OUT

``ORDER.json`` holds ``{"spec": <a ScriptSpec as saved in run.json>}``; the process captures
the script (or, with the spec's ``nproc``, a torchrun job of it, one capture per rank) and
writes ``OUT/run.json``, whatever the script did: what was measured before a failure is kept.
Nobody types this command; ``--try`` writes it.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def order(spec: Any) -> str:
    """The JSON a child reads (``spec``: a ScriptSpec)."""
    return json.dumps({"spec": spec.as_dict()})


def main(argv: list[str]) -> int:
    from bench.capture.record import merge, record
    from bench.capture.script import run_script
    from bench.measure.specs import ScriptSpec, build
    from bench.ranks.launch import launch_ranks
    from plumbing.logs import setup_logging

    setup_logging()
    given = json.loads(Path(argv[0]).read_text())
    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    spec = build(ScriptSpec, given["spec"])
    started = datetime.now(UTC).isoformat(timespec="seconds")
    begin = time.perf_counter()
    if spec.nproc:
        records, code = launch_ranks(spec, out)
    else:
        outcome = run_script(spec, out)
        records = [record(spec, outcome)]
        code = 130 if outcome.interrupted else (outcome.exit_code or 0)
    result = merge(spec, records, started=started, duration_s=time.perf_counter() - begin)
    result.save(out / "run.json")
    return code


if __name__ == "__main__":
    import faulthandler

    faulthandler.enable()
    sys.exit(main(sys.argv[1:]))
