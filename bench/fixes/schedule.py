"""``vaebench run --try``: the baseline process first (what it built decides the fixes); then
every fix that can be switched between steps (:mod:`bench.capture.switches`) measured in the
script's own process, pairs of single steps in blocks, the A/A with them -- as many short
processes of the script as the blocks need (a script may end first); short seeded processes for
their numerics; then the fixes that cannot be switched (a DataLoader's workers: the loader is
built once) in processes alternated with the baseline's, ``repeats`` each; then the faster fixes
together, the same way. Every child receives its spec as data (:mod:`bench.capture.child`).

Ctrl-C or ``--max-minutes`` keeps everything measured so far: the run is saved and rendered
as partial.

:mod:`bench.fixes.children` runs one process; this module decides which, and when to stop."""

from __future__ import annotations

import logging
import math
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench.capture.switches import switchable, window_of
from bench.errors import UsageError
from bench.fixes import catalogue
from bench.fixes.catalogue import Fix
from bench.fixes.children import Children
from bench.measure import tries
from bench.measure.alternation import alternate
from bench.measure.result import Measurement, Result
from bench.measure.specs import Duet, TrySpec

log = logging.getLogger("bench")

Side = tuple[str, tuple[str, ...]]  # a side of the pairs: its name, the patches its switch applies
Regrouped = tuple[list[tuple[list[Side], int]], list[str]]  # (sides, pairs a block) each; sides left out


def run_try(spec: TrySpec, stage: Path, launcher=None) -> Result:
    """The whole ``--try``: a ``try`` Result, partial when stopped (Ctrl-C, --max-minutes)."""
    with tempfile.TemporaryDirectory(prefix="vaebench-try-", dir=stage) as tmp:
        children = Children(spec, Path(tmp), launcher)
        why = ""
        try:
            spec, fixes = _probe(spec, children)
            spec, why = _phase_one(spec, fixes, children)
            if not why:
                spec, why = combine(spec, fixes, children, _result(spec, children, why))
        except KeyboardInterrupt:
            why = f"interrupted (Ctrl-C) after {len(children.measured)} processes: what they measured is kept"
            log.warning(why)
    return _result(spec, children, why)


def run_compare(spec: TrySpec, stage: Path, launcher=None) -> Result:
    """``run --compare A B``: B (``spec.versus``) against A (``spec.command``) in alternating
    processes, by the same children and rule as ``--try``'s process fixes: a ``try`` Result with
    one side, B."""
    with tempfile.TemporaryDirectory(prefix="vaebench-compare-", dir=stage) as tmp:
        children = Children(spec, Path(tmp), launcher)
        why = ""
        b = Fix("B", "compare", (), f"python {' '.join(spec.versus)}", command=spec.versus)
        spec = replace(spec, fixes=("B",))
        try:
            first = children.run(tries.BASELINE, 0, 1, None)
            if first.status != "ok":
                raise UsageError(f"A ({spec.shell()}) failed: {first.reason}")
            why = schedule(spec, [b], children)
        except KeyboardInterrupt:
            why = f"interrupted (Ctrl-C) after {len(children.measured)} processes: what they measured is kept"
            log.warning(why)
    return _result(spec, children, why)


def _probe(spec: TrySpec, children: Children) -> tuple[TrySpec, list[Fix]]:
    log.info("the baseline first: %s (seed %s), %d warm-up + %d measured steps",
             spec.shell(), spec.seed, spec.warmup, spec.steps)
    first = children.run(tries.BASELINE, 0, 1, None)
    if first.status != "ok":
        raise UsageError(f"the baseline itself failed ({first.reason}): run it with plain `vaebench run` "
                         "to see why")
    fixes, skipped = catalogue.propose(catalogue.Seen.of(first, nproc=spec.nproc or 1),
                                        list(spec.asked) if spec.asked is not None else None)
    switched = tuple(f.name for f in fixes if switchable(f.patches))
    spec = replace(spec, fixes=tuple(f.name for f in fixes), switched=switched,
                   skipped=tuple(f"{k}: {v}" for k, v in skipped.items()))
    for entry, reason in skipped.items():
        log.info("skipped %s: %s", entry, reason)
    _estimate(spec, fixes, children, first)
    return spec, fixes


