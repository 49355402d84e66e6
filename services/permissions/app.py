"""permissions: the access lifecycle of each person — joiner, mover, leaver."""

from __future__ import annotations

SCOPES = ("person",)

