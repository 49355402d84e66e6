"""Benchmarks: run with ``make bench``; pytest never collects them (no ``test_`` names)."""
