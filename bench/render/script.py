"""The sections of a ``script`` Result's reports (``vaebench run``): how the run went,
the headline (median step with its interval, samples/s, peak memory, a bottleneck verdict with
the fixes `--try` would measure), and across torchrun ranks the skew and the straggler."""

from __future__ import annotations

from dataclasses import dataclass

from bench.defaults import SETTLE, UNHOOKED
from bench.measure import derive, stats
from bench.measure.bound import bound
from bench.measure.result import Built, Measurement, Process, Result
from bench.measure.specs import COUNTED, ScriptSpec
from bench.ranks.align import align
from bench.ranks.skew import MATERIAL, own_work, stragglers
from bench.render import memory as tensors
from bench.render import statements


def verdict(result: Result, name: str) -> str:
    """The step's bound (:mod:`bench.measure.bound`) in words, with what to try against it."""
    found = bound(result, name)
    if found is None:
        return ""
    s = found.shares
    if found.kind == "unseen forward":
        return (f"No bottleneck verdict: `forward` takes {s.get('forward', 0.0):.0%} of the step and "
                f"`backward` {s['backward']:.0%}, with {s['other']:.0%} outside every labelled "
                "part -- the module hooks did not see the forward (a model called as `model.forward(x)` "
                "instead of `model(x)`?), so the shares miss it.")
    named = " + ".join(f"`{p}`" for p in found.parts)
    verb = "takes" if len(found.parts) == 1 else "take"
    if found.kind == "no single bound":
        text = "**no single bound**: " + ", ".join(f"{g} {v:.0%}" for g, v in found.split.items())
    elif found.kind == "overhead-bound":
        text = (f"**overhead-bound**: {named} {verb} {found.share:.0%} of the step at MFU {found.mfu:.1%}: "
                "the time goes to per-operator overhead and to work the FLOP count leaves out "
                "(elementwise operations, memory traffic), not to the matmuls and convolutions MFU counts")
    else:
        text = f"**{found.kind}**: {named} {verb} {found.share:.0%} of the step"
    if found.advise and found.fixes:
        largest = f"for {'+'.join(found.parts)}, " if found.kind == "no single bound" else ""
        text += f"; {largest}`vaebench run --try {_command(result)}` measures: {found.fixes}"
    elif found.advise:
        text += ("; no fix of `--try` aims at it: look for `.item()`/`.cpu()` calls, logging and batches "
                 "built by hand outside a DataLoader (indexing a tensor) in the step (the cProfile file "
                 "shows where)")
    return text + "."


def _command(result: Result) -> str:
    command = getattr(result.spec, "command", ())
    return " ".join(command) if command else "train.py"


def headline(result: Result) -> str:
    said = []
    names = result.measured
    if len(names) > 1:  # ranks: the one with the most work of its own (the others wait for it)
        names = [max(names, key=lambda n: own_work(result, n))]
    for name in names:
        m = result[name]
        step = derive.step_ci(result, name)
        batch = m.batch_size
        rss, cuda = m.footprint.max_rss_mb, m.footprint.cuda_peak_mb
        parts = [f"`{name}`: median step {step.value * 1e3:.2f} ms"
                 + (f" (95% CI {step.low * 1e3:.2f}-{step.high * 1e3:.2f})" if step.has_interval else "")]
        if batch:
            per = _batches(batch, m.process)
            parts.append(f"{batch / step.value:,.0f} samples/s ({per})")
        mfu = derive.mfu(result, name)
        if derive.mfu_refused(result, name):
            parts.append(derive.mfu_refused(result, name))
        elif mfu is not None:
            parts.append(f"{_flop(m.footprint.flops_per_step or 0)} per step, MFU {mfu:.1%} of the "
                         f"machine's {result.peak['flops'] / 1e9:,.0f} GFLOP/s ({result.peak['source']})")
        if cuda and rss:
            parts.append(f"peak memory {cuda:,.0f} MB on the GPU ({rss:,.0f} MB resident on the host)")
        elif rss:
            parts.append(f"peak memory {rss:,.0f} MB (the process's max RSS)")
        if clause := tensors.clause(result, name):
            parts.append(clause)
        said.append(", ".join(parts) + ". " + verdict(result, name))
    return " ".join(said)


