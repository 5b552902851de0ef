"""What batch fits: a step's peak of live tensor bytes measured at two batch sizes, a line through
them (parameters, gradients, optimizer state and other tensors do not grow with the batch;
activations and temporaries do), the largest batch whose peak the memory there is holds, and the
line checked against a third size where that one fits.

The memory there is: on CUDA the device's capacity; on the CPU what the machine had available
(``MemAvailable``) when the first size was measured, less what the process holds besides its
tensors (its max RSS over its tensors' peak: the interpreter, torch's libraries).
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.measure.result import Result

CHECK_WITHIN = 0.10  # a prediction within this of the measured peak at the third size holds


@dataclass(frozen=True)
class Fit:
    sizes: tuple[int, ...]  # the batch sizes measured, in order (the third: the check)
    peaks: tuple[int, ...]  # their peaks (bytes)
    fixed: float  # bytes the line gives a batch of 0
    per_sample: float  # bytes each sample adds
    capacity: float  # bytes the tensors may use (see the module's docstring)
    capacity_source: str
    largest: int | None  # the largest batch that fits (None: the step does not grow with the batch)
    predicted: float | None = None  # the line's peak at the third size
    error: float | None = None  # (measured - predicted) / measured at the third size

    @property
    def holds(self) -> bool | None:
        return None if self.error is None else abs(self.error) <= CHECK_WITHIN


def line(sizes: tuple[int, int], peaks: tuple[int, int]) -> tuple[float, float]:
    """(fixed bytes, bytes a sample) through two measured sizes."""
    per = (peaks[1] - peaks[0]) / (sizes[1] - sizes[0])
    return peaks[0] - per * sizes[0], per


def fit(result: Result) -> Fit | None:
    """From a ``--fit`` run: its measurements at each batch size (``notes['batch']``), the first
    holding the capacity (``notes['capacity']``, ``notes['capacity_source']``)."""
    return fit_of(result, "")


def with_fixes(result: Result) -> dict[str, Fit]:
    """Each fix's line (at the script's batch and twice it, with the fix applied: ``notes['fix']``),
    against the same capacity; no check at a third size."""
    names = list(dict.fromkeys(m.notes["fix"] for m in result.measurements if m.notes.get("fix")))
    return {name: found for name in names if (found := fit_of(result, name)) is not None}


def fit_of(result: Result, fix: str) -> Fit | None:
    measured = [(int(m.notes["batch"]), m) for m in result.measurements
                if "batch" in m.notes and m.notes.get("fix", "") == fix and m.footprint.breakdown is not None]
    if len(measured) < 2:
        return None
    (a, ma), b = measured[0], measured[1][0]
    peaks = [m.footprint.breakdown.peak for _, m in measured]  # type: ignore[union-attr]
    fixed, per = line((a, b), (peaks[0], peaks[1]))
    own = next((m for m in result.measurements if "capacity" in m.notes), ma)  # the capacity: the first's
    capacity = float(own.notes.get("capacity", 0.0))
    largest = int((capacity - fixed) // per) if per > 0 and capacity > fixed else None
    predicted = error = None
    if len(measured) > 2:
        predicted = fixed + per * measured[2][0]
        error = (peaks[2] - predicted) / peaks[2]
    return Fit(tuple(s for s, _ in measured), tuple(peaks), fixed, per, capacity,
               str(own.notes.get("capacity_source", "")), largest, predicted, error)
