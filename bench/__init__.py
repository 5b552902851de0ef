"""vaebench harness: profiles and benchmarks the vae workload."""