def _estimate(spec: TrySpec, fixes: list[Fix], children: Children, first: Measurement) -> None:
    """Logs what comes and about how long it takes, from the probe: its start-up (the process's
    wall time less its steps) and its median step. The switches' steps may need several
    processes (a script that ends first): the estimate is refined after the first of them."""
    step = tries.median_step(first)
    switched = [f for f in fixes if f.name in spec.switched]
    others = len(fixes) - len(switched)
    plan = Duet(sides=("",), patches=("",), pairs=spec.pairs)
    block = 2 * spec.pairs  # the A/A's
    for f in switched:
        settle, timed = window_of(f.patches)
        block += 2 * (settle + timed) * replace(plan, settle=(settle,), steps=(timed,)).pairs_of("")
    steps = block * spec.blocks
    per = children.per_process()
    start = max(per - (spec.warmup + spec.steps) * step, 0.0)
    # processes of the script the blocks need: an epoch of its first DataLoader at least (more
    # epochs, or a script without a loader, unknown: one process)
    ahead = spec.warmup + 1 + len(switched) * spec.switch_warm
    epoch = _epoch_steps(first)
    held = max(epoch - ahead, 1) if epoch and epoch > ahead else None
    runs = math.ceil(steps / held) if held else 1
    numerics = len(switched) + (0 if others else 1)
    processes = (1 + others) * spec.repeats - 1 if others else 0
    children.later_s = numerics * (start + (spec.warmup + spec.losses) * step) + processes * per
    duet_s = runs * (start + ahead * step) + steps * step if switched else 0.0
    log.info("in-process: %s and the A/A, %d blocks x %d pairs each (~%d steps, ~%.0f s in %d process%s of "
             "the script); numerics: %d short runs; in processes: %d fixes, %d processes", ", ".join(
                 spec.switched) or "nothing", spec.blocks, spec.pairs, steps, duet_s, runs,
             "es" if runs > 1 else "", numerics, others, processes)
    log.info("about %.1f minutes in all at the baseline's step (longer where a fix slows the step: "
             "refined after the first process)", (per + duet_s + children.later_s) / 60)


def _epoch_steps(first: Measurement) -> int | None:
    """Steps an epoch of the script's first DataLoader holds (None: none, or no length)."""
    loader = next((b for b in first.process.built if b.kind == "DataLoader"), None) if first.process else None
    batches = loader.options.get("batches") if loader else None
    per_step = first.process.step_batches if first.process else 1
    return batches // max(per_step, 1) if batches else None


def _phase_one(spec: TrySpec, fixes: list[Fix], children: Children) -> tuple[TrySpec, str]:
    switched = [f for f in fixes if f.name in spec.switched]
    sides = [(tries.AGAIN, ())] + [(f.name, f.patches) for f in switched]
    why, too_long = duet_blocks(spec, children, sides, 1, _notes(switched))
    if too_long:  # a loader's windows longer than the script: its processes, as before switches
        spec = replace(spec, switched=tuple(s for s in spec.switched if s not in too_long))
        switched = [f for f in switched if f.name not in too_long]
    others = [f for f in fixes if f.name not in spec.switched]
    if why:
        return spec, why
    why = _over_time(spec, children, "the numerics' short runs")
    if why:
        return spec, why
    broken = {m.notes.get("failed_in") for m in children.measured if m.notes.get("side") == tries.SWITCHES}
    # losses only: a second baseline and each switch that did not break the script
    short = [None] * (0 if others else 1) + [f for f in switched if f.name not in broken]
    if short:
        log.info("numerics: %d short seeded runs (%s)", len(short),
                 ", ".join(f.name if f else tries.BASELINE for f in short))
        children.run_many([(f.name if f else tries.BASELINE, i + 1, 1, f) for i, f in enumerate(short)],
                        numerics=True)
    return spec, schedule(spec, others, children)


def _notes(fixes: list[Fix]) -> dict:
    return {"fixes": {f.name: {"group": f.group, "patches": list(f.patches), "edit": f.edit, "entry": f.entry}
                      for f in fixes}}


MIN_FIT_PAIRS = 4  # a block of fewer pairs than this is one or two steps' median


def duet_blocks(spec: TrySpec, children: Children, sides: list[Side], phase: int,
                notes: dict) -> tuple[str, list[str]]:
    """The sides' blocks of pairs, in as many processes of the script as they need; returns
    why it stopped ("" when done) and the sides no process of the script is long enough for.

    A process that ends early (or fails) keeps its full blocks; a side whose switch broke the
    script is dropped and the others go on without it. A script too short for one block of
    every side (it ended before the first was full) has its sides regrouped into processes that
    each hold a block, with fewer pairs where one side alone needs more steps than it runs."""
    groups, too_long = [(sides, spec.pairs)], []
    while groups:
        group, pairs = groups.pop(0)
        why, regrouped = _group_blocks(spec, children, group, pairs, phase, notes)
        if why:
            return why, too_long
        if regrouped is not None:
            fitted, dropped = regrouped
            groups, too_long = fitted + groups, too_long + dropped
    return "", too_long


