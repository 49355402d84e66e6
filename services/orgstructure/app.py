"""orgstructure: organisation-level plans — structures, closures, tickets, trainings."""

from __future__ import annotations

SCOPES = ("provider", "unit", "subcontractor")

