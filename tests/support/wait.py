"""Bounded waiting for tests: poll until something holds, or fail saying what never happened."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(check: Callable[[], T], what: str, timeout: float = 30.0, interval: float = 0.1,
               explain: Callable[[], str] | None = None) -> T:
    """Poll ``check`` until it returns something truthy, and return that; or fail naming ``what``
    never happened, with ``explain()`` (e.g. a log's tail) below it."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}"
                                 + (f"\n{explain()}" if explain is not None else ""))
        time.sleep(interval)
    return result
