"""tb/<variant>/*.pt.trace.json: Kineto traces for TensorBoard's PyTorch Profiler tab (and Perfetto).

The plugin (torch-tb-profiler 0.4.3, its last release) predates PyTorch filing
``record_function`` events under the trace category ``user_annotation``, and drops every
such event except ``ProfilerStep#N``. That hides our labels -- the DataLoader's own
``enumerate(DataLoader)#...__next__`` included -- so its Overview shows 0 DataLoader time.
:func:`fix_categories` files those events as ``cpu_op``, which the plugin reads, and the
DataLoader share and the plugin's data-loading advice appear. Perfetto reads either form.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TRACE_GLOB = "*.pt.trace.json"


def fix_categories(trace: dict[str, Any]) -> int:
    """Re-file ``user_annotation`` events (but ``ProfilerStep#N``) as ``cpu_op``; returns how many."""
    changed = 0
    for event in trace.get("traceEvents", []):
        if event.get("cat") == "user_annotation" and not str(event.get("name", "")).startswith(
            "ProfilerStep#"
        ):
            event["cat"] = "cpu_op"
            changed += 1
    return changed


def publish_traces(raw_dir: Path, target: Path) -> list[Path]:
    """Copy every raw trace of ``raw_dir`` into ``target`` with the categories fixed."""
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for raw in sorted(raw_dir.glob(TRACE_GLOB)):
        trace = json.loads(raw.read_text())
        fix_categories(trace)
        path = target / raw.name
        path.write_text(json.dumps(trace))
        written.append(path)
    return written
