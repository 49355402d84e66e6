"""Tables in tests without a broker."""

from __future__ import annotations

from services.runtime.tables import Table


def reloaded(table: Table) -> Table:
    """A new worker's table: what ``table`` holds, read into a fresh one as from its changelog."""
    fresh = Table(table.name, table.changelog)
    for key, value in table.items():
        fresh.apply(table.partition_of(key) or 0, key, value)
    return fresh
