"""Names shared by the CLI and the modules below it; nothing heavy is imported here."""

BUILTIN = "bench.workloads.ladder:make"  # the built-in workload's factory
BUILTIN_SUITE_VARIANTS = "ladder,resident+fused"  # what regress and the suites benchmark by default
# The profilers, in the order they run: each gets its own windows of steps (``--tools``).
TOOLS = ("cprofile", "lines", "kineto")
# The windows of `vaebench run` with only the step-end clock (the part hooks off): what observing
# a script costs is measured against them. Not a profiler: kept out of TOOLS.
UNHOOKED = "unhooked"
SETTLE = "settle"  # one step between the last profiler's windows and observing's: not measured
# The parts a captured script's step is cut into, in order (`other`: the rest of the step).
STEP_PARTS = ("data", "copy", "forward", "backward", "collective", "optimizer", "other")
