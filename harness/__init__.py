"""What tests and benchmarks share: a fabric compiled in memory, a fake switch over TCP."""