def how_it_ran(result: Result) -> list[str]:
    spec = result.spec
    assert isinstance(spec, ScriptSpec)
    processes = {m.name: m.process for m in result.measurements if m.process is not None}
    rules = {p.step_rule for p in processes.values() if p.step_rule}
    rule = {"optimizer": "each `optimizer.step()`", "backward": "each `backward()` (no optimizer: "
            "the script updates its parameters by hand)"}.get(next(iter(rules), ""), "")
    rounds = next((p.step_round for p in processes.values() if len(p.step_round) > 1), [])
    if rules == {"optimizer"} and rounds:
        rule = ("each round of the script's optimizer steps, the pattern that repeats: a step = "
                + " then ".join(_runs(rounds)))
    elif rules == {"optimizer"}:
        single = next((p.step_round for p in processes.values() if p.step_round), [])
        rule = f"each step of {single[0]}" if single else rule
    ranks = sum(p.rank is not None for p in processes.values())
    lines = [f"Script: `{spec.shell()}`" + (f", {ranks} ranks under torchrun" if ranks > 1 else "") + ".",
             (f"A step ended at {rule}" if rule else "No step completed (the script ended in or before its "
              "first), so where a step ends was not found")
             + f"; {spec.warmup} warm-up steps left out, " + _measured(result) + "."]
    costs = {n: derive.observing(result, n) for n in result.measured}
    said = [f"`{n}` {statements.overhead_text(c)}" for n, c in costs.items() if c is not None]
    if said:
        window = "single steps" if spec.observe_steps == 1 else f"windows of {spec.observe_steps} steps"
        kept = [p.observe_pairs for p in processes.values() if p.observe_pairs]
        budget = max(kept) if kept else spec.observe_windows
        pairs = max(min(len(t.plain), len(t.tool)) for t in
                    (result[n].profiles[UNHOOKED] for n in costs if costs[n] is not None))
        fewer = (" (fewer than asked: the script ended first)" if pairs < budget else
                 " (fewer than asked: what fits 10 s at the median step)" if pairs < spec.observe_windows
                 else "")
        lines.append(f"Observing it (vaebench's part hooks, on in {pairs} alternated pairs of {window}"
                     f"{fewer} against the step clock alone): " + "; ".join(said) + ".")
    built = next((p.built for p in processes.values() if p.built), [])
    if built:
        lines.append("It built: " + "; ".join(built_text(b) for b in built) + ".")
    for name, p in processes.items():
        how = _how(result, spec, name, p)
        lines.append(f"- `{name}`: {how}.")
    return lines


SHOWN = {"DataLoader": ("batch_size", "num_workers", "pin_memory", "persistent_workers"),
         "optimizer": ("lr", "foreach", "fused")}


def built_text(b: Built) -> str:
    """``SGD`` at train.py:35 (lr=0.1, foreach=None, fused=None): what the fixes would change."""
    options = ", ".join(f"{k}={b.options[k]}" for k in SHOWN.get(b.kind, ()) if k in b.options)
    kind = "model " if b.kind == "model" else ""
    verb = "called at" if b.kind == "model" else "at"  # a model: where the script calls it
    where = f" {verb} `{b.where}`" if b.where else ""
    return f"{kind}`{b.type}`{where}" + (f" ({options})" if options else "")


def _how(result: Result, spec: ScriptSpec, name: str, p: Process) -> str:
    """How one process ended, in words."""
    m = result[name]
    seen = p.steps_seen
    if p.stopped:
        return f"stopped after {seen} steps, once the measured and profiler windows were complete"
    if p.interrupted:
        return f"interrupted (Ctrl-C) after {seen} steps: **partial**"
    if p.error:
        kept = "what was measured before is kept" if m.samples else "nothing of it was measured"
        return f"**failed**: {p.error}; {kept}"
    if p.no_step:
        return p.waited or "no step seen"
    how = f"ran to its end after {seen} steps"
    if spec.steps and len(m.samples) < spec.steps:
        how += f" (before {spec.steps} steps could be measured: fewer were)"
    missing = missing_windows(spec, m)
    if missing:
        how += "; " + "; ".join(missing)
    return how


