"""Benchmarks run by scripts/bench.py NAME: every performance claim is a ratio measured in one run."""
