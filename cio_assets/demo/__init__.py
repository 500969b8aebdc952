"""A deterministic sample shop for demos, tests and benchmarks."""
