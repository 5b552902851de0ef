"""The counting child: started under ``valgrind --tool=callgrind --instr-atstart=no`` by
:func:`bench.instructions.count.count`, it builds and warms the variants uninstrumented, says
``ready``, and once instrumentation is on counts each region (one fetch group, or one step) with
``torch._C._valgrind_toggle()`` around it. Events go to stdout as JSON lines."""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

# Uninstrumented steps before counting: lazy initialisation, optimizer state, allocator caches,
# and Python 3.11's bytecode specialization (after a code object's 8th run) all settle first.
WARM_STEPS = 12

_START = time.perf_counter()


def _emit(**event: Any) -> None:
    print(json.dumps({**event, "t": round(time.perf_counter() - _START, 2)}), flush=True)


def _child(options: dict[str, Any]) -> int:
    import torch

    from bench.options import WorkloadChoice
    from bench.workload import Context, WorkloadError, variants_of

    torch.set_num_threads(1)  # idle OpenMP threads spin: counted instructions that are not work
    ctx = Context(device=torch.device("cpu"), **WorkloadChoice.of(options).context())
    try:
        built = _build(variants_of(options["workload"], ctx), options)
    except WorkloadError as exc:
        _emit(event="error", message=str(exc))
        return 2
    if built is None:
        return 2
    # Everything built so far (torch's modules, the data, the variants: ~300k objects) set aside
    # from the collector: each region's gc.collect() then walks only what came after -- one full
    # walk took 0.17 s here uninstrumented and most of the ~2.4 s a region cost under callgrind.
    gc.collect()
    gc.freeze()
    _emit(event="ready", pid=os.getpid(), meta={
        "workload": options["workload"], "threads": torch.get_num_threads(), "torch": torch.__version__,
        "limit": options["limit"], "batch_size": options["batch_size"], "repeats": options["repeats"],
        "fetches_per_region": options["fetches"]})
    sys.stdin.readline()  # instrumentation is on once this process answers
    regions = _Regions()
    regions("", lambda: None, 0)  # the first region after switching on reads ~100k high: discard
    for name, work in built.items():
        _count_variant(name, work, options, regions)
    return 0


def _build(variants: Any, options: dict[str, Any]) -> dict[str, Any] | None:
    """Build and warm every variant that can be counted (None: a variant cannot be, said)."""
    from bench.measure.clock import time_steps
    from bench.workload import Unavailable

    built: dict[str, Any] = {}
    for name in variants:
        try:
            work = variants.build(name)
        except Unavailable as exc:
            _emit(event="skipped", variant=name, reason=str(exc))
            continue
        if getattr(work, "profile", True) is False:
            _emit(event="skipped", variant=name,
                  reason="its work runs in other processes, which callgrind does not count")
            continue
        batches = getattr(work, "batches_per_epoch", None)
        if batches is not None and batches < options["fetches"] + 2:
            _emit(event="error", message=f"variant {name!r} has {batches} batches an epoch; "
                  f"counting {options['fetches']} fetches in one pass needs "
                  f"{options['fetches'] + 2}: raise --limit or lower --fetches")
            return None
        # Warm, uninstrumented (cheap): lazy initialisation, optimizer state, allocator
        # caches, and Python 3.11's bytecode specialization, which starts after a code
        # object's 8th run -- a function run once a step was still being specialized in
        # the 5th step, 6% more instructions in a small one.
        time_steps(work, WARM_STEPS)
        built[name] = work
        _emit(event="built", variant=name)
    return built


class _Regions:
    """Counted regions, each dumped as its own callgrind part and announced by key."""

    def __init__(self) -> None:
        self.dump = 0

    def __call__(self, key: str, fn: Callable[[], object], calls: int) -> None:
        import torch

        # Python's cyclic GC runs every ~700 allocations: where it falls depends on what ran
        # before, and a collection inside a region moved a fetch's count by 2%. Collect before,
        # not during.
        gc.collect()
        gc.disable()
        torch._C._valgrind_toggle()
        fn()
        torch._C._valgrind_toggle_and_dump_stats()
        gc.enable()
        self.dump += 1
        if key:
            _emit(event="region", key=key, dump=self.dump, calls=calls)


def _count_variant(name: str, work: Any, options: dict[str, Any], region: _Regions) -> None:
    """The fetch and step regions of one variant, each repeated.

    Every repeat does the very same work: the state restored, the same batches. (Work depends
    on data: libm's log1p takes longer paths for some inputs, so consecutive batches differ by
    ~1% in instructions, repeats of one batch by ~0.005%.) A fetch region holds several
    fetches: a cheap fetch is ~110k instructions, and the allocator's state moves each call by
    a few hundred, so one fetch alone would be ~0.5% exact, not 0.1%."""
    import contextlib

    def part(name: str) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()

    fetches = options["fetches"]
    snapshot = work.state()

    def fetch_many() -> None:
        for _ in range(fetches):
            work.fetch()

    # One uncounted repeat of each region first, for the code that only the regions run.
    for i in range(options["repeats"] + 1):
        work.restore(snapshot)
        work.fetch()  # the data stream's start (a DataLoader makes its iterator) uncounted
        if i == 0:
            fetch_many()
        else:
            region(f"fetch[{name}]", fetch_many, fetches)
    for i in range(options["repeats"] + 1):
        work.restore(snapshot)
        batch = work.fetch()
        if i == 0:
            work.step(batch, part)
        else:
            region(f"step[{name}]", lambda b=batch: work.step(b, part), 1)
    work.restore(snapshot)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        raise SystemExit(_child(json.loads(sys.argv[2])))
    raise SystemExit("internal: run by bench.instructions.count.count, not by hand "
                     "(use `python -m bench instructions`)")
