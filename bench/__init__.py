"""Benchmarks (not tests): `python -m bench [NAME ...]` runs them and writes bench/results/."""
