"""Benchmark suite of smsdispatch: ``make bench`` / ``make bench-quick`` (``python -m bench.run``).

See ``docs/benchmarks.md`` for the scenarios, the latest figures and how to reproduce them.
"""
