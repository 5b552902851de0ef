"""The entry each torchrun rank runs: capture the script in this process, write the record.

    python -m torch.distributed.run --nproc_per_node 2 -m bench.capture.rank DIR SPEC_JSON -- train.py ...

(`vaebench run --nproc N` writes this command; nobody types it.)
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from bench.capture.record import record
    from bench.capture.script import run_script
    from bench.measure.specs import ScriptSpec, build
    from bench.ranks.gather import announce, send, several_nodes
    from bench.ranks.records import save_record

    folder, spec_json, sep, *command = argv
    assert sep == "--", "usage: DIR SPEC_JSON -- COMMAND..."
    spec = build(ScriptSpec, {**json.loads(spec_json), "command": command})
    rank = int(os.environ.get("RANK", "0"))
    out = Path(folder)
    announce(rank, out)  # for this node's vaebench run: which ranks ran here, where the gather listens
    # torchrun stops the other ranks (SIGTERM) when one dies: take it as an interrupt, so this
    # rank writes what it measured before it goes.
    signal.signal(signal.SIGTERM, _terminated)
    holder: list = []
    try:
        outcome = run_script(spec, out, worker=f"rank{rank}", label=f"{spec.name}.rank{rank}",
                             holder=holder)
    except KeyboardInterrupt:  # torchrun's SIGTERM came while the script's own failure was handled
        if not holder:
            raise
        outcome = holder[0]
        outcome.interrupted, outcome.exit_code = True, 130
        outcome.recorder.close()
    # What was measured is written and sent, whatever comes (torchrun forwards a Ctrl-C to its
    # workers as a second SIGINT).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    measured = record(spec, outcome, rank)
    save_record(measured, out / f"rank{rank}.json")
    if several_nodes():  # every record to global rank 0's node, over the network
        send(json.dumps(measured.as_dict()), rank, out, files=measured.artifacts)
    if outcome.interrupted:
        return 130
    return outcome.exit_code or 0


def _terminated(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: a second one must not cut the record short
    raise KeyboardInterrupt("stopped by torchrun (SIGTERM): another rank failed")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
