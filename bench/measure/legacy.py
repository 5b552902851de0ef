"""run.json files of earlier formats, converted on load into today's (so `bench report` re-renders
a run measured before the format changed). Each converter takes the old document and returns
one of today's; a field it cannot place raises, and the loader names the file and the fix."""

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


CONVERTS = {"vaebench.run/1": v1}
