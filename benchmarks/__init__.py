"""Benchmarks that reproduce the paper's numbers and report them (not part of the installed package)."""