def _group_blocks(spec: TrySpec, children: Children, sides: list[Side], pairs: int, phase: int,
                  notes: dict) -> tuple[str, Regrouped | None]:
    done, k = 0, 0
    while done < spec.blocks:
        if not any(p for _, p in sides):
            return "", None  # the A/A alone (or nothing): no switch to measure
        plan = _plan(spec, sides, done, pairs)
        why = _over_time(spec, children, f"{spec.blocks - done} blocks of the switches")
        if why:
            return why, None
        log.info("in-process pairs: blocks %d-%d of %d (%s), process %d", done + 1, spec.blocks, spec.blocks,
                 ", ".join(plan.sides), k + 1)
        begin = time.perf_counter()
        m = children.run(tries.SWITCHES, k, phase, None, duet=plan,
                       notes=notes | {"pairs": {side: plan.pairs_of(side) for side in plan.sides}})
        k += 1
        broke = m.notes.get("failed_in")
        if broke and broke != tries.AGAIN:
            log.warning("%s failed when switched on (%s): the others go on without it", broke, m.reason)
            sides = [s for s in sides if s[0] != broke]
            continue
        got = len(tries.full_blocks(m))
        wall = time.perf_counter() - begin
        if m.status != "ok":
            log.warning("the script itself failed in the switches' process after %d steps (%s): its %d full "
                        "blocks are kept", m.process.steps_seen if m.process else 0, m.reason, got)
        if got == 0:
            return _short_script(spec, children, sides, pairs, plan, m, wall)
        if got < spec.blocks - done:
            more = math.ceil((spec.blocks - done - got) / got)
            log.info("%d of %d blocks done in a process of %d steps: %d more of ~%.0f s, then the rest: "
                     "about %.1f minutes in all", done + got, spec.blocks,
                     m.process.steps_seen if m.process else 0, more, wall,
                     children.elapsed_min() + (more * wall + children.later_s) / 60)
        done += got
    return "", None


