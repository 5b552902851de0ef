"""Profiler passes (passes.py) and the trace files they write for TensorBoard and Perfetto (traces.py)."""
