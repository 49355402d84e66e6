"""Entrypoints: the CLI, a worker process, and ``make run``'s launcher."""
