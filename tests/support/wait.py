"""Bounded waiting for tests: poll until something holds, or fail saying what never happened."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(check: Callable[[], T], what: str, timeout: float = 30.0, interval: float = 0.1) -> T:
    """Poll ``check`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
    return result


def wait_until(condition: Callable[[], bool], timeout: float, failure: Callable[[], str]) -> float:
    """Poll ``condition`` until it holds, or fail the test with ``failure()`` (e.g. a log tail);
    returns the seconds it took."""
    import pytest

    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            pytest.fail(failure())
        time.sleep(0.05)
    return time.monotonic() - start
