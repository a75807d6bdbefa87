"""tensorgrad's benchmark suite: `python -m benchmarks [--quick] [--out DIR]` (see RESULTS.md)."""
