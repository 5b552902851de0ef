"""What a ``--try`` Result says, derived once from its processes.

Two ways a fix is measured, and the Result says which per fix:

- **in-process pairs** (a switch: :mod:`bench.capture.duet`): processes of side ``switches``
  hold, per side, pairs of single steps -- or of windows, for a loader's options -- (off, on)
  whose ``round`` is their block (``notes["pairs"]``: the pairs a block holds per side); each
  block's speedup is the median of its pairs' off/on, and the speedup's 95% interval is taken *across*
  the blocks (:func:`bench.measure.stats.across_blocks`), not from the pooled pairs; the
  verdict by the band (``unchanged`` only within +-5%).
- **processes** (persistent workers, a user's fix without a switch, ``run --compare``): B/A
  against the baseline's processes of the same phase by the rule ``regress`` applies (each
  process's median step one sample), worded as advice (``unchanged`` only within the threshold).

Numerics come from short seeded processes either way (toggling changes the trajectory). Each
process is one Measurement with ``notes``: ``side`` (baseline, ``switches``, a fix, the
combination), ``repeat``, ``phase`` (1: every fix alone; 2: the combination), ``numerics``
(True: a short run for its losses only), and for a fix its ``group``, ``patches`` and ``edit``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bench.measure import stats
from bench.measure.result import Measurement, Result
from bench.measure.rule import Comparison, Rule, decide
from bench.measure.specs import SWITCH_PAIRS
from bench.measure.stats import Ratio, across_blocks, speed_verdict

BASELINE, AGAIN, COMBINED, SWITCHES = "baseline", "baseline again (A/A)", "combined", "switches"
SAID = {"faster": "faster", "slower": "slower", "unchanged": "unchanged", "noisy": "not measurable"}
MIN_PAIRS = 0.5  # a block counts for a side when it holds at least this share of the pairs asked


@dataclass(frozen=True)
class Row:
    name: str
    edit: str
    group: str
    processes: int
    failed: str  # the first failed process's reason ("" if none)
    comparison: Comparison | None  # measured in processes
    samples_per_s: float | None
    memory_mb: float | None  # median max RSS change against the baseline
    one_off_s: float | None  # median change of the time to the end of the warm-up
    numerics: str
    duet: Ratio | None = None  # measured in-process: the speedup across blocks
    blocks: tuple[float, ...] = field(default=())  # each block's speedup
    # the tensors at the step's peak against the baseline's, by part (MB; processes' fixes)
    tensors_mb: dict[str, float] = field(default_factory=dict)
    # what the comparison's samples time (PER_*): a step, or a sample where the sides' batches
    # differ (a step of twice the samples is not slower for taking longer)
    per: str = "step"
    batches: tuple[tuple[int, ...], ...] = ()  # per sample: each side's samples a step (baseline, this)

    @property
    def how(self) -> str:
        if self.duet is not None:
            n = len(self.blocks)
            return f"in-process pairs, {n} block{'s' if n != 1 else ''}"
        return f"{self.processes} processes" if self.comparison else ""

    @property
    def verdict(self) -> str:
        if self.failed and self.comparison is None and self.duet is None:
            return "failed"
        if self.duet is not None:
            return SAID[str(speed_verdict(self.duet))]
        if self.failed and self.comparison is None:
            return "failed"
        return SAID[str(self.comparison.verdict)] if self.comparison else "not measured"

    @property
    def speedup(self) -> tuple[float, float, float] | None:
        """Baseline step / this step, with its 95% interval."""
        if self.duet is not None:
            d = self.duet
            return (d.value, d.low, d.high) if d.has_interval else None
        c = self.comparison
        return (1 / c.ratio, 1 / c.ci[1], 1 / c.ci[0]) if c else None

    @property
    def spread(self) -> tuple[float, float] | None:
        """The slowest and the fastest block's speedup (in-process only)."""
        return (min(self.blocks), max(self.blocks)) if self.blocks else None

    @property
    def diverged(self) -> bool:
        return self.numerics.startswith("changes the result")

    @property
    def checked(self) -> bool:
        """Were its losses compared with the baseline's and found to keep the result?"""
        return self.numerics.startswith(("same numerics", "numerics changed"))

    @property
    def recommended(self) -> bool:
        return self.verdict == "faster" and not self.diverged

    def payback_steps(self, base_step_s: float) -> float | None:
        """Steps until the one-off cost is saved back (None: not measurably faster, or no cost)."""
        if self.verdict != "faster" or self.one_off_s is None or self.one_off_s <= 0 or not self.speedup:
            return None
        saved = base_step_s * (1 - 1 / self.speedup[0])
        return math.ceil(self.one_off_s / saved) if saved > 0 else None