def missing_windows(spec: ScriptSpec, m: Measurement) -> list[str]:
    """The profilers whose windows the script ended before, with the steps they needed (their
    windows come after the warm-up, the measured steps and one counted step, one tool after
    another): a profiler that did not run is said, never silent."""
    if not spec.steps or m.process is None or m.process.stopped:
        return []
    counted = sum(COUNTED[c] for c in spec.counted)
    out, start = [], spec.warmup + min(spec.steps, spec.first_measured) + counted
    observe = (m.process.observe_pairs or spec.observe_windows) if m.process else spec.observe_windows
    for tool in spec.window_order():
        if tool == SETTLE:
            start += 1
            continue
        if tool == "measure":  # the rest of the measured steps
            start += spec.steps - spec.first_measured
            continue
        windows = observe if tool == UNHOOKED else spec.profile_windows
        need = start + 2 * windows * (spec.observe_steps if tool == UNHOOKED else spec.profile_steps)
        got = m.profiles.get(tool)
        pairs = min(len(got.plain), len(got.tool)) if got else 0
        if pairs < windows:
            ran = f"ran {pairs} of {windows} window pairs" if pairs else "did not run"
            what = "the observing-cost windows (part hooks off)" if tool == UNHOOKED else tool
            out.append(f"{what} {ran} (its windows take steps {start + 1}-{need}; the script ran "
                       f"{m.process.steps_seen})")
        start = need
    return out


def rank_names(result: Result) -> list[str]:
    return [n for n in result.measured if n.startswith("rank")]


@dataclass(frozen=True)
class RankRow:
    """One rank's line of the ranks table, for every renderer."""

    name: str
    node: str  # "host (node k, local rank j)" when the ranks ran on several nodes, else ""
    step_s: float  # median step
    samples_per_s: float | None
    shares: dict[str, float]
    own_s: float  # median own work: the step less its wait in the all-reduce
    reduce_ms: float | None  # DDP's own timing of its all-reduce
    skew: stats.Ratio | None  # own work against the median rank's (None: the median rank)


RANK_PARTS = ("data", "forward", "backward", "collective", "optimizer", "other")  # the ranks table's
OWN_WORK = ("Own work = the step less its wait for the other ranks. Under DDP the wait is in the "
            "gradient all-reduce: a rank's all-reduce time by DDP's own timing less the least of any "
            "rank's (the rank the others wait for waits least), so extra work inside `backward` counts "
            "as own work; DDP gives it as a mean, so a rank's `backward` counts as its median less "
            "that wait in every step. With collectives called by hand (`collective`: blocking "
            "`torch.distributed` calls), the wait is, per step, a rank's time in them less the least "
            "of any rank's. With neither, the step without `backward`. Skew = a rank's own work / the "
            "median rank's, paired by step. All-reduce: DDP's own timing of its backward "
            "communication (every iteration of the measured window, waiting included), and its share "
            "of the median step.")


def rank_rows(result: Result) -> list[RankRow]:
    _, skews = stragglers(result)
    nodes = {m.process.node_rank for m in result.measurements if m.process}
    rows = []
    for name in rank_names(result):
        m, step = result[name], derive.step_seconds(result, name)
        p = m.process
        node = f"{p.node} (node {p.node_rank}, local rank {p.local_rank})" if p and len(nodes) > 1 else ""
        rows.append(RankRow(name, node, step, m.batch_size / step if m.batch_size else None,
                            derive.shares(result, name), own_work(result, name),
                            p.allreduce_ms if p else None, skews.get(name)))
    return rows


def ranks(result: Result) -> list[str]:
    """The ranks table, the skew and the straggler (several processes only)."""
    if len(rank_names(result)) < 2:
        return []
    import pandas as pd

    rows = []
    for r in rank_rows(result):
        rows.append({"rank": r.name, **({"node": r.node} if r.node else {}),
                     "step ms": f"{r.step_s * 1e3:.2f}",
                     "samples/s": f"{r.samples_per_s:,.0f}" if r.samples_per_s else "-",
                     **{p: f"{r.shares[p]:.0%}" for p in RANK_PARTS if p in r.shares},
                     "own work ms": f"{r.own_s * 1e3:.2f}",
                     **({"all-reduce ms (share)": f"{r.reduce_ms:.2f} ({r.reduce_ms / 1e3 / r.step_s:.0%})"}
                        if r.reduce_ms else {}),
                     "skew vs median rank (95% CI)": r.skew.text() if r.skew else "(the median rank)"})
    return ["## Ranks", "", pd.DataFrame(rows).to_markdown(index=False), "", OWN_WORK, "",
            *straggler(result), "", *clocks(result), ""]


