"""The pieces a capture is cut into: windows of steps, the profilers a window runs, a step's
Timing from the clock marks of its parts (:class:`~bench.measure.clock.Marks`, the engine's).
:class:`~bench.capture.recorder.Recorder` fills them from PyTorch's global hooks."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

import torch

from bench.defaults import STEP_PARTS, UNHOOKED
from bench.measure.clock import Marks, Timing

OBSERVE_BUDGET_S = 10.0  # observing's pairs: at most what fits this long at the median step ...
OBSERVE_MIN_PAIRS = 10  # ... but at least this many, whatever a step costs


class Stop(BaseException):  # not an error: the capture has what it needs
    """Raised from a hook after the last window: unwinds the script (its ``finally`` blocks run;
    ``except Exception`` does not catch it)."""


@dataclass
class Window:
    """A stretch of consecutive steps: ``kind`` is ``warmup``, ``measure``, ``plain`` or a tool's
    name; its steps are kept as Timings (one step each)."""

    kind: str
    steps: int
    tool: str | None = None  # the tool whose overhead a plain window is paired with
    timings: list[Timing] = field(default_factory=list)
    filled: int = 0  # steps it ended (their Timings are read later: Recorder._resolve)
    block: int | None = None  # --try's switches: the block of a pair's window (-1: a switch's warm-up)


def first_tensor(batch: Any) -> torch.Tensor | None:
    """The first tensor in a batch (a tensor, or a tuple/list/dict of them)."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, dict):
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)):
        for item in batch:
            found = first_tensor(item)
            if found is not None:
                return found
    return None


def batch_size_of(batch: Any) -> int | None:
    """The first dimension of the first tensor in a batch."""
    tensor = first_tensor(batch)
    return int(tensor.shape[0]) if tensor is not None and tensor.dim() else None


def step_timing(marks: Marks, number: int, start: Any, end: Any, spans: list[list[Any]]) -> Timing:
    """One step's Timing from its marks: each part's own time (without the parts inside it: parts
    nest), and ``other``, the rest of the step. ``spans``: [name, start, end, parent index]."""
    step = marks.elapsed(start, end)
    own: dict[str, float] = {}
    children = [0.0] * len(spans)
    durations = [marks.elapsed(s, e) if e is not None else 0.0 for _, s, e, _ in spans]
    for i, (_, _, _, parent) in enumerate(spans):
        if parent >= 0:
            children[parent] += durations[i]
    for i, (name, _, _, _) in enumerate(spans):
        own[name] = own.get(name, 0.0) + max(durations[i] - children[i], 0.0)
    parts = {p: [own[p]] for p in STEP_PARTS if p in own}
    parts["other"] = [max(step - sum(own.values()), 0.0)]
    return Timing(seconds=step, steps=[step], parts=parts, round=number)


def merge_window(timings: list[Timing]) -> Timing:
    """One window as one sample: its steps one after another."""
    parts: dict[str, list[float]] = {}
    for t in timings:
        for p, v in t.parts.items():
            parts.setdefault(p, []).extend(v)
    return Timing(seconds=sum(t.seconds for t in timings), steps=[s for t in timings for s in t.steps],
                  parts=parts, round=timings[0].round)


def caller_code() -> Any:
    """The code object of the first frame outside torch and this package: the user's function
    that called ``optimizer.step()``."""
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        if f"{os.sep}torch{os.sep}" not in name and f"{os.sep}bench{os.sep}capture" not in name:
            return frame.f_code
        frame = frame.f_back
    return None


def pairs(windows: list[Window], tool: str) -> tuple[list[Timing], list[Timing]]:
    """A tool's windows and the plain windows alternated with them: per-window mean steps."""
    plain = [w for w in windows if w.kind == "plain" and w.tool == tool and w.timings]
    used = [w for w in windows if w.kind == tool and w.timings]
    n = min(len(plain), len(used))
    return [merge_window(w.timings) for w in plain[:n]], [merge_window(w.timings) for w in used[:n]]


def fit_observing(windows: list[Window], measured: Window, budget_s: float = OBSERVE_BUDGET_S,
                  least: int = OBSERVE_MIN_PAIRS) -> tuple[list[Window], int | None]:
    """The windows with only as many observing pairs (part hooks on / off) as fit ``budget_s``
    at the measured median step, at least ``least``: hundreds of single steps cost a second on
    a fast script, and minutes on one whose steps take seconds. Returns the pairs kept (None:
    no observing windows, or nothing measured to size them by)."""
    observing = [i for i, w in enumerate(windows) if UNHOOKED in (w.kind, w.tool)]
    if not observing or not measured.timings:
        return windows, None
    step = sorted(t.seconds for t in measured.timings)[len(measured.timings) // 2]
    pair_s = max(2 * windows[observing[0]].steps * step, 1e-9)
    keep = min(len(observing) // 2, max(least, int(budget_s / pair_s)))
    drop = set(observing[2 * keep:])
    return [w for i, w in enumerate(windows) if i not in drop], keep
