"""vaelab's speed and memory benchmarks: `python -m benchmarks run [--quick]`."""
