"""Every rank's record, gathered to global rank 0's node over the network (no shared file
system assumed): under torchrun with several nodes, global rank 0 serves a TCPStore beside the
job's own (on MASTER_ADDR, MASTER_PORT + 1) and writes each record it receives into its node's
run folder; every other rank sends its record there. On one node there is nothing to gather.

What travels: one record a rank (its Measurement as JSON: every measured step's times and
parts, a few hundred bytes a step; about 60 KB a rank for a default run).
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path

from plumbing.files import write_atomic

log = logging.getLogger("bench")
PORT_OFFSET = 1  # the gather's port: the job's MASTER_PORT + this
WAIT_S = 120.0  # how long rank 0 waits for a rank that has not sent its record


def several_nodes() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def _key(rank: int) -> str:
    return f"vaebench/record/{rank}"


def gather(record: str, rank: int, out: Path, wait_s: float = WAIT_S) -> list[int]:
    """Send this rank's record to global rank 0 (which writes every one it receives into ``out``
    as ``rankN.json``); returns, on rank 0, the ranks that sent none in ``wait_s``."""
    from torch.distributed import TCPStore

    world = int(os.environ["WORLD_SIZE"])
    host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]) + PORT_OFFSET
    timeout = timedelta(seconds=wait_s)
    if rank != 0:
        try:
            TCPStore(host, port, world, is_master=False, timeout=timeout).set(_key(rank), record)
        except Exception as exc:  # rank 0 gone: this node keeps its own record
            log.error("rank %d could not send its record to rank 0 at %s:%d (%s); this node's run "
                      "folder keeps it", rank, host, port, exc)
        return []
    store = TCPStore(host, port, world, is_master=True, timeout=timeout, wait_for_workers=False)
    missing = []
    for other in range(1, world):
        try:
            store.wait([_key(other)], timeout)
        except Exception:  # a rank that died, or a node that never sent
            missing.append(other)
            continue
        write_atomic(out / f"rank{other}.json", store.get(_key(other)).decode())
    return missing