def processes(result: Result, side: str, phase: int, numerics: bool | None = False) -> list[Measurement]:
    """The side's processes of the phase: timed ones (``numerics`` False), the short runs for
    losses only (True), or both (None)."""
    return [m for m in result.measurements
            if m.notes.get("side") == side and m.notes.get("phase", 1) == phase
            and (numerics is None or bool(m.notes.get("numerics")) == numerics)]


def full_blocks(m: Measurement, asked: dict[str, int] | None = None) -> set[int]:
    """The blocks of a switches process in which every side it ran has at least half the pairs
    asked (``notes["pairs"]``): a block cut short by the script's end counts so, and the next
    process starts after it; a block some side lacks is run again there, so it counts nowhere."""
    asked = asked if asked is not None else m.notes.get("pairs") or {
        k.removeprefix(SWITCH_PAIRS): 1 for k in m.profiles if k.startswith(SWITCH_PAIRS)}
    counts: dict[int, dict[str, int]] = {}
    for side in asked:
        t = m.profiles.get(SWITCH_PAIRS + side)
        for off in t.plain if t else []:
            counts.setdefault(off.round, {}).setdefault(side, 0)
            counts[off.round][side] += 1
    return {b for b, c in counts.items() if all(c.get(s, 0) >= MIN_PAIRS * n for s, n in asked.items())}


def block_speedups(result: Result, side: str, phase: int = 1) -> list[float]:
    """Each full block's speedup for an in-process side (:func:`full_blocks`): the median of its
    pairs' off/on."""
    found = []
    for m in processes(result, SWITCHES, phase):
        pairs = m.profiles.get(SWITCH_PAIRS + side)
        if pairs is None:
            continue
        full = full_blocks(m)
        by_block: dict[int, list[float]] = {}
        for off, on in zip(pairs.plain, pairs.tool, strict=False):
            if off.round in full:
                by_block.setdefault(off.round, []).append(off.per_step / on.per_step)
        found += [stats.median(r) for r in by_block.values()]
    return found


def switched(result: Result, phase: int = 1) -> list[str]:
    """The sides measured in-process in the phase (the A/A among them)."""
    return sorted({k.removeprefix(SWITCH_PAIRS) for m in processes(result, SWITCHES, phase)
                   for k in m.profiles if k.startswith(SWITCH_PAIRS)})


def script_failures(result: Result) -> list[str]:
    """Why the script failed on its own in switches' processes (no switch to blame: it had run
    on before), each once: what precedes the failure in such a process is kept."""
    said = [m.reason for m in result.measurements if m.notes.get("side") == SWITCHES
            and m.status != "ok" and not m.notes.get("failed_in")]
    return list(dict.fromkeys(said))


def median_step(m: Measurement) -> float:
    return stats.median([t.per_step for t in m.samples])


def _ok(ms: list[Measurement]) -> list[Measurement]:
    return [m for m in ms if m.status == "ok" and m.samples]


def _losses(ms: list[Measurement]) -> list[list[float]]:
    return [m.process.losses for m in ms if m.process and m.process.losses]


def deterministic(result: Result) -> bool | None:
    """Did the baseline's processes give the same losses, bit for bit (None: fewer than two)?"""
    runs = _losses(processes(result, BASELINE, 1, None))
    return None if len(runs) < 2 else all(r == runs[0] for r in runs)


def numerics(base: list[list[float]], cand: list[list[float]], tolerance: float) -> str:
    """Same numerics, changed within X%, or the loss diverged -- against the baseline's losses
    step by step (with the baseline's own spread allowed where it is not deterministic)."""
    if not base or not cand:
        return "not compared (no losses recorded)"
    n = min(len(r) for r in base + cand)
    if n == 0:
        return "not compared (no losses recorded)"
    if any(x is None or not math.isfinite(x) for r in base for x in r[:n]):
        return "not compared: the baseline's own loss is not finite"
    if any(x is None or not math.isfinite(x) for r in cand for x in r[:n]):
        return "changes the result: loss diverged (not finite)"
    if all(r[:n] == base[0][:n] for r in base + cand):
        return "same numerics (bitwise)"
    reference = [stats.median([r[i] for r in base]) for i in range(n)]

    def gap(r: list[float]) -> float:
        return max(abs(x - ref) / max(abs(ref), 1e-12) for x, ref in zip(r[:n], reference, strict=False))

    own, worst = max(gap(r) for r in base), max(gap(r) for r in cand)
    if worst <= tolerance + own:
        # a float's last bits (fused kernels sum in another order) show as "less than 0.1%"
        said = "less than 0.1%" if worst < 0.001 else f"at most {worst:.1%}"
        return f"numerics changed, loss off by {said}"
    far = f"{worst:.0%}" if worst < 10 else f"{worst:.3g} times the loss"
    return f"changes the result: loss diverged ({far} from the baseline's, allowed {tolerance + own:.0%})"


