"""Benchmarks (``python -m bench.<name>``): they print figures and write JSON to ``bench/results/``; not
tests."""
