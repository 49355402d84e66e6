"""Crash tests: ``python -m tests.chaos.crash`` (``make chaos``); a short round runs in ``make test``."""
