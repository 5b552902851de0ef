"""A pytest plugin for A/B experiments: makes the `resident` (optimized) fetch do extra work.

Experiment and test code, never imported by the product. Loaded on the candidate side of a
regress run by ``run_regress(spec, candidate_extra=["-p", "slow_variant"])`` with experiments/
on PYTHONPATH (experiments/regress_experiments.py, tests/test_regress.py).
VB_EXTRA_COPIES (default 20) sets how many extra copies of each batch the fetch makes; the
copies are real operator calls, so the deterministic counters show the change too.
"""

from __future__ import annotations

import os

from vae import pipelines


class SlowResident(pipelines.ResidentPipeline):
    extra_copies = int(os.environ.get("VB_EXTRA_COPIES", "20"))

    def _batches(self):
        for batch in super()._batches():
            for _ in range(self.extra_copies):
                batch = batch.clone()
            yield batch


def pytest_configure(config) -> None:
    pipelines.PIPELINES["resident"] = SlowResident
    pipelines.PIPELINES["optimized"] = SlowResident
