"""Benchmark suite for hybrid: ``python -m bench`` (see bench/README.md).

Kept import-free on purpose: the servers import ``bench.apps.*`` and should not pay for the runner.
"""
