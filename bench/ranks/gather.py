"""Every rank's record, gathered to global rank 0's node over the network (no shared file
system assumed). Under torchrun with several nodes, the ``vaebench run`` of global rank 0's
node -- the parent process, not rank 0 itself -- serves a TCPStore beside the job's own (on
MASTER_ADDR, MASTER_PORT + 1) and writes each record it receives into its run folder; every
rank on another node sends its record (and its profiler files) there when it ends. On one node
there is nothing to gather.

Why the parent and not rank 0: a rank that stops early (Ctrl-C, an exception) keeps its
process group's connections open until its process exits, so the other ranks stay blocked in
their next collective until then. Were rank 0 the one listening, it would wait for records
that can only come once it has gone. The parent outlives its ranks: rank 0 exits, the others
fail at once, and their records still arrive.

A rank that dies sends nothing; the ``vaebench run`` of its node, which sees it die, sends its
**death notice** instead (global rank, node, host, torchrun's exit code), so node 0 names it at
once rather than waiting out ``WAIT_S``. Each rank announces itself in its node's folder when
it starts (``started/rankN.json``: its ranks, its node, where the gather listens): that is how
a node's ``vaebench run`` knows which global ranks it ran, whether rank 0 is among them, and
where to send a notice.

What travels: one record a rank (its Measurement as JSON: every measured step's times and
parts, a few hundred bytes a step; about 60-120 KB a rank for a default run), and from other
nodes each rank's profiler files, compressed.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import zlib
from datetime import timedelta
from pathlib import Path
from typing import Any

from plumbing.files import write_atomic

log = logging.getLogger("bench")
PORT_OFFSET = 1  # the gather's port: the job's MASTER_PORT + this
WAIT_S = 120.0  # how long node 0 waits for a rank that has neither sent its record nor been reported dead
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
        "world_size": int(env.get("WORLD_SIZE", "1")),
        "local_world_size": int(env.get("LOCAL_WORLD_SIZE", env.get("WORLD_SIZE", "1"))),
        "master_addr": env.get("MASTER_ADDR", ""),
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


def send(record: str, rank: int, out: Path, files: list[str] | None = None, wait_s: float = WAIT_S) -> None:
    """From a rank on a node other than global rank 0's: its record, and ``files`` (its
    artifacts, paths relative to ``out``: Kineto traces ...) so that node 0's run folder holds
    every rank's (Holistic Trace Analysis reads one folder of every rank). A rank on node 0
    sends nothing: its files are already there."""
    from torch.distributed import TCPStore

    env = os.environ
    if int(env.get("GROUP_RANK", "0")) == 0:
        return
    host, port = env["MASTER_ADDR"], int(env["MASTER_PORT"]) + PORT_OFFSET
    try:
        store = TCPStore(host, port, int(env["WORLD_SIZE"]), is_master=False,
                         timeout=timedelta(seconds=wait_s))
        if files:
            _send_files(store, rank, out, files)
        store.set(_key("record", rank), record)  # last: once node 0 sees it, the files are there
    except Exception as exc:  # node 0 gone: this node keeps its own record
        log.error("rank %d could not send its record to node 0 at %s:%d (%s); this node's run folder "
                  "keeps it", rank, host, port, exc)


class Receiver:
    """Node 0's side, in its ``vaebench run``: once global rank 0 has announced itself in this
    node's folder, serve the store its address names; after torchrun, take what came."""

    def __init__(self, stage: Path):
        self.stage = stage
        self.store: Any = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def _watch(self) -> None:
        from torch.distributed import TCPStore

        path = self.stage / STARTED / "rank0.json"
        while not self._done.is_set():
            if path.exists():
                try:
                    info = json.loads(path.read_text())
                except ValueError:  # being written
                    time.sleep(0.05)
                    continue
                if info["world_size"] <= info.get("local_world_size", info["world_size"]):
                    return  # one node: nothing to gather
                try:
                    self.store = TCPStore(info["master_addr"], int(info["port"]), int(info["world_size"]),
                                          is_master=True, timeout=timedelta(seconds=WAIT_S),
                                          wait_for_workers=False)
                except Exception as exc:  # the port is taken: the other nodes keep their records
                    log.error("could not serve the gather on %s:%s (%s): the other nodes keep their "
                              "records", info["master_addr"], info["port"], exc)
                return
            time.sleep(0.1)

    def finish(self, pending: set[int], wait_s: float) -> list[int]:
        """Stop watching; write what the other nodes sent into the staging folder, waiting up to
        ``wait_s`` for the ``pending`` ranks; returns those never heard of."""
        self._done.set()
        self._thread.join(timeout=5)
        if self.store is None:
            return sorted(pending)
        return _receive(self.store, set(pending), self.stage, wait_s)


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
    """On a node without global rank 0: tell node 0 of every rank that started here
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
