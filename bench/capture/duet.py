"""``--try``'s switches measured in the script's own process, step against step ("duet"
measurement: both sides share the machine's state, as the capture's observing pairs do).

After the warm-up and the measured window, each switch runs ``warm`` steps on (its one-off
cost, untimed for the comparison), then come blocks: in each, every side gets ``pairs`` pairs
of single steps, one with its switch on and one off, the order inside each pair and the order
of the sides drawn from a seeded generator (every rank of a job draws the same, so no rank
waits on another's setting). A switch is flipped at a step's end and the next step's clock
starts after the flip (:meth:`Recorder._next_window`): no timed step contains one.

The windows are the recorder's own: a pair is a ``plain`` window (tool = the side) and a
``switch:<side>`` window of one step each, both carrying their block.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from bench.capture.switches import Live, Nothing, Switch, make
from bench.capture.windows import Window, merge_window
from bench.measure.clock import Timing
from bench.measure.result import ToolTiming
from bench.measure.specs import SWITCH_PAIRS, Duet
from bench.profile.tools import Profiler


def kind(side: str) -> str:
    return SWITCH_PAIRS + side


def plan(duet: Duet) -> list[Window]:
    """Each switch's warm-up, then the blocks of pairs."""
    windows = [Window(kind(side), duet.warm, block=-1)
               for side in duet.sides if duet.side_patches(side)] if duet.warm else []
    for block in range(duet.first_block, duet.first_block + duet.blocks):
        draw = random.Random(f"{duet.seed}:{block}")
        # every side's pairs in one shuffled order: a side of windows (fewer pairs) is spread
        # over the block like the others
        turns = [side for side in duet.sides for _ in range(duet.pairs_of(side))]
        draw.shuffle(turns)
        for side in turns:
            n = sum(duet.window(side))
            pair = [Window("plain", n, tool=side, block=block), Window(kind(side), n, block=block)]
            windows += pair[::-1] if draw.random() < 0.5 else pair
    return windows


class SwitchTool(Profiler):
    """A side's switch as the recorder's tool: on at its windows' start, off at their end, right
    at the step's end (not deferred); made from the script's live objects at its first start."""

    deferred = False

    def __init__(self, patches: tuple[str, ...], live: Callable[[], Live]):
        self.patches, self.live = patches, live
        self.switch: Switch | None = None

    def start(self) -> None:
        if self.switch is None:
            self.switch = make(self.patches, self.live()) if self.patches else Nothing()
        self.switch.on()

    def stop(self) -> None:
        if self.switch is not None:
            self.switch.off()


def tools(duet: Duet, live: Callable[[], Live]) -> dict[str, Profiler]:
    return {kind(side): SwitchTool(duet.side_patches(side), live) for side in duet.sides}


def pairs(windows: list[Window], side: str, settle: int = 0) -> ToolTiming:
    """The side's complete pairs, off (plain) and on, each Timing's ``round`` its block: one
    step, or a window's steps after the ``settle`` first ones."""
    off: list[Timing] = []
    on: list[Timing] = []
    i = 0
    while i + 1 < len(windows):
        a, b = windows[i], windows[i + 1]
        paired = a.block is not None and a.block >= 0
        if paired and side in (a.tool, _side(a)) and len(a.timings) == a.steps and len(b.timings) == b.steps:
            plain, used = (a, b) if a.kind == "plain" else (b, a)
            off.append(_blocked(plain.timings[settle:], a.block))
            on.append(_blocked(used.timings[settle:], a.block))
        i += 2 if paired else 1
    return ToolTiming(off, on)


def blamed(windows: list[Window], index: int) -> str | None:
    """The switch that broke the script, failed in window ``index``: the side whose switch was
    on there, if it had never been on through a whole window before (its warm-up). A failure
    after that -- the script's own error at step 60 hits whichever side is on -- blames none."""
    side = _side(windows[index])
    if side is None:
        return None
    ran = any(_side(w) == side and len(w.timings) == w.steps for w in windows[:index])
    return None if ran else side


def _side(w: Window) -> str | None:
    return w.kind[len(SWITCH_PAIRS):] if w.kind.startswith(SWITCH_PAIRS) else None


def _blocked(timings: list[Timing], block: int) -> Timing:
    """A window's timed steps as one sample (their mean is its ``per_step``), marked with its block."""
    t = merge_window(timings)
    return Timing(seconds=t.seconds, steps=t.steps, parts=t.parts, round=block)


def warm_steps(windows: list[Window]) -> dict[str, Any]:
    """Each switch's warm-up steps (seconds): its one-off cost shows in the first ones."""
    return {_side(w): [t.seconds for t in w.timings] for w in windows if w.block == -1 and w.timings}
