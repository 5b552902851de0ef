"""A rank's record on its way to the merge: written by the rank, read by node 0, or stood in for
by a record of its death when the rank wrote none."""

from __future__ import annotations

import json
from pathlib import Path

from bench.measure.result import Measurement, Process
from plumbing.files import write_atomic


def save_record(m: Measurement, path: Path) -> None:
    write_atomic(path, json.dumps(m.as_dict()))


def load_record(path: Path) -> Measurement:
    return Measurement.from_dict(json.loads(path.read_text()))


def died(rank: int, notice: dict | None = None) -> Measurement:
    """The record of a rank that wrote none; ``notice``: its node's word of it (bench.ranks.gather)."""
    if notice:
        where = (f"on node {notice.get('node_rank')} ({notice.get('host')}, "
                 f"local rank {notice.get('local_rank')})")
        why = (f"the rank died {where} without writing its record (torchrun's exit code there: "
               f"{notice.get('exit_code')})")
        process = Process(rank=rank, local_rank=notice.get("local_rank"), node=notice.get("host", ""),
                          node_rank=int(notice.get("node_rank") or 0), error=why)
    else:
        why = DIED
        process = Process(rank=rank, error=why)
    return Measurement(name=f"rank{rank}", status="failed", reason=why, process=process)


DIED = "the rank died without writing its record"