# what a process's sample is: its median step; its median step over its samples a step (the
# sides' batches differ); its median step, the batch of a step not seen on both sides
PER_STEP, PER_SAMPLE, PER_STEP_UNSEEN = "step", "sample", "step, batch unseen"


def job_batch(m: Measurement) -> float | None:
    """A process's samples a step: under torchrun the job's (every rank steps its own batch with
    rank 0, whose measurement stands for the process)."""
    return m.batch_size * (m.process.world_size if m.process else 1) if m.batch_size else None


def _job_batches(ms: list[Measurement]) -> list[float]:
    return [b for m in ms if (b := job_batch(m))]


def compared_per(a: list[float], b: list[float], processes: tuple[int, int]) -> str:
    """What to compare (PER_*), from the two sides' job batches (``processes``: how many each
    side has): the time per sample where the batches differ (``run --compare`` of two batch
    sizes), else the step."""
    if not (a and len(a) == processes[0] and b and len(b) == processes[1]):
        return PER_STEP_UNSEEN
    return PER_SAMPLE if stats.median(a) != stats.median(b) else PER_STEP


def _timed(m: Measurement, per: str) -> float:
    return median_step(m) / (job_batch(m) or 1) if per == PER_SAMPLE else median_step(m)


def _delta(base: list[float | None], cand: list[float | None]) -> float | None:
    b, c = [x for x in base if x is not None], [x for x in cand if x is not None]
    return stats.median(c) - stats.median(b) if b and c else None


def row(result: Result, side: str, phase: int = 1) -> Row:
    ms = processes(result, side, phase, numerics=None)
    base, own = _ok(processes(result, BASELINE, phase)), _ok(processes(result, side, phase))
    failed = next((m.reason for m in ms if m.status != "ok"), "")
    notes = next((m.notes for m in ms), {}) or _switch_notes(result, side, phase)
    tolerance = getattr(result.spec, "tolerance", 0.05)
    said = numerics(_losses(_ok(processes(result, BASELINE, 1, None))), _losses(_ok(ms)), tolerance) \
        if side != AGAIN else ""
    short = next((m.reason for m in processes(result, side, phase, True) if m.status != "ok"), "")
    if short and not _losses(_ok(ms)):
        said = f"not compared: its seeded run failed ({short})"
    broke = next((m.reason for m in processes(result, SWITCHES, phase)
                  if m.notes.get("failed_in") == side), "")
    if broke:  # the script failed with this switch on: no verdict, whatever pairs it had before
        return Row(side, notes.get("edit", ""), notes.get("group", ""), len(ms), broke, None, None, None,
                   None, said)
    blocks = block_speedups(result, side, phase)
    if side in switched(result, phase) and (blocks or not own):  # else moved to processes
        duet = across_blocks(blocks)
        rate = baseline_rate(result)
        # its memory from its short seeded runs, the fix applied, against the baseline's processes
        memory = _tensors(_ok(processes(result, BASELINE, 1, None)), _ok(processes(result, side, 1, True)))
        return Row(side, notes.get("edit", ""), notes.get("group", ""), len(ms), failed, None,
                   rate * duet.value if rate and blocks else None, None, _one_off(result, side, phase),
                   said, duet=duet, blocks=tuple(blocks), tensors_mb=memory)
    theirs, sizes = _job_batches(base), _job_batches(own)
    per = compared_per(theirs, sizes, (len(base), len(own)))
    comparison = decide([_timed(m, per) for m in base], [_timed(m, per) for m in own], name=side,
                        advice=True) if len(base) >= 2 and len(own) >= 2 else None
    rate = None if not (comparison and sizes) else (
        1 / comparison.cand_median if per == PER_SAMPLE else stats.median(sizes) / comparison.cand_median)
    batches = tuple(tuple(sorted({int(n) for n in x})) for x in (theirs, sizes)) if per == PER_SAMPLE else ()
    return Row(side, notes.get("edit", ""), notes.get("group", ""), len(ms), failed, comparison, rate,
               _delta([m.footprint.max_rss_mb for m in base], [m.footprint.max_rss_mb for m in own]),
               _delta([m.process.warmup_s for m in base if m.process],
                      [m.process.warmup_s for m in own if m.process]), said, tensors_mb=_tensors(base, own),
               per=per, batches=batches)


