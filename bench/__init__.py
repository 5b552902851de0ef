"""vaebench harness: where a PyTorch training loop spends its time, what each variant of it buys,
and whether a change made it slower -- for any workload or unmodified script."""
