"""``vaebench run --nproc N``: the script's ranks launched with PyTorch's own elastic launcher
(torchrun), each running :mod:`bench.capture.rank`, and their records collected.

On one node every record is in this node's staging folder. With several nodes, global rank 0's
node receives every rank's record over the network (:mod:`bench.ranks.gather`) and writes the
merged run (this process serves the gather); another node keeps its own ranks, tells node 0 of
the ones that died here, and says where the merged run is. A node that never joins the job is
named from torchrun's rendezvous error, in one line.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from bench.errors import UsageError
from bench.measure.result import Measurement
from bench.measure.specs import ScriptSpec
from bench.ranks.gather import INTERRUPTED_WAIT_S, STARTED, WAIT_S, Receiver, report_deaths, started
from bench.ranks.records import DIED, died, load_record
from plumbing.argtypes import option_value

log = logging.getLogger("bench")
ROOT = Path(__file__).resolve().parents[2]


def launch_ranks(spec: ScriptSpec, stage: Path, entry: str) -> tuple[list[Measurement], int]:
    """torchrun (``spec.nproc`` ranks on this node, its options ``spec.torchrun``) running the
    module ``entry`` in each rank (the capture's, ``bench.capture.rank``: named by the caller, so
    that this floor names nothing above it); each rank writes rankN.json into the staging folder."""
    nproc, torchrun = spec.nproc, spec.torchrun
    given = {k: v for k, v in asdict(spec).items() if k != "command"}
    extra = shlex.split(torchrun)
    if not any(a.startswith(("--rdzv", "--master", "--nnodes", "--standalone")) for a in extra):
        extra = ["--standalone", *extra]  # a free port: two runs at once do not collide on 29500
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               *extra, "-m", entry, str(stage), json.dumps(given), "--", *spec.command]
    log.info("launching %d ranks with torchrun: %s", nproc, spec.shell())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    receiver = Receiver(stage).start()  # serves the gather once global rank 0 starts on this node
    code, tail, interrupted = _torchrun(command, env)
    ran_here = started(stage)
    if 0 in ran_here:  # node 0: what the other nodes send (each rank at its end)
        others = set(range(int(ran_here[0]["world_size"]))) - set(ran_here)
        missing = receiver.finish(others, INTERRUPTED_WAIT_S if interrupted else WAIT_S)
        if missing:
            log.error("ranks %s sent no record to this node", ", ".join(map(str, missing)))
    else:
        receiver.finish(set(), 0.0)
    return collect(stage, code, nproc=nproc, torchrun=extra, tail=tail, ran_here=ran_here), code


def _torchrun(command: list[str], env: dict[str, str]) -> tuple[int, list[str], bool]:
    """Run torchrun, its stderr passed through as it comes, its last lines kept (a rendezvous
    failure is read from them). A Ctrl-C reaches torchrun and its ranks too (one process group):
    wait for them to write what they measured; a second Ctrl-C stops torchrun at once."""
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True, errors="replace")
    tail: collections.deque[str] = collections.deque(maxlen=60)
    interrupts = 0
    while True:
        try:
            assert proc.stderr is not None
            for line in proc.stderr:
                sys.stderr.write(line)
                tail.append(line)
            return proc.wait(), list(tail), interrupts > 0
        except KeyboardInterrupt:
            interrupts += 1
            if interrupts > 1:
                proc.send_signal(signal.SIGTERM)
            log.warning("Ctrl-C: the ranks write what they measured%s", "" if interrupts > 1 else
                        " (Ctrl-C again to stop torchrun now)")


def collect(stage: Path, code: int, *, nproc: int, torchrun: list[str], tail: list[str],
            ran_here: dict[int, dict]) -> list[Measurement]:
    """The records in the staging folder, by global rank: this node's ranks, and on global rank
    0's node every node's (gathered over the network); a rank that wrote none is named, with its
    node where its node said so. ``ran_here``: the ranks that announced themselves here."""
    found = {int(p.stem[4:]): load_record(p) for p in sorted(stage.glob("rank*.json"))
             if p.stem[4:].isdigit()}
    notices = {int(p.name[4:].split(".")[0]): json.loads(p.read_text())
               for p in stage.glob("rank*.died.json")}
    for p in stage.glob("rank*.json"):
        p.unlink()
    shutil.rmtree(stage / STARTED, ignore_errors=True)
    if not ran_here and not found:
        raise UsageError(never_joined(torchrun, code, tail))
    world = max([m.process.world_size for m in found.values() if m.process]
                + [int(i["world_size"]) for i in ran_here.values()] + [nproc])
    if 0 in ran_here or 0 in found:  # this node holds global rank 0: the run of every node
        expected = list(range(world))
    else:
        report_deaths(ran_here, set(found), code)
        expected = sorted(set(found) | set(ran_here))
        if found:
            where = next((i["master_addr"] for i in ran_here.values() if i.get("master_addr")), "")
            log.info("this node's ranks %s are written here; the merged run of all %d ranks is written by "
                     "the node of global rank 0%s, into its --out", ", ".join(map(str, sorted(found))), world,
                     f" ({where})" if where else "")
    for rank in expected:
        if rank not in found:
            notice = notices.get(rank)
            if notice is None and rank in ran_here and world > nproc:  # several nodes: name its node
                notice = {**ran_here[rank], "exit_code": code}
            found[rank] = died(rank, notice)
            log.error("rank %d: %s; the other ranks' results are kept", rank,
                      found[rank].reason if notice else f"{DIED}, or its node never sent it (torchrun's "
                      f"exit code {code})")
    if all(m.reason.startswith(DIED[:14]) and not m.samples for m in found.values()):
        if not (0 in ran_here or 0 in found) and ran_here:  # rank 0's node names them: its code stands
            print(f"vaebench run: every rank of this node died ({', '.join(f'rank {r}' for r in expected)}; "
                  f"torchrun's exit code {code}); the node of global rank 0 was told, and its merged run "
                  "names them", file=sys.stderr)
            raise SystemExit(code or 1)
        raise UsageError(f"no rank wrote a record (torchrun exit code {code}); see its output above")
    return [found[r] for r in sorted(found)]


def never_joined(torchrun: list[str], code: int, tail: list[str]) -> str:
    """One line: no rank started, and, from torchrun's own words, which node is missing."""
    nodes = option_value(torchrun, "--nnodes") or "1"
    me = option_value(torchrun, "--node-rank") or option_value(torchrun, "--node_rank") or "0"
    text = "".join(tail)
    joined = re.search(r"(\d+)/(\d+) clients joined", text)
    if joined or "RendezvousTimeoutError" in text or "DistStoreError" in text:
        total = int(nodes.split(":")[-1]) if nodes.split(":")[-1].isdigit() else 0
        others = [str(n) for n in range(total) if str(n) != me]
        seen = f" ({joined.group(1)} of {joined.group(2)} nodes joined)" if joined else ""
        missing = (f"node {others[0]} never joined" if len(others) == 1 else
                   f"not every one of nodes {', '.join(others)} joined" if others else "a node never joined")
        return (f"{missing}{seen}: torchrun's rendezvous timed out on node {me}; start `vaebench run` with "
                "the same --torchrun options and its --node-rank on every node, or wait longer (--torchrun "
                "\"... --rdzv-conf timeout=SECONDS\" with --master-addr, join_timeout= with c10d)")
    return (f"no rank started: torchrun exited with code {code} before running the script "
            "(its output above says why)")

