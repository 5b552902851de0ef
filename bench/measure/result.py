"""One run's result: what was asked, on which machine, and every raw sample -- saved as run.json.

Nothing derived is stored: medians, ratios, intervals and verdicts are computed from the raw
samples by :mod:`bench.measure.derive` whenever a renderer asks, so a saved run can be
re-rendered, compared and checked later. Saving and loading is lossless (tested).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.measure.clock import Timing
from bench.measure.environment import Environment
from plumbing.files import write_atomic

SCHEMA = "vaebench.run/1"


class ResultError(ValueError):
    """A run.json is missing or not one; the message names the file and the fix."""


@dataclass
class ToolTiming:
    """A profiler's rounds and the plain rounds interleaved with them (its overhead's samples)."""

    plain: list[Timing]
    tool: list[Timing]


@dataclass
class Result:
    spec: dict[str, Any]  # what was asked: workload, variants, device, sizes, data options
    plan: dict[str, Any]  # how much was measured (engine.Plan)
    machine: Environment
    variants: list[str]  # every variant asked for, in order (the first measured one is the baseline)
    status: dict[str, str]  # ok | skipped | failed
    reasons: dict[str, str] = field(default_factory=dict)  # why skipped / failed
    info: dict[str, dict[str, Any]] = field(default_factory=dict)  # parts, batch size, data
    rounds: dict[str, list[Timing]] = field(default_factory=dict)  # interleaved; bound included
    orders: list[list[str]] = field(default_factory=list)  # the order of each round
    bounds: dict[str, str] = field(default_factory=dict)  # bound name (in rounds) -> its variant
    ordered: bool = False  # the workload's variants are ordered (each vs the one before)
    report: str | None = None  # module:function of the workload's own report section
    peak: dict[str, Any] = field(default_factory=dict)  # the machine's peak FLOP/s and its source
    epochs: dict[str, list[Timing]] = field(default_factory=dict)
    profiles: dict[str, dict[str, ToolTiming]] = field(default_factory=dict)  # variant -> tool
    counters: dict[str, dict[str, float]] = field(default_factory=dict)
    artifacts: dict[str, list[str]] = field(default_factory=dict)  # variant -> paths, relative to run.json
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))  # start
    duration_s: float | None = None  # from the start to the end of the measurements

    @property
    def measured(self) -> list[str]:
        """The variants with samples, in the order asked (one that failed in a later phase keeps
        the rounds it measured before)."""
        return [v for v in self.variants if self.status.get(v) in ("ok", "failed") and self.rounds.get(v)]

    def bound_of(self, variant: str) -> str | None:
        """The name of ``variant``'s compute-only bound in ``rounds`` (None: none measured)."""
        return next((b for b, v in self.bounds.items() if v == variant and self.rounds.get(b)), None)

    @property
    def baseline(self) -> str | None:
        return self.measured[0] if self.measured else None

    def to_dict(self) -> dict[str, Any]:
        def timings(d: dict[str, list[Timing]]) -> dict[str, list[dict[str, Any]]]:
            return {k: [t.as_dict() for t in v] for k, v in d.items()}

        return {
            "schema": SCHEMA, "created": self.created, "spec": self.spec, "plan": self.plan,
            "machine": self.machine.as_dict(), "variants": self.variants, "status": self.status,
            "reasons": self.reasons, "info": self.info, "bounds": self.bounds, "ordered": self.ordered,
            "report": self.report, "duration_s": self.duration_s, "peak": self.peak,
            "orders": self.orders, "rounds": timings(self.rounds), "epochs": timings(self.epochs),
            "profiles": {v: {t: {"plain": [x.as_dict() for x in tt.plain],
                                 "tool": [x.as_dict() for x in tt.tool]} for t, tt in tools.items()}
                         for v, tools in self.profiles.items()},
            "counters": self.counters, "artifacts": self.artifacts,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        def timings(x: dict[str, list[dict[str, Any]]]) -> dict[str, list[Timing]]:
            return {k: [Timing.from_dict(t) for t in v] for k, v in x.items()}

        return cls(
            spec=d["spec"], plan=d["plan"], machine=Environment.from_dict(d["machine"]),
            variants=list(d["variants"]), status=dict(d["status"]), reasons=dict(d.get("reasons", {})),
            info=d.get("info", {}), rounds=timings(d.get("rounds", {})), orders=d.get("orders", []),
            bounds=dict(d.get("bounds") or ({"compute-bound": d["bound_of"]} if d.get("bound_of") else {})),
            ordered=bool(d.get("ordered", False)), report=d.get("report"), peak=dict(d.get("peak") or {}),
            duration_s=d.get("duration_s"), epochs=timings(d.get("epochs", {})),
            profiles={v: {t: ToolTiming([Timing.from_dict(x) for x in tt["plain"]],
                                        [Timing.from_dict(x) for x in tt["tool"]])
                          for t, tt in tools.items()} for v, tools in d.get("profiles", {}).items()},
            counters=d.get("counters", {}), artifacts=d.get("artifacts", {}), created=d["created"],
        )

    def save(self, path: Path) -> Path:
        """Write atomically: a reader never sees half a file."""
        return write_atomic(path, json.dumps(self.to_dict(), indent=1, allow_nan=False))

    @classmethod
    def load(cls, path: Path) -> Result:
        if not path.is_file():
            raise ResultError(f"{path}: no such file; `python -m bench profile` writes reports/run.json")
        try:
            doc = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ResultError(f"{path}: not JSON ({exc}); re-run `python -m bench profile`") from None
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            raise ResultError(f"{path}: not a vaebench run (schema {SCHEMA!r} expected); "
                              "pytest-benchmark files go to `python -m bench compare`")
        try:
            result = cls.from_dict(doc)
        except (KeyError, TypeError, ValueError) as exc:
            raise ResultError(f"{path}: a vaebench run with a broken field ({type(exc).__name__}: "
                              f"{exc}); re-run `python -m bench profile`") from None
        bad = [v for v, ts in result.rounds.items() for t in ts
               if not (math.isfinite(t.seconds) and t.seconds > 0)]
        if bad:
            raise ResultError(f"{path}: variant {bad[0]!r} has a non-positive or non-finite time; "
                              "the file was edited or damaged")
        return result
