"""The workload's options, declared once: ``profile``, ``instructions`` and ``regress`` add them
to their parsers, the pytest-benchmark suites add them with a ``--vb-`` prefix (pytest's
``addoption`` takes argparse's arguments), and :func:`context_options` turns the values into
what a factory's :class:`~bench.workload.Context` holds. No torch import here: ``--help`` stays
instant.

``--dataset`` is handed to the workload as it is: the built-in one checks it against its own
choices (``auto``, ``mnist``, ``synthetic``) and a user's workload may give it any meaning.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
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


def context_options(values: argparse.Namespace | dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The Context fields among parsed values (``prefix``: ``vb_`` for the suites' options)."""
    get = values.get if isinstance(values, dict) else lambda k: getattr(values, k)
    variants = get(prefix + "variants")
    return {"batch_size": get(prefix + "batch_size"), "data_dir": Path(get(prefix + "data_dir")),
            "dataset": get(prefix + "dataset"), "limit": get(prefix + "limit"),
            "variants": tuple(variants) if variants else None}
