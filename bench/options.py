"""The workload's options, declared once: ``profile``, ``instructions`` and ``regress`` add them
to their parsers, the pytest-benchmark suites add them with a ``--vb-`` prefix (pytest's
``addoption`` takes argparse's arguments), and :class:`WorkloadChoice` -- built once from the
parsed values, at the command's (or the suite's) boundary -- is what is passed down: what a
factory's :class:`~bench.workload.Context` holds, and the options a side's process is given.
No torch import here: ``--help`` stays instant.

``--dataset`` is handed to the workload as it is: the built-in one checks it against its own
choices (``auto``, ``mnist``, ``synthetic``) and a user's workload may give it any meaning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.defaults import BUILTIN
from plumbing.argtypes import comma_list, positive_int
from plumbing.devices import DEVICES

WORKLOAD_OPTIONS: dict[str, dict[str, Any]] = {
    "workload": dict(default=BUILTIN, help="the training loop: a factory named module:function or "
                     "path/to/file.py:function (README, 'Your own variants')"),
    "variants": dict(type=comma_list, default=None, help="comma list of the workload's variants "
                     "(default: the workload's own; the first is the baseline of every ratio)"),
    "data-dir": dict(type=Path, default=Path("data"), help="data folder handed to the workload "
                     "(built-in: MNIST/raw/*-ubyte in torchvision's layout, else a generated "
                     "MNIST-shaped set cached there)"),
    "dataset": dict(default="auto", help="handed to the workload (built-in: auto | mnist | synthetic)"),
    "limit": dict(type=positive_int, default=None,
                  help="use only the first LIMIT training samples (a small debug set)"),
    "batch-size": dict(type=positive_int, default=100, help="samples per step"),
}
RUN_OPTIONS: dict[str, dict[str, Any]] = {
    "device": dict(choices=DEVICES, default="auto", help="where it trains (auto: CUDA when present)"),
    "threads": dict(type=positive_int, default=None,
                    help="torch intra-op threads (default: torch's choice; recorded either way)"),
    "seed": dict(type=int, default=0, help="seed handed to the workload"),
}


def add_options(add: Callable[..., Any], names: Iterable[str], *, prefix: str = "--",
                **defaults: Any) -> None:
    """Declare the named options through ``add`` (``parser.add_argument`` or pytest's
    ``group.addoption``); ``defaults`` overrides a default by dest name (``limit=2000``)."""
    table = WORKLOAD_OPTIONS | RUN_OPTIONS
    for name in names:
        spec = dict(table[name])
        dest = name.replace("-", "_")
        if dest in defaults:
            spec["default"] = defaults[dest]
        add(prefix + name, dest=dest if prefix == "--" else "vb_" + dest, **spec)


@dataclass(frozen=True)
class WorkloadChoice:
    """The workload and its data, as the options above chose them."""

    workload: str = BUILTIN
    variants: tuple[str, ...] | None = None  # None: the workload's own
    data_dir: Path = Path("data")
    dataset: str = "auto"
    limit: int | None = None
    batch_size: int = 100

    @classmethod
    def of(cls, values: Mapping[str, Any], prefix: str = "") -> WorkloadChoice:
        """From parsed values by their dest names (``vars(args)``; ``prefix`` ``vb_``: the suites')."""
        variants = values.get(prefix + "variants")
        return cls(workload=values.get(prefix + "workload") or BUILTIN,
                   variants=tuple(variants) if variants else None,
                   data_dir=Path(values.get(prefix + "data_dir") or "data"),
                   dataset=values.get(prefix + "dataset") or "auto", limit=values.get(prefix + "limit"),
                   batch_size=values.get(prefix + "batch_size") or 100)

    def context(self) -> dict[str, Any]:
        """The fields of a :class:`~bench.workload.Context` it fills."""
        return {"batch_size": self.batch_size, "data_dir": self.data_dir, "dataset": self.dataset,
                "limit": self.limit, "variants": self.variants}

    def data_options(self, prefix: str) -> list[str]:
        """--dataset and --batch-size as given, for a side's process (left out at their defaults,
        so a base from before these options runs too)."""
        out = []
        if self.dataset != "auto":
            out += [prefix + "dataset", self.dataset]
        if self.batch_size != 100:
            out += [prefix + "batch-size", str(self.batch_size)]
        return out
