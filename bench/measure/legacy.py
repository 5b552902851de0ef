"""run.json files of earlier formats, converted on load into today's (so `bench report` re-renders
a run measured before the format changed): the one place that knows them. Each converter takes
a document of its format and returns one of the next; :func:`upgrade` chains them up to
today's. A field a converter cannot place raises, and the loader names the file and the fix.

- ``vaebench.run/1``: figures in dicts keyed by variant name (before the typed Result).
- ``vaebench.run/2``: the typed Result, whose script spec grew fields over time (runs saved
  before each lack it), counted the ranks measured as ``ranks``, and kept memory in three
  places (``footprint.peak_bytes``, ``footprint.max_rss_mb``, ``process.memory``).
- ``vaebench.run/3`` (today's): a script spec says what was asked (``nproc``, ``torchrun``,
  ``patches``: its ``fixes`` before),
  the ranks measured are the Measurements; a step's memory is the footprint's breakdown (its
  ``rise`` the old ``peak_bytes``), the process's the footprint's ``max_rss_mb`` and
  ``cuda_peak_mb``."""

from __future__ import annotations

from typing import Any

# Where the v1 ``info`` keys go in today's Measurement: its own fields, its footprint, its process.
OWN_KEYS = ("parts", "batch_size", "batches_per_epoch", "description", "device", "build_s", "first_step_s",
            "warm_step_s", "reference", "notes", "round_steps", "sample_unit", "samples_per_batch")
FOOTPRINT_KEYS = ("flops_per_step", "flops_error", "peak_bytes", "peak_error", "max_rss_mb")
PROCESS_KEYS = ("step_rule", "steps_seen", "warmup", "pid", "memory", "allreduce_ms", "allreduce_overlap_ms",
                "allreduce_sampled_iterations", "stopped", "exit_code", "error", "interrupted", "no_step")


def _spec_v1(d: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    spec = dict(d["spec"])
    if spec.pop("kind", None) == "capture":
        keep = ("command", "warmup", "steps", "step_on", "tools", "profile_windows", "profile_steps", "ranks")
        return "script", {**{k: spec[k] for k in keep if k in spec}, "observe_windows": 0}
    spec["profile_windows"] = spec.pop("profile_rounds", 8)
    return "variants", {**spec, "plan": d.get("plan") or {}, "ordered": bool(d.get("ordered")),
                        "report": d.get("report")}


def _measurement_v1(d: dict[str, Any], name: str, kind: str, bound_of: str | None) -> dict[str, Any]:
    info = dict(d.get("info", {}).get(name, {}))
    m: dict[str, Any] = {k: v for k, v in info.items() if k in OWN_KEYS}
    m.update(name=name, bound_of=bound_of, status=d.get("status", {}).get(name, "ok"),
             reason=d.get("reasons", {}).get(name, ""), samples=d.get("rounds", {}).get(name, []),
             epochs=d.get("epochs", {}).get(name, []), profiles=d.get("profiles", {}).get(name, {}),
             counters=d.get("counters", {}).get(name, {}), artifacts=d.get("artifacts", {}).get(name, []))
    m["footprint"] = {k: info[k] for k in FOOTPRINT_KEYS if k in info}
    if kind == "script":
        rank = name[4:] if name.startswith("rank") and name[4:].isdigit() else None
        m["process"] = {"rank": int(rank) if rank else None,
                        **{k: info[k] for k in PROCESS_KEYS if k in info and k != "max_rss_mb"}}
    return {k: v for k, v in m.items() if v is not None or k in ("bound_of", "reference")}


def v1(d: dict[str, Any]) -> dict[str, Any]:
    """``vaebench.run/1``: figures in dicts keyed by variant name -> one Measurement each."""
    kind, spec = _spec_v1(d)
    bounds = dict(d.get("bounds") or {})
    names = [*d["variants"], *bounds]
    if kind == "script":
        names = [n for n in names if n in d.get("info", {})] or list(d["variants"])
    measurements = [_measurement_v1(d, n, kind, bounds.get(n)) for n in names]
    partial = {k: v for k, v in d.get("reasons", {}).items() if "/" in k}
    return {"kind": kind, "spec": spec, "machine": d["machine"], "measurements": measurements,
            "orders": d.get("orders", []), "peak": d.get("peak") or {}, "partial": partial,
            "created": d["created"], "duration_s": d.get("duration_s")}


# A script spec's fields added after /2 began, with what a run saved before each meant.
SCRIPT_DEFAULTS = {
    "observe_last": False,  # observing's pairs came before the profilers
    "counted": ["flops"],  # one step was counted: its FLOPs
}


def _script_spec_v2(spec: dict[str, Any], measurements: list[dict[str, Any]]) -> dict[str, Any]:
    spec = {**SCRIPT_DEFAULTS, **spec}
    spec.setdefault("observe_steps", spec.get("profile_steps", 5))  # before its own window length
    spec.setdefault("first_measured", spec.get("steps", 100))  # every step was measured first
    if "fixes" in spec:  # the patches applied were named fixes
        spec["patches"] = spec.pop("fixes")
    ranks = int(spec.pop("ranks", 1) or 1)
    if ranks > 1 and "nproc" not in spec:  # what was asked: the ranks per node
        # the highest node named (a rank that died unheard of reads node 0: it does not add one)
        nodes = 1 + max(((m.get("process") or {}).get("node_rank") or 0 for m in measurements), default=0)
        spec["nproc"] = max(1, ranks // nodes)
    return spec


def _footprint_v2(m: dict[str, Any]) -> dict[str, Any]:
    m = dict(m)
    footprint = dict(m.get("footprint") or {})
    process = dict(m["process"]) if m.get("process") else None
    peak = footprint.pop("peak_bytes", None)
    error = footprint.pop("peak_error", "")
    memory = (process.pop("memory", None) or {}) if process is not None else {}
    if footprint.get("breakdown"):  # a script's /2 breakdown had no rise beside it: unknown
        footprint["breakdown"] = {**footprint["breakdown"], "rise": None if peak is None else int(peak)}
    elif peak is not None:  # the step's rise only, from before the breakdown by part: no parts
        footprint["breakdown"] = {"peak": int(peak), "rise": int(peak), "device": m.get("device", "cpu"),
                                  "caveat": "saved before the breakdown by part: the step's rise only"}
    footprint["breakdown_error"] = footprint.get("breakdown_error") or error
    if footprint.get("max_rss_mb") is None:
        footprint["max_rss_mb"] = memory.get("max_rss_mb")
    footprint["cuda_peak_mb"] = memory.get("cuda_max_allocated_mb")
    m["footprint"] = footprint
    if process is not None:
        m["process"] = process
    return m


def v2(d: dict[str, Any]) -> dict[str, Any]:
    """``vaebench.run/2`` -> /3: the script spec's fields filled and ``ranks`` made ``nproc``;
    memory in one record (the footprint)."""
    measurements = [_footprint_v2(m) for m in d["measurements"]]
    spec = _script_spec_v2(d["spec"], measurements) if d["kind"] == "script" else d["spec"]
    return {**d, "spec": spec, "measurements": measurements}


# a format -> its converter and the format it converts into
CONVERTS = {"vaebench.run/1": (v1, "vaebench.run/2"), "vaebench.run/2": (v2, "vaebench.run/3")}


def upgrade(doc: dict[str, Any], schema: str) -> dict[str, Any]:
    """``doc`` of format ``schema`` converted, one format at a time, into today's."""
    while schema in CONVERTS:
        convert, schema = CONVERTS[schema]
        doc = convert(doc)
    return doc