def _tensors(base: list[Measurement], own: list[Measurement]) -> dict[str, float]:
    """The median change of each part of the tensors at the step's peak (MB), and of the peak:
    bf16 autocast halving activations, a fused optimizer dropping temporaries."""
    def parts(ms: list[Measurement]) -> list[dict[str, float]]:
        return [{**b.parts, "saved for backward at most": b.saved_max, "peak": b.peak}
                for m in ms if (b := m.footprint.breakdown) is not None]

    b, c = parts(base), parts(own)
    if not b or not c:
        return {}
    return {p: (stats.median([x.get(p, 0) for x in c]) - stats.median([x.get(p, 0) for x in b])) / 2**20
            for p in b[0]}


def _switch_notes(result: Result, side: str, phase: int) -> dict:
    return next((m.notes.get("fixes", {}).get(side, {}) for m in processes(result, SWITCHES, phase)), {})


def _one_off(result: Result, side: str, phase: int) -> float | None:
    """A switch's one-off cost: its warm-up steps (on) beyond as many of its timed on-steps."""
    extra = []
    for m in processes(result, SWITCHES, phase):
        warm = m.notes.get("warm", {}).get(side)
        pairs = m.profiles.get(SWITCH_PAIRS + side)
        if warm and pairs and pairs.tool:
            extra.append(sum(warm) - len(warm) * stats.median([t.per_step for t in pairs.tool]))
    return stats.median(extra) if extra else None


def rows(result: Result) -> list[Row]:
    """The A/A first, then every fix alone, then the combination (if it was measured)."""
    key = ("tries", "rows")
    if key not in result.cache:
        spec = result.spec
        # the A/A: in-process with the switches (in processes in runs saved before them)
        again = [row(result, AGAIN)] if switched(result, 1) or processes(result, AGAIN, 1) else []
        found = again + [row(result, name) for name in getattr(spec, "fixes", ())]
        if processes(result, COMBINED, 2) or COMBINED in switched(result, 2):
            found.append(row(result, COMBINED, 2))
        result.cache[key] = found
    return result.cache[key]


def unsteady(result: Result) -> dict[str, tuple[float, float, float]]:
    """The sides whose processes spread beyond the rule's limit (what makes a verdict "not
    measurable"): side -> (IQR/median of its processes' median steps, the fastest, the slowest)."""
    limit = Rule().max_spread
    out = {}
    for side in [BASELINE, AGAIN, *getattr(result.spec, "fixes", ())]:
        steps = [median_step(m) for m in _ok(processes(result, side, 1))]
        if len(steps) >= 2 and stats.relative_spread(steps) > limit:
            out[side] = (stats.relative_spread(steps), min(steps), max(steps))
    return out


def baseline_step(result: Result, phase: int = 1) -> float | None:
    """The baseline's median step (phase 2 measured in-process has no baseline processes of its
    own: phase 1's)."""
    ok = _ok(processes(result, BASELINE, phase)) or _ok(processes(result, BASELINE, 1))
    return stats.median([median_step(m) for m in ok]) if ok else None


def baseline_rate(result: Result) -> float | None:
    sizes = _job_batches(_ok(processes(result, BASELINE, 1)))
    step = baseline_step(result)
    return stats.median(sizes) / step if sizes and step else None


def choose(found: list[Row]) -> list[Row]:
    """The combination: of each group the fastest fix that was measurably faster and kept the
    result (a loader's worker counts exclude each other, as do foreach and fused)."""
    best: dict[str, Row] = {}
    for r in found:
        if r.name in (AGAIN, COMBINED) or not r.recommended:
            continue
        if r.group not in best or r.speedup[0] > best[r.group].speedup[0]:  # type: ignore[index]
            best[r.group] = r
    return list(best.values())