def _short_script(spec: TrySpec, children: Children, sides: list[Side], pairs: int, plan: Duet,
                  m: Measurement, wall: float) -> tuple[str, Regrouped | None]:
    """No block was full: the sides regrouped to fit the steps the script ran (up to its end, or
    its own failure: the same at every run), or why not."""
    if not m.process or not m.process.steps_seen:
        return _no_block(spec, plan, m), None
    room = m.process.steps_seen - spec.warmup - 1
    fitted, dropped = pack(spec, sides, room)
    if (not fitted and not dropped) or any(g == sides and p == pairs for g, p in fitted):
        return _no_block(spec, plan, m), None
    runs = sum(math.ceil(spec.blocks / max(room // _cost(spec, g, p), 1)) for g, p in fitted)
    how = [f"{', '.join(s for s, _ in g)} in processes of their own, {p} pairs a block" for g, p in fitted]
    how += [f"{s} in processes (its windows need more steps)" for s in dropped]
    log.info("the script ran %d steps: too few for a block of every switch (a longer run of it, more "
             "epochs, needs fewer processes); %s: about %d processes of ~%.0f s, %.1f minutes in all",
             m.process.steps_seen, "; ".join(how), runs, wall,
             children.elapsed_min() + (runs * wall + children.later_s) / 60)
    return "", (fitted, dropped)


def pack(spec: TrySpec, sides: list[Side], room: int) -> Regrouped:
    """Sides grouped (in order, first fit) so that a group's warm-ups and one block take at most
    ``room`` steps. The A/A (``sides[0]``, no patches) rides with the first switch; a group that
    does not fit at ``spec.pairs`` gets fewer pairs (at least ``MIN_FIT_PAIRS``); a side that
    still does not fit alone (a loader's windows) is returned apart."""
    def cost(group: list[Side], pairs: int) -> int:
        return _cost(spec, group, pairs)

    def fewest(group: list[Side]) -> int:
        pairs = spec.pairs
        while pairs > MIN_FIT_PAIRS and cost(group, pairs) > room:
            pairs -= 1
        return pairs

    groups: list[tuple[list[Side], int]] = []
    dropped: list[str] = []
    waiting = [s for s in sides if not s[1]]  # the A/A, until a switch takes it in
    for side in (s for s in sides if s[1]):
        home = next((g for g, p in groups if cost([*g, side], p) <= room), None)
        if home is not None:
            home.append(side)
            continue
        for group in ([*waiting, side], [side]):
            if cost(group, fewest(group)) <= room:
                groups.append((group, fewest(group)))
                waiting = [] if len(group) > 1 else waiting
                break
        else:
            dropped.append(side[0])
    return groups, dropped


def _cost(spec: TrySpec, group: list[Side], pairs: int) -> int:
    """Steps a process of ``group`` spends on its switches' warm-ups and one block."""
    plan = _plan(spec, group, 0, pairs)
    block = sum(2 * plan.pairs_of(s) * sum(plan.window(s)) for s in plan.sides)
    return spec.switch_warm * sum(1 for _, p in group if p) + block


def _plan(spec: TrySpec, sides: list[Side], done: int, pairs: int | None = None) -> Duet:
    """One process's blocks, from block ``done`` on: each side's switch and its windows."""
    windows = [window_of(p) for _, p in sides]
    return Duet(sides=tuple(s for s, _ in sides), patches=tuple("+".join(p) for _, p in sides),
                first_block=done, blocks=spec.blocks - done, pairs=pairs or spec.pairs, warm=spec.switch_warm,
                seed=spec.seed or 0, settle=tuple(w[0] for w in windows), steps=tuple(w[1] for w in windows))


def _no_block(spec: TrySpec, plan: Duet, m: Measurement) -> str:
    steps = m.process.steps_seen if m.process else 0
    need = sum(2 * plan.pairs_of(s) * sum(plan.window(s)) for s in plan.sides)
    if m.status != "ok":
        return (f"the script failed in the switches' process after {steps} steps, before a block of "
                f"pairs was complete: {m.reason}")
    return (f"the switches' process ended before a block of pairs was complete ({steps} steps); a block "
            f"needs {need} steps after {spec.warmup} + {spec.switch_warm} x {len(plan.sides) - 1} warm-up "
            "steps: fewer --pairs, or let the script run longer")


def schedule(spec: TrySpec, fixes: list[Fix], children: Children) -> str:
    """The fixes that cannot be switched: each against the baseline in rotated processes; returns
    why it stopped early ("" if it did not)."""
    if not fixes:
        return ""
    sides = [tries.BASELINE, *(f.name for f in fixes)]
    by_name = {f.name: f for f in fixes}
    total = len(sides) * spec.repeats
    done, given_up = 1, set()
    for i, side in alternate(sides, spec.repeats):
        if i == 0 and side == tries.BASELINE:
            continue  # the first baseline process was the probe
        if side in given_up:
            continue
        why = _over_time(spec, children, f"{total - done} processes")
        if why:
            return why
        log.info("process %d of %d: %s (about %.1f min left)", done + 1, total, side,
                 children.per_process() * (total - done) / 60)
        m = children.run(side, i, 1, by_name.get(side))
        done += 1
        if m.status != "ok" and side in by_name:
            log.warning("%s failed (%s): its other processes are skipped, the other fixes go on",
                        side, m.reason)
            given_up.add(side)
    return ""


def _over_time(spec: TrySpec, children: Children, left: str) -> str:
    next_end = children.elapsed_min() + children.per_process() / 60  # minutes, once one more process ran
    if spec.max_minutes is not None and next_end > spec.max_minutes:
        return (f"stopped at --max-minutes {spec.max_minutes:g} with {left} not run: "
                "the fixes measured less have wider intervals or none")
    return ""


def combine(spec: TrySpec, fixes: list[Fix], children: Children, result: Result) -> tuple[TrySpec, str]:
    """Phase 2: the faster fixes that kept the result, one per group, applied together -- in
    place where every one is a switch (all on against all off), else in processes."""
    chosen = [f for f in fixes if f.name in {r.name for r in tries.choose(tries.rows(result))}]
    if len(chosen) < 2:
        return spec, ""
    together = Fix(tries.COMBINED, "combined", tuple(p for f in chosen for p in f.patches),
                   "; ".join(f.edit for f in chosen))
    spec = replace(spec, combination=tuple(f.name for f in chosen))
    if all(f.name in spec.switched for f in chosen):
        log.info("the faster fixes together: %s, switched on and off together", " + ".join(spec.combination))
        why, _ = duet_blocks(spec, children, [(tries.COMBINED, together.patches)], 2, _notes([together]))
        if not why:
            children.run(tries.COMBINED, 0, 2, together, numerics=True)
        return spec, why
    log.info("the faster fixes together: %s, against the baseline, %d processes each",
             " + ".join(spec.combination), spec.repeats)
    for i, side in alternate([tries.BASELINE, tries.COMBINED], spec.repeats):
        why = _over_time(spec, children, "the combination's processes")
        if why:
            return spec, why
        children.run(side, i, 2, together if side == tries.COMBINED else None)
    return spec, ""


def _result(spec: TrySpec, children: Children, why: str) -> Result:
    import torch

    from bench.measure.environment import Environment

    machine = children.machine or Environment.capture(torch.device("cpu"))
    return Result(kind="try", spec=spec, machine=machine, measurements=list(children.measured),
                  partial={"try/schedule": why} if why else {}, created=children.created,
                  duration_s=time.perf_counter() - children.started)
