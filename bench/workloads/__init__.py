"""Built-in workloads (factories named like a user's: ``bench.workloads.ladder:make``)."""