def straggler(result: Result) -> list[str]:
    """The straggler (or why none is named), one sentence each, from bench.ranks.skew."""
    if len(rank_names(result)) < 2:
        return []
    found, _ = stragglers(result)
    lines = []
    for s in found:
        if s.named:
            ref = result[s.reference].process
            waited = ref.allreduce_ms if ref and s.waits_in == "backward" else None
            step = derive.step_seconds(result, s.reference)
            where = ("`backward`'s all-reduce" if s.waits_in == "backward"
                     else "the collectives the script calls (`collective`)")
            lines.append(f"**Straggler: `{s.rank}`** does {s.skew.text()} times the own work of "
                         f"`{s.reference}`, {s.gap_share:.0%} of a step more; its `{s.part}` part "
                         f"explains {s.explains:.0%} of the gap; the other ranks wait for it in {where}"
                         + (f" (`{s.reference}`'s all-reduce: {waited:.1f} ms, {waited / 1e3 / step:.0%} "
                            "of its step, by DDP's own timing)" if waited else "") + ".")
        else:
            lines.append(f"`{s.rank}` does measurably more own work than `{s.reference}` ({s.skew.text()}), "
                         f"but only {s.gap_share:.0%} of a step: a small skew, not a straggler.")
    if not any(s.named for s in found):
        lines.append("No straggler: no rank's own work is longer than the median rank's by "
                     f"{MATERIAL:.0%} of a step or more, measurably.")
    return lines


def clocks(result: Result) -> list[str]:
    """The alignment of the ranks' clocks, and the merged trace drawn on it."""
    alignment = align(result)
    if alignment is None:
        return ["The ranks' clocks were not aligned: no collective (and no DDP `backward`) that every "
                "rank measured" + (" (on CUDA the step's marks are GPU events: see the Kineto traces)"
                                   if any(m.device == "cuda" for m in result.measurements) else "") + "."]
    return [f"{alignment.text()[0].upper()}{alignment.text()[1:]}. Every rank on one clock: "
            "`ranks.trace.json` (ui.perfetto.dev), one process per rank, its steps, parts and waits."]


def _batches(samples: int, process: Process | None) -> str:
    """How a step's samples came: one batch, micro-batches accumulated into an optimizer step,
    or batches over several optimizer steps (a WGAN's critic)."""
    micro = process.micro_batches if process else 1
    batches = max(process.step_batches, micro) if process else 1
    if micro > 1:
        per = f"{micro} micro-batches of {samples // batches} per optimizer step: gradients accumulated"
        return per + (f"; {batches} a step" if batches > micro else "")
    if batches > 1:
        steps = len(process.step_round) if process else 0
        return f"{batches} batches of {samples // batches} per step" + (
            f", over its {steps} optimizer steps" if steps > 1 else "")
    return f"batch {samples}, from the batch's first dimension"


def _flop(flops: float) -> str:
    """A step's FLOPs with three significant figures: a small model's are MFLOP, not 0.000 GFLOP."""
    for unit, scale in (("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if flops >= scale:
            return f"{flops / scale:.3g} {unit}"
    return f"{flops:,.0f} FLOP"


def _runs(rounds: list[str]) -> list[str]:
    """A round's optimizer steps with repeats folded: a WGAN's critic "`RMSprop` at t.py:14 x5"."""
    import itertools

    return [f"{step} x{len(same)}" if len(same := list(group)) > 1 else step
            for step, group in itertools.groupby(rounds)]


def _measured(result: Result) -> str:
    """The measured steps: as asked, or fewer where the script ended (or failed) first."""
    spec = result.spec
    assert isinstance(spec, ScriptSpec)
    if not spec.steps:
        return "every later step measured"
    got = min((len(result[n].samples) for n in result.measured), default=0)
    return f"{spec.steps} measured" if got >= spec.steps else \
        f"{got} measured of the {spec.steps} asked (the script ended first)"
