"""Every rank's record, gathered to global rank 0's node over the network (no shared file
system assumed): under torchrun with several nodes, global rank 0 serves a TCPStore beside the
job's own (on MASTER_ADDR, MASTER_PORT + 1) and writes each record it receives into its node's
run folder; every other rank sends its record there. On one node there is nothing to gather.

A rank that dies sends nothing; the ``vaebench run`` of its node, which sees it die, sends its
**death notice** instead (global rank, node, host, torchrun's exit code), so rank 0 names it at
once rather than waiting out ``WAIT_S``. Each rank announces itself in its node's folder when
it starts (``started/rankN.json``: its ranks, its node, where the gather listens): that is how
a node's ``vaebench run`` knows which global ranks it ran and where to send a notice.

What travels: one record a rank (its Measurement as JSON: every measured step's times and
parts, a few hundred bytes a step; about 60-120 KB a rank for a default run).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import zlib
from datetime import timedelta
from pathlib import Path
from typing import Any

from plumbing.files import write_atomic

log = logging.getLogger("bench")
PORT_OFFSET = 1  # the gather's port: the job's MASTER_PORT + this
WAIT_S = 120.0  # how long rank 0 waits for a rank that has neither sent its record nor been reported dead
INTERRUPTED_WAIT_S = 10.0  # after Ctrl-C: a short wait for what the other nodes still send
STARTED = "started"  # the folder of the ranks' announcements, in a node's staging folder


def several_nodes() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def _key(kind: str, rank: int) -> str:
    return f"vaebench/{kind}/{rank}"


def announce(rank: int, out: Path) -> None:
    """This rank started: its ranks, node and the gather's address, for its node's parent."""
    env = os.environ
    (out / STARTED).mkdir(parents=True, exist_ok=True)
    write_atomic(out / STARTED / f"rank{rank}.json", json.dumps({
        "rank": rank, "local_rank": int(env.get("LOCAL_RANK", "0")),
        "node_rank": int(env.get("GROUP_RANK", "0")), "host": socket.gethostname(),
        "world_size": int(env.get("WORLD_SIZE", "1")), "master_addr": env.get("MASTER_ADDR", ""),
        "port": int(env.get("MASTER_PORT", "0")) + PORT_OFFSET}))


def started(out: Path) -> dict[int, dict[str, Any]]:
    """The announcements of the ranks that started on this node, by global rank."""
    found = {}
    for path in sorted((out / STARTED).glob("rank*.json")):
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        found[int(info["rank"])] = info
    return found


def gather(record: str, rank: int, out: Path, wait_s: float = WAIT_S,
           files: list[str] | None = None) -> list[int]:
    """Send this rank's record to global rank 0 (which writes every one it receives into ``out``
    as ``rankN.json``, and every death notice as ``rankN.died.json``); returns, on rank 0, the
    ranks it heard nothing of in ``wait_s``. ``files``: this rank's artifacts (paths relative to
    ``out``: its Kineto traces ...), sent too from a node other than rank 0's, so that node 0's
    run folder holds every rank's (Holistic Trace Analysis reads one folder of every rank)."""
    from torch.distributed import TCPStore

    world = int(os.environ["WORLD_SIZE"])
    host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]) + PORT_OFFSET
    timeout = timedelta(seconds=wait_s)
    if rank != 0:
        try:
            store = TCPStore(host, port, world, is_master=False, timeout=timeout)
            if files and int(os.environ.get("GROUP_RANK", "0")) != 0:
                _send_files(store, rank, out, files)
            store.set(_key("record", rank), record)  # last: once rank 0 sees it, the files are there
        except Exception as exc:  # rank 0 gone: this node keeps its own record
            log.error("rank %d could not send its record to rank 0 at %s:%d (%s); this node's run "
                      "folder keeps it", rank, host, port, exc)
        return []
    store = TCPStore(host, port, world, is_master=True, timeout=timeout, wait_for_workers=False)
    return _receive(store, set(range(1, world)), out, wait_s)


def _receive(store: Any, pending: set[int], out: Path, wait_s: float) -> list[int]:
    """Poll for records and death notices until every rank is heard of or ``wait_s`` passes (a
    Ctrl-C here stops the wait: what arrived is kept)."""
    deadline = time.monotonic() + wait_s
    try:
        while pending and time.monotonic() < deadline:
            for other in sorted(pending):
                for kind, name in (("record", f"rank{other}.json"), ("died", f"rank{other}.died.json")):
                    if store.check([_key(kind, other)]):
                        if kind == "record":
                            _receive_files(store, other, out)
                        write_atomic(out / name, store.get(_key(kind, other)).decode())
                        pending.discard(other)
                        break
            time.sleep(0.05)
    except KeyboardInterrupt:
        log.warning("stopped waiting for ranks %s: what arrived is kept",
                    ", ".join(map(str, sorted(pending))))
    return sorted(pending)


def _send_files(store: Any, rank: int, out: Path, files: list[str]) -> None:
    """Each file compressed under its own key, then the list of their paths."""
    sent = []
    for i, name in enumerate(files):
        try:
            data = (out / name).read_bytes()
        except OSError:  # listed but not written (a profiler that failed): nothing to send
            continue
        store.set(_key(f"file/{rank}", i), zlib.compress(data, 6))
        sent.append([i, name])
    store.set(_key("files", rank), json.dumps(sent))


def _receive_files(store: Any, rank: int, out: Path) -> None:
    """A rank's files into ``out`` at their relative paths (only ones that stay inside it)."""
    if not store.check([_key("files", rank)]):
        return
    root = out.resolve()
    for i, name in json.loads(store.get(_key("files", rank)).decode()):
        path = (out / name).resolve()
        if not path.is_relative_to(root):
            log.error("rank %d sent a file outside the run folder (%s): not written", rank, name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, zlib.decompress(store.get(_key(f"file/{rank}", i))))


def report_deaths(ran_here: dict[int, dict[str, Any]], has_record: set[int], exit_code: int,
                  wait_s: float = 30.0) -> None:
    """On a node without global rank 0: tell rank 0 of every rank that started here
    (``ran_here``: :func:`started`) and wrote no record (it died), so the merged run names it."""
    from torch.distributed import TCPStore

    dead = {r: info for r, info in ran_here.items() if r not in has_record and r != 0}
    if not dead:
        return
    first = next(iter(dead.values()))
    try:
        store = TCPStore(first["master_addr"], int(first["port"]), int(first["world_size"]), is_master=False,
                         timeout=timedelta(seconds=wait_s))
        for rank, info in dead.items():
            store.set(_key("died", rank), json.dumps({**info, "exit_code": exit_code}))
    except Exception as exc:  # rank 0's node is gone too: this node's folder says it
        log.error("could not tell rank 0 at %s:%s that ranks %s died (%s)", first["master_addr"],
                  first["port"], ", ".join(map(str, dead)), exc)
